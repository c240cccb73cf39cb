#!/usr/bin/env bash
# A one-node SLURM (Debian's 22.05) with munge and 2 fake GPUs, for the tests.
#   slurm.sh start    start (or reuse a healthy leftover), wait until the node is idle
#   slurm.sh stop     cancel our jobs, stop the daemons recorded in the state dir (nothing else)
#   slurm.sh status   exit 0 and say so when the node answers, else exit 3
#   slurm.sh env      print `export SLURM_CONF=...` (and the partition name) for clients
# SLURM_ACCOUNTING=1 (with start) adds slurmdbd on a private MariaDB, so that sacct works
# (packages: system-deps.sh slurm-accounting); its job records are wiped at every fresh start.
# A running instance in the other mode is restarted in the requested one.
# State: $ORCH_CI_ROOT/slurm (default /tmp/orch-ci/slurm). Nothing is written to /etc: clients
# need only SLURM_CONF. Ports: ORCH_SLURMCTLD_PORT / ORCH_SLURMD_PORT (defaults 6817 / 6818) and,
# with accounting, ORCH_SLURMDBD_PORT / ORCH_SLURM_MARIADB_PORT (6819 / 3307), or the next free
# ones when taken by something that is not ours; remembered in the state dir.
# Node "localhost": CPUs=8, RealMemory=8000, Gres=gpu:2 (char devices like /dev/null, so a job
# with --gres=gpu:1 gets CUDA_VISIBLE_DEVICES=0 or 1), partition "debug".
set -euo pipefail
SERVICE=slurm
. "$(dirname "$0")/lib.sh"

STATE=$ORCH_CI_ROOT/slurm
MUNGE_DIR=$STATE/munge
MSOCK=$MUNGE_DIR/munge.socket
CONF=$STATE/etc/slurm.conf
PORTS_FILE=$STATE/ports
MODE_FILE=$STATE/mode
DB_DIR=$STATE/mariadb
DB_SOCK=$DB_DIR/mysqld.sock
PARTITION=debug
CLUSTER=orchci
START_TIMEOUT=${ORCH_SLURM_START_TIMEOUT:-30}
WANT_MODE=$([ "${SLURM_ACCOUNTING:-0}" = 1 ] && echo accounting || echo basic)
export SLURM_CONF=$CONF

MUNGED_PID=$MUNGE_DIR/munged.pid
CTLD_PID=$STATE/run/slurmctld.pid
SLURMD_PID=$STATE/run/slurmd.pid
DBD_PID=$STATE/run/slurmdbd.pid
DB_PID=$DB_DIR/mariadbd.pid
LOGS=("$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" "$MUNGE_DIR/munged.log")

mode() { cat "$MODE_FILE" 2>/dev/null || echo basic; }
node_state() { timeout 10 sinfo -h -N -o %T 2>/dev/null | head -n1; }
node_usable() { case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac; }
dbd_answers() { timeout 10 sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; }
# slurmctld has registered with slurmdbd (before that, finished jobs do not reach sacct).
ctld_registered() {
  local ctld_port; read -r ctld_port _ < "$PORTS_FILE"
  [ "$(timeout 10 sacctmgr -n -P show cluster "$CLUSTER" format=controlport 2>/dev/null)" = "$ctld_port" ]
}
# shellcheck disable=SC2120  # called with -e through wait_until
db_sql() { timeout 30 mariadb --no-defaults --protocol=socket --socket="$DB_SOCK" -u root "$@"; }

healthy() {
  [ -f "$CONF" ] && pidfile_alive "$MUNGED_PID" && pidfile_alive "$CTLD_PID" && pidfile_alive "$SLURMD_PID" &&
    node_usable || return 1
  [ "$(mode)" = basic ] || { pidfile_alive "$DB_PID" && pidfile_alive "$DBD_PID" && dbd_answers; }
}

check_installed() {
  local b
  for b in munged mungekey slurmctld slurmd sinfo sbatch; do
    command -v "$b" >/dev/null || die "$b not found (run tests/infra/system-deps.sh slurm)"
  done
  if [ "$WANT_MODE" = accounting ]; then
    for b in slurmdbd mariadbd mariadb-install-db mariadb sacctmgr; do
      command -v "$b" >/dev/null || die "$b not found (run tests/infra/system-deps.sh slurm-accounting)"
    done
  fi
}

do_stop() {
  if pidfile_alive "$CTLD_PID" && [ -f "$CONF" ]; then
    # Jobs' slurmstepd processes would outlive slurmd: cancel everything in our partition first.
    timeout 10 scancel -p "$PARTITION" >/dev/null 2>&1 || true
    local i
    for i in $(seq 25); do
      [ -z "$(timeout 5 squeue -h -t running,completing -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  stop_pidfile "$SLURMD_PID" 15 slurmd
  stop_pidfile "$CTLD_PID" 15 slurmctld
  stop_pidfile "$DBD_PID" 15 slurmdbd
  stop_pidfile "$DB_PID" 30 mariadbd
  stop_pidfile "$MUNGED_PID" 10 munged
  log "stopped"
}

write_config() {
  local ctld slurmd dbd db
  read -r ctld slurmd dbd db < "$PORTS_FILE"
  cat > "$CONF" <<CONF
# Written by tests/infra/slurm.sh ($WANT_MODE); rewritten at every fresh start.
ClusterName=$CLUSTER
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MSOCK
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld
SlurmdPort=$slurmd
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
# Without these the scheduler runs on a 3 s cadence.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without DefMemPerCPU every job takes the node's whole memory and jobs run one at a time.
DefMemPerCPU=500
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.log
ReturnToService=2
MailProg=/bin/true
MinJobAge=300
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=8000 Gres=gpu:2 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  if [ "$WANT_MODE" = accounting ]; then
    cat >> "$CONF" <<CONF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd
# sacct hangs without the munge socket here too.
AccountingStoragePass=socket=$MSOCK
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
CONF
    ( umask 077; cat > "$STATE/etc/slurmdbd.conf" <<CONF
# Written by tests/infra/slurm.sh; slurmdbd finds it next to slurm.conf.
AuthType=auth/munge
AuthInfo=socket=$MSOCK
DbdHost=localhost
DbdPort=$dbd
SlurmUser=root
PidFile=$DBD_PID
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db
StorageUser=slurm
StoragePass=orchci
StorageLoc=slurm_acct_db
CONF
    )
  else
    printf '%s\n' AccountingStorageType=accounting_storage/none JobAcctGatherType=jobacct_gather/none >> "$CONF"
    rm -f "$STATE/etc/slurmdbd.conf"
  fi
  # A gpu line without File= is dropped and the node goes INVAL.
  printf 'AutoDetect=off\nNodeName=localhost Name=gpu File=%s/fakegpu/nvidia[0-1]\n' "$STATE" > "$STATE/etc/gres.conf"
}

start_munge() {
  mkdir -p "$MUNGE_DIR"
  chown munge:munge "$MUNGE_DIR"; chmod 711 "$MUNGE_DIR"   # socket dir: o+x, not o+w
  if [ ! -s "$MUNGE_DIR/munge.key" ]; then
    runuser -u munge -- mungekey --create --keyfile="$MUNGE_DIR/munge.key" ||
      die "mungekey --create failed"
  fi
  # --force: take over a stale socket left by a killed munged (ours: its pid is dead).
  spawn runuser -u munge -- munged --force --socket="$MSOCK" --key-file="$MUNGE_DIR/munge.key" \
    --pid-file="$MUNGED_PID" --seed-file="$MUNGE_DIR/munged.seed" \
    --log-file="$MUNGE_DIR/munged.log" --num-threads=4 ||
    { show_log_tail "$MUNGE_DIR/munged.log"; die "munged failed to start"; }
  wait_until 10 "munged's socket" "$MUNGE_DIR/munged.log" test -S "$MSOCK" || die "munged did not come up"
}

# MariaDB in its own datadir (created once), then slurmdbd with an empty accounting database.
start_accounting() {
  local db_port
  read -r _ _ _ db_port < "$PORTS_FILE"
  mkdir -p "$DB_DIR"; chown mysql:mysql "$DB_DIR"
  if [ ! -d "$DB_DIR/data/mysql" ]; then
    rm -rf "$DB_DIR/data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR/data" --skip-test-db \
      --auth-root-authentication-method=socket > "$DB_DIR/install.log" 2>&1 ||
      { show_log_tail "$DB_DIR/install.log"; die "mariadb-install-db failed"; }
  fi
  rm -f "$DB_SOCK" "$DB_PID"
  # mariadbd stays in the foreground: background it here (not through `spawn`, whose subshell
  # would keep the lock open).
  setsid mariadbd --no-defaults --user=mysql --datadir="$DB_DIR/data" --bind-address=127.0.0.1 \
    --port="$db_port" --socket="$DB_SOCK" --pid-file="$DB_PID" --log-error="$DB_DIR/error.log" \
    --skip-name-resolve --innodb-flush-log-at-trx-commit=0 --innodb-buffer-pool-size=64M \
    < /dev/null > /dev/null 2>&1 9>&- &
  wait_until "$START_TIMEOUT" "MariaDB on port $db_port" "$DB_DIR/error.log" db_sql -e 'select 1' ||
    die "MariaDB did not come up"
  db_sql > "$DB_DIR/setup.log" 2>&1 <<'SQL' || { show_log_tail "$DB_DIR/setup.log"; die "setting up MariaDB failed"; }
DROP DATABASE IF EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'orchci';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'orchci';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
  spawn slurmdbd || { show_log_tail "$STATE/log/slurmdbd.log"; die "slurmdbd failed to start"; }
  wait_until "$START_TIMEOUT" "slurmdbd to register cluster $CLUSTER" "$STATE/log/slurmdbd.log" \
    sh -c "timeout 10 sacctmgr -i add cluster $CLUSTER >/dev/null 2>&1; timeout 10 sacctmgr -n -P show cluster format=cluster | grep -qx $CLUSTER" ||
    die "slurmdbd did not come up"
}

do_start() {
  local t0; t0=$(now_ms)
  check_installed
  if [ "$(mode)" = "$WANT_MODE" ] && healthy; then
    log "already running ($(mode), slurmctld pid $(pid_from_file "$CTLD_PID"), ports $(cat "$PORTS_FILE")): reusing it"
    return 0
  fi
  if pidfile_alive "$MUNGED_PID" || pidfile_alive "$CTLD_PID" || pidfile_alive "$SLURMD_PID" ||
     pidfile_alive "$DBD_PID" || pidfile_alive "$DB_PID"; then
    log "leftover instance ($(mode)) is not healthy or not in mode $WANT_MODE: restarting it"
    do_stop
  fi
  mkdir -p "$STATE"/{etc,state,spool,log,run,fakegpu}
  local i
  for i in 0 1; do
    [ -c "$STATE/fakegpu/nvidia$i" ] || { rm -f "$STATE/fakegpu/nvidia$i"; mknod -m 666 "$STATE/fakegpu/nvidia$i" c 1 3; }
  done
  if [ "$WANT_MODE" = accounting ]; then
    choose_ports "$PORTS_FILE" "${ORCH_SLURMCTLD_PORT:-6817}" "${ORCH_SLURMD_PORT:-6818}" \
      "${ORCH_SLURMDBD_PORT:-6819}" "${ORCH_SLURM_MARIADB_PORT:-3307}"
  else
    choose_ports "$PORTS_FILE" "${ORCH_SLURMCTLD_PORT:-6817}" "${ORCH_SLURMD_PORT:-6818}"
  fi
  echo "$WANT_MODE" > "$MODE_FILE"
  write_config
  start_munge
  [ "$WANT_MODE" = basic ] || start_accounting
  # -c: start with no saved jobs, so a previous run's jobs never come back.
  spawn slurmctld -c -f "$CONF" || { show_log_tail "${LOGS[@]}"; die "slurmctld failed to start"; }
  spawn slurmd -f "$CONF" -N localhost || { show_log_tail "${LOGS[@]}"; die "slurmd failed to start"; }
  wait_until "$START_TIMEOUT" "the node to become idle" "${LOGS[0]}" node_usable || {
    show_log_tail "${LOGS[@]:1}"; die "SLURM did not come up within ${START_TIMEOUT}s"; }
  if [ "$WANT_MODE" = accounting ]; then
    wait_until "$START_TIMEOUT" "slurmctld to register with slurmdbd" "$STATE/log/slurmdbd.log" ctld_registered ||
      { show_log_tail "${LOGS[0]}"; die "slurmctld did not register with slurmdbd"; }
  fi
  log "started ($WANT_MODE, ports $(cat "$PORTS_FILE")) in $(( $(now_ms) - t0 )) ms"
}

# Tests that need the controller down for a while (jobs keep running; the queue goes silent):
# stop only slurmctld, then start it again from its saved state (no -c: the jobs come back).
do_controller_stop() {
  stop_pidfile "$CTLD_PID" 15 slurmctld
  log "slurmctld stopped (slurmd and the jobs keep running)"
}

do_controller_start() {
  pidfile_alive "$CTLD_PID" && { log "slurmctld already running"; return 0; }
  spawn slurmctld -f "$CONF" || { show_log_tail "${LOGS[0]}"; die "slurmctld failed to restart"; }
  wait_until "$START_TIMEOUT" "slurmctld to answer" "${LOGS[0]}" node_usable ||
    die "slurmctld did not answer within ${START_TIMEOUT}s of its restart"
  log "slurmctld restarted from its saved state"
}

do_status() {
  if healthy; then
    echo "slurm: running ($(mode)), node $(node_state), ports $(cat "$PORTS_FILE"), SLURM_CONF=$CONF"
  else
    echo "slurm: not running"; return 3
  fi
}

do_env() {
  healthy || die "not running: run 'bash tests/infra/slurm.sh start' first"
  echo "export SLURM_CONF=$CONF"
  echo "export ORCH_TEST_SLURM_PARTITION=$PARTITION"
  echo "export ORCH_TEST_SLURM_ACCOUNTING=$([ "$(mode)" = accounting ] && echo 1 || echo 0)"
}

cmd=${1:-}
case "$cmd" in start|stop|status|env|controller-stop|controller-start) ;;
  *) usage "start|stop|status|env|controller-stop|controller-start" ;; esac
take_lock slurm
case "$cmd" in
  start) need_root; do_start ;;
  stop) need_root; do_stop ;;
  status) do_status ;;
  env) do_env ;;
  controller-stop) need_root; do_controller_stop ;;
  controller-start) need_root; do_controller_start ;;
esac
