#!/usr/bin/env bash
# A throw-away PostgreSQL (Debian's, 15 on bookworm) for the tests.
#   postgres.sh start    start (or reuse a healthy leftover), wait until it accepts connections
#   postgres.sh stop     stop the instance recorded in the state dir (nothing else)
#   postgres.sh status   exit 0 and say so when running and accepting connections, else exit 3
#   postgres.sh url      print postgresql+psycopg://postgres@127.0.0.1:PORT/orch_test
#   postgres.sh env      print `export ORCH_TEST_PG_URL=...` and the password role's variables
# Data: $ORCH_CI_ROOT/postgres (default /tmp/orch-ci/postgres). Port: ORCH_PG_PORT (default
# 5433), or the next free one when that is taken by something that is not ours; the port in use
# is remembered in the state dir. Trust auth on 127.0.0.1 only; fsync off (test data only).
# One role, orch_pw, must authenticate with a password (scram-sha-256, a pg_hba line of its own
# before the trust lines), for the tests that credentials come from a pgpass file and never
# reach project files: its random password is made once and kept in $STATE/orch_pw.secret
# (mode 0600); `env` exports ORCH_TEST_PG_PW_ROLE and ORCH_TEST_PG_PW_SECRET_FILE.
set -euo pipefail
SERVICE=postgres
. "$(dirname "$0")/lib.sh"

STATE=$ORCH_CI_ROOT/postgres
DATA=$STATE/data
LOG=$STATE/server.log
PORT_FILE=$STATE/port
DB=orch_test
DEFAULT_PORT=${ORCH_PG_PORT:-5433}
PW_ROLE=orch_pw
PW_SECRET=$STATE/$PW_ROLE.secret
PW_HBA_LINE="host all $PW_ROLE 127.0.0.1/32 scram-sha-256"
START_TIMEOUT=${ORCH_PG_START_TIMEOUT:-60}

pg_bin() {
  local d
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] ||
    die "no PostgreSQL server found under /usr/lib/postgresql/*/bin (run tests/infra/system-deps.sh postgres)"
  echo "$d"
}

as_postgres() { runuser -u postgres -- "$@"; }

# Port of the running server from postmaster.pid (line 4), else the remembered one.
current_port() {
  if [ -s "$DATA/postmaster.pid" ]; then sed -n 4p "$DATA/postmaster.pid"; return; fi
  [ -s "$PORT_FILE" ] && cat "$PORT_FILE" || true
}

server_pid() { [ -s "$DATA/postmaster.pid" ] && pid_from_file "$DATA/postmaster.pid" || true; }

psql_cmd() { PGCONNECT_TIMEOUT=5 timeout 15 "$PGB/psql" -X -q -h 127.0.0.1 -p "$1" -U postgres "${@:2}"; }

# Our server is running and answers a query on its port.
healthy() {
  local pid port
  pid=$(server_pid); port=$(current_port)
  [ -n "$pid" ] && pid_alive "$pid" && [ -n "$port" ] || return 1
  [ "$(psql_cmd "$port" -d postgres -Atc 'select 1' 2>/dev/null)" = 1 ]
}

ensure_db() {
  local port=$1
  if [ "$(psql_cmd "$port" -d postgres -Atc "select 1 from pg_database where datname='$DB'")" != 1 ]; then
    psql_cmd "$port" -d postgres -c "CREATE DATABASE $DB" >/dev/null
  fi
}

# The role that needs a password (idempotent: made once; its hba line added once, then a reload).
ensure_password_role() {
  local port=$1 hba=$DATA/pg_hba.conf secret
  if [ ! -s "$PW_SECRET" ]; then
    secret=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    (umask 077; printf '%s' "${secret:0:24}" > "$PW_SECRET")
  fi
  if [ "$(psql_cmd "$port" -d postgres -Atc "select 1 from pg_roles where rolname='$PW_ROLE'")" != 1 ]; then
    psql_cmd "$port" -d postgres -c "CREATE ROLE $PW_ROLE LOGIN" >/dev/null
  fi
  # through stdin, so that the password is on no command line
  printf "ALTER ROLE %s PASSWORD '%s';\n" "$PW_ROLE" "$(cat "$PW_SECRET")" | psql_cmd "$port" -d postgres >/dev/null
  if ! grep -qxF "$PW_HBA_LINE" "$hba"; then
    { echo "# tests/infra/postgres.sh: $PW_ROLE must give its password"; echo "$PW_HBA_LINE"; cat "$hba"; } > "$hba.new"
    chown postgres:postgres "$hba.new"; chmod 600 "$hba.new"; mv "$hba.new" "$hba"
    psql_cmd "$port" -d postgres -Atc "select pg_reload_conf()" >/dev/null
  fi
}

do_stop() {
  local pid
  pid=$(server_pid)
  if [ -n "$pid" ] && pid_alive "$pid"; then
    if ! as_postgres "$PGB/pg_ctl" -D "$DATA" -m fast -w -t 10 stop >/dev/null 2>&1; then
      log "pg_ctl stop failed: signalling pid $pid"
      stop_pidfile "$DATA/postmaster.pid" 5 postgres
    fi
    wait_reaped "$pid"
    log "stopped (pid $pid)"
  else
    rm -f "$DATA/postmaster.pid"
  fi
}

do_start() {
  local t0 port pid
  t0=$(now_ms)
  if healthy; then
    port=$(current_port); ensure_db "$port"; ensure_password_role "$port"; echo "$port" > "$PORT_FILE"
    log "already running (pid $(server_pid), port $port): reusing it"
    return 0
  fi
  pid=$(server_pid)
  if [ -n "$pid" ] && pid_alive "$pid"; then
    log "leftover server (pid $pid) is not answering: restarting it"
    do_stop
  fi
  # No live server of ours: its pid and socket lock files are stale.
  rm -f "$DATA/postmaster.pid" "$STATE"/.s.PGSQL.*

  # A data dir from another major version, or a half-made one, is thrown away.
  if [ -d "$DATA" ] && [ "$(cat "$DATA/PG_VERSION" 2>/dev/null)" != "$("$PGB/postgres" -V | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')" ]; then
    log "removing unusable data dir $DATA"
    rm -rf "$DATA"
  fi
  if [ ! -d "$DATA" ]; then
    as_postgres "$PGB/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync \
      > "$STATE/initdb.log" 2>&1 || { show_log_tail "$STATE/initdb.log"; die "initdb failed"; }
  fi

  choose_ports "$PORT_FILE" "$DEFAULT_PORT"
  port=$(cat "$PORT_FILE")

  if ! spawn as_postgres "$PGB/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$START_TIMEOUT" start -o \
      "-c listen_addresses=127.0.0.1 -p $port -k $STATE -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      >/dev/null 2>&1; then
    show_log_tail "$LOG"
    die "PostgreSQL did not start on port $port within ${START_TIMEOUT}s"
  fi
  wait_until "$START_TIMEOUT" "PostgreSQL on port $port to answer" "$LOG" healthy ||
    die "PostgreSQL started but does not answer on 127.0.0.1:$port"
  ensure_db "$port"
  ensure_password_role "$port"
  log "started (pid $(server_pid), port $port) in $(( $(now_ms) - t0 )) ms"
}

do_status() {
  if healthy; then
    echo "postgres: running, pid $(server_pid), port $(current_port), data $DATA"
  else
    echo "postgres: not running"; return 3
  fi
}

url() {
  healthy || die "not running: run 'bash tests/infra/postgres.sh start' first"
  echo "postgresql+psycopg://postgres@127.0.0.1:$(current_port)/$DB"
}

cmd=${1:-}
case "$cmd" in start|stop|status|url|env) ;; *) usage "start|stop|status|url|env" ;; esac
PGB=$(pg_bin)
mkdir -p "$ORCH_CI_ROOT" "$STATE"
chown postgres:postgres "$STATE"; chmod 700 "$STATE"
take_lock postgres
case "$cmd" in
  start) need_root; do_start ;;
  stop) need_root; do_stop ;;
  status) do_status ;;
  url) url ;;
  env) echo "export ORCH_TEST_PG_URL=$(url)"
       echo "export ORCH_TEST_PG_PW_ROLE=$PW_ROLE"
       echo "export ORCH_TEST_PG_PW_SECRET_FILE=$PW_SECRET" ;;
esac
