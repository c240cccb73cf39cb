#!/usr/bin/env bash
# An OpenSSH server on 127.0.0.1 for the tests, with its own host key, a non-root login user
# `orchtest` (key only) and a client key pair.
#   sshd.sh start    start (or reuse a healthy leftover), wait until `ssh orchtest@... true` works
#   sshd.sh stop     stop the sshd recorded in the state dir (nothing else)
#   sshd.sh status   exit 0 and say so when a key login works, else exit 3
#   sshd.sh env      print ORCH_TEST_SSH_HOST/PORT/USER/KEY/KNOWN_HOSTS/CONFIG exports
# State: $ORCH_CI_ROOT/sshd (default /tmp/orch-ci/sshd): host key, client key (id_ed25519),
# authorized_keys, known_hosts, an ssh_config for `ssh -F`, sshd.log. Port: ORCH_SSHD_PORT
# (default 2222), or the next free one when taken by something that is not ours; remembered.
# Only `orchtest` may log in (AllowUsers), by key: the account has no password ('*', not '!',
# which sshd refuses without PAM). A non-root user also skips root's slow shell start-up files.
set -euo pipefail
SERVICE=sshd
. "$(dirname "$0")/lib.sh"

STATE=$ORCH_CI_ROOT/sshd
TEST_USER=orchtest
PORT_FILE=$STATE/port
PID_FILE=$STATE/sshd.pid
LOG=$STATE/sshd.log
KEY=$STATE/id_ed25519
HOST_KEY=$STATE/ssh_host_ed25519_key
KNOWN_HOSTS=$STATE/known_hosts
CLIENT_CONFIG=$STATE/ssh_config
START_TIMEOUT=${ORCH_SSHD_START_TIMEOUT:-20}

port() { cat "$PORT_FILE" 2>/dev/null || true; }

ssh_true() {
  timeout 15 ssh -F /dev/null -i "$KEY" -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=5 \
    -o UserKnownHostsFile="$KNOWN_HOSTS" -o StrictHostKeyChecking=yes -p "$(port)" \
    "$TEST_USER@127.0.0.1" true
}

healthy() { [ -s "$PORT_FILE" ] && pidfile_alive "$PID_FILE" && ssh_true >/dev/null 2>&1; }

check_installed() {
  [ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd not found (run tests/infra/system-deps.sh ssh)"
  command -v ssh >/dev/null && command -v ssh-keygen >/dev/null ||
    die "ssh client not found (run tests/infra/system-deps.sh ssh)"
}

ensure_user() {
  if ! id "$TEST_USER" >/dev/null 2>&1; then
    useradd -m -s /bin/bash "$TEST_USER" || die "useradd $TEST_USER failed"
    log "created user $TEST_USER"
  fi
  # '!' (locked) is refused by sshd when UsePAM is off; '*' means no password but key logins work.
  case "$(getent shadow "$TEST_USER" | cut -d: -f2)" in
    '*') ;;
    *) usermod -p '*' "$TEST_USER" ;;
  esac
}

ensure_keys() {
  [ -s "$HOST_KEY" ] || ssh-keygen -q -t ed25519 -N '' -C orch-ci-host -f "$HOST_KEY"
  [ -s "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C orch-ci-client -f "$KEY"
  # Read by sshd as the test user: the state dir is 711, this file 644; private keys stay 600.
  install -m 644 "$KEY.pub" "$STATE/authorized_keys"
}

write_config() {
  local p; p=$(port)
  cat > "$STATE/sshd_config" <<CONF
# Written by tests/infra/sshd.sh at every fresh start.
Port $p
ListenAddress 127.0.0.1
HostKey $HOST_KEY
PidFile $PID_FILE
AuthorizedKeysFile $STATE/authorized_keys
AllowUsers $TEST_USER
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
CONF
  echo "[127.0.0.1]:$p $(cut -d' ' -f1,2 "$HOST_KEY.pub")" > "$KNOWN_HOSTS"
  cat > "$CLIENT_CONFIG" <<CONF
# ssh -F $CLIENT_CONFIG orch-ci-sshd
Host orch-ci-sshd
  HostName 127.0.0.1
  Port $p
  User $TEST_USER
  IdentityFile $KEY
  IdentitiesOnly yes
  UserKnownHostsFile $KNOWN_HOSTS
  StrictHostKeyChecking yes
  BatchMode yes
CONF
}

do_stop() {
  stop_pidfile "$PID_FILE" 10 sshd
  log "stopped"
}

do_start() {
  local t0; t0=$(now_ms)
  check_installed
  if healthy; then
    log "already running (pid $(pid_from_file "$PID_FILE"), port $(port)): reusing it"
    return 0
  fi
  if pidfile_alive "$PID_FILE"; then
    log "leftover sshd (pid $(pid_from_file "$PID_FILE")) does not accept our key: restarting it"
    do_stop
  fi
  rm -f "$PID_FILE"
  ensure_user
  ensure_keys
  choose_ports "$PORT_FILE" "${ORCH_SSHD_PORT:-2222}"
  write_config
  mkdir -p /run/sshd   # privilege separation directory, compiled into sshd
  /usr/sbin/sshd -t -f "$STATE/sshd_config" 2> "$STATE/sshd-config-test.log" ||
    { show_log_tail "$STATE/sshd-config-test.log"; die "sshd rejects $STATE/sshd_config"; }
  spawn /usr/sbin/sshd -f "$STATE/sshd_config" -E "$LOG" || { show_log_tail "$LOG"; die "sshd failed to start"; }
  wait_until "$START_TIMEOUT" "a key login as $TEST_USER on port $(port)" "$LOG" ssh_true ||
    die "sshd did not accept a login within ${START_TIMEOUT}s"
  log "started (pid $(pid_from_file "$PID_FILE"), port $(port)) in $(( $(now_ms) - t0 )) ms"
}

do_status() {
  if healthy; then
    echo "sshd: running, pid $(pid_from_file "$PID_FILE"), port $(port), user $TEST_USER"
  else
    echo "sshd: not running"; return 3
  fi
}

do_env() {
  healthy || die "not running: run 'bash tests/infra/sshd.sh start' first"
  echo "export ORCH_TEST_SSH_HOST=127.0.0.1"
  echo "export ORCH_TEST_SSH_PORT=$(port)"
  echo "export ORCH_TEST_SSH_USER=$TEST_USER"
  echo "export ORCH_TEST_SSH_KEY=$KEY"
  echo "export ORCH_TEST_SSH_KNOWN_HOSTS=$KNOWN_HOSTS"
  echo "export ORCH_TEST_SSH_CONFIG=$CLIENT_CONFIG"
}

cmd=${1:-}
case "$cmd" in start|stop|status|env) ;; *) usage "start|stop|status|env" ;; esac
take_lock sshd
mkdir -p "$STATE"; chmod 711 "$STATE"
case "$cmd" in
  start) need_root; do_start ;;
  stop) need_root; do_stop ;;
  status) do_status ;;
  env) do_env ;;
esac
