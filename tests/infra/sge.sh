#!/usr/bin/env bash
# A one-host Grid Engine (Debian's 8.1.9) for the tests: qmaster + execd, queue all.q with 8
# slots, parallel environment smp, scheduler on a 1 s cadence, root allowed to run jobs.
#   sge.sh start    start (or reuse a healthy leftover), wait until all.q accepts jobs
#   sge.sh stop     delete our jobs, stop the daemons recorded in the state dir (nothing else)
#   sge.sh status   exit 0 and say so when the queue answers, else exit 3
#   sge.sh env      print SGE_ROOT / SGE_CELL / SGE_QMASTER_PORT / SGE_EXECD_PORT exports
# Everything lives under $ORCH_CI_ROOT/sge (default /tmp/orch-ci/sge): its own SGE_ROOT (links
# to the packaged binaries), cell, spool and pid files; the packaged cell in /var/lib/gridengine
# is left alone. Ports: ORCH_SGE_QMASTER_PORT / ORCH_SGE_EXECD_PORT (defaults 6444 / 6445), or
# the next free ones when taken by something that is not ours; remembered in the state dir.
# Clients need all four variables printed by `env` (the port ones above all).
# Each fresh start re-creates the spool: no job or setting survives from a previous run.
set -euo pipefail
SERVICE=sge
. "$(dirname "$0")/lib.sh"

STATE=$ORCH_CI_ROOT/sge
export SGE_ROOT=$STATE/root SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
SPOOL=$STATE/spool
RUN=$STATE/run
PORTS_FILE=$STATE/ports
QMASTER_PID=$RUN/qmaster.pid
EXECD_PID=$RUN/execd.pid
ADMIN=sgeadmin
HOST=$(hostname)
START_TIMEOUT=${ORCH_SGE_START_TIMEOUT:-60}
LOGS=("$SPOOL/qmaster/messages" "$SPOOL/execd/$HOST/messages" "$STATE/qmaster.out" "$STATE/execd.out")
export SGE_QMASTER_PIDFILE=$QMASTER_PID SGE_EXECD_PIDFILE=$EXECD_PID

load_ports() {
  if [ -s "$PORTS_FILE" ]; then
    read -r SGE_QMASTER_PORT SGE_EXECD_PORT < "$PORTS_FILE"
    export SGE_QMASTER_PORT SGE_EXECD_PORT
  fi
}

# The queue instance all.q@HOST exists, has a load report and no state flag (u, E, d, a...).
queue_ready() {
  local line
  line=$(timeout 10 qstat -f -q "all.q@$HOST" 2>/dev/null | grep "^all.q@" | head -n1) || return 1
  [ -n "$line" ] || return 1
  # columns: queuename qtype resv/used/tot. load_avg arch [states]
  awk '{ exit !($4 != "-NA-" && NF == 5) }' <<< "$line"
}

healthy() {
  [ -s "$PORTS_FILE" ] && pidfile_alive "$QMASTER_PID" && pidfile_alive "$EXECD_PID" && queue_ready
}

check_installed() {
  local b
  for b in /usr/sbin/sge_qmaster /usr/sbin/sge_execd /usr/lib/gridengine/spoolinit qconf qsub qstat; do
    command -v "$b" >/dev/null || die "$b not found (run tests/infra/system-deps.sh sge)"
  done
}

do_stop() {
  load_ports
  if pidfile_alive "$QMASTER_PID"; then
    timeout 10 qdel -f -u '*' >/dev/null 2>&1 || true
  fi
  stop_pidfile "$EXECD_PID" 10 sge_execd
  # A clean qmaster shutdown takes ~11 s; the spool is re-created at every start, so do not wait.
  stop_pidfile "$QMASTER_PID" 2 sge_qmaster quiet
  log "stopped"
}

# A new cell and spool: bootstrap, global configuration (root may run jobs, accounting flushed
# every second), complexes, usersets, managers.
init_cell() {
  local conf
  rm -rf "$SPOOL" "$SGE_ROOT"
  mkdir -p "$COMMON" "$SPOOL"/{qmaster/job_scripts,spooldb,execd} "$RUN"
  local d
  for d in bin lib utilbin; do ln -s "/var/lib/gridengine/$d" "$SGE_ROOT/$d"; done
  ln -s /usr/share/gridengine/util "$SGE_ROOT/util"
  sed -e "s#^spooling_params .*#spooling_params         $SPOOL/spooldb#" \
      -e "s#^qmaster_spool_dir .*#qmaster_spool_dir       $SPOOL/qmaster#" \
      /usr/share/gridengine/default-bootstrap > "$COMMON/bootstrap"
  grep -q "$SPOOL/spooldb" "$COMMON/bootstrap" || die "could not write $COMMON/bootstrap"
  echo "$HOST" > "$COMMON/act_qmaster"
  # Without the alias, the execd's reports are refused ("commlib error: access denied").
  echo "$HOST localhost" > "$COMMON/host_aliases"
  conf=$STATE/global.conf
  sed -e "s#^execd_spool_dir .*#execd_spool_dir        $SPOOL/execd#" \
      -e 's#^min_uid .*#min_uid                0#' -e 's#^min_gid .*#min_gid                0#' \
      -e 's#^load_report_time .*#load_report_time       00:00:05#' \
      -e 's#flush_time=[0-9:]*#flush_time=00:00:01#' \
      -e 's#^mailer .*#mailer                 /bin/true#' \
      /usr/share/gridengine/default-configuration > "$conf"
  chown -R "$ADMIN:$ADMIN" "$STATE/root/$SGE_CELL" "$SPOOL" "$RUN" "$conf"
  runuser -u "$ADMIN" -- env SGE_ROOT="$SGE_ROOT" SGE_CELL="$SGE_CELL" sh -c '
      set -e
      /usr/lib/gridengine/spoolinit berkeleydb libspoolb "$1/spooldb" init
      /usr/lib/gridengine/spooldefaults configuration "$2"
      /usr/lib/gridengine/spooldefaults complexes /usr/share/gridengine/util/resources/centry
      /usr/lib/gridengine/spooldefaults usersets /usr/share/gridengine/util/resources/usersets
      /usr/lib/gridengine/spooldefaults managers "$3" root' sh "$SPOOL" "$conf" "$ADMIN" \
    > "$STATE/init.log" 2>&1 || { show_log_tail "$STATE/init.log"; die "initialising the SGE spool failed"; }
}

configure_cluster() {
  local tmp=$STATE/tmp
  mkdir -p "$tmp"
  {
    qconf -ah "$HOST" || true      # the qmaster host may already be an admin host
    qconf -as "$HOST"
    # Scheduler: a 1 s cadence instead of 15 s, no load adjustments.
    qconf -ssconf | sed -e 's#^schedule_interval .*#schedule_interval                 0:0:1#' \
        -e 's#^flush_submit_sec .*#flush_submit_sec                  1#' \
        -e 's#^flush_finish_sec .*#flush_finish_sec                  1#' \
        -e 's#^job_load_adjustments .*#job_load_adjustments              NONE#' \
        -e 's#^load_adjustment_decay_time .*#load_adjustment_decay_time        0:0:0#' > "$tmp/sched"
    qconf -Msconf "$tmp/sched"
    qconf -Ap /usr/share/gridengine/util/resources/pe/smp
    printf 'group_name @allhosts\nhostlist %s\n' "$HOST" > "$tmp/allhosts"
    qconf -Ahgrp "$tmp/allhosts"
    # qconf -aq edits a template through $EDITOR, exec'd with the file: a sed script is ours.
    cat > "$tmp/edit-queue" <<'SH'
#!/bin/sh
exec sed -i -e 's#^hostlist .*#hostlist              @allhosts#' -e 's#^slots .*#slots                 8#' \
  -e 's#^pe_list .*#pe_list               smp#' -e 's#^load_thresholds .*#load_thresholds       NONE#' \
  -e 's#^shell .*#shell                 /bin/bash#' "$1"
SH
    chmod 755 "$tmp/edit-queue"
    EDITOR=$tmp/edit-queue qconf -aq all.q
  } > "$STATE/configure.log" 2>&1 || { show_log_tail "$STATE/configure.log"; die "configuring the cluster with qconf failed"; }
}

do_start() {
  local t0; t0=$(now_ms)
  check_installed
  load_ports
  if healthy; then
    log "already running (qmaster pid $(pid_from_file "$QMASTER_PID"), ports $(cat "$PORTS_FILE")): reusing it"
    return 0
  fi
  if pidfile_alive "$QMASTER_PID" || pidfile_alive "$EXECD_PID"; then
    log "leftover instance is not healthy: restarting it"
    do_stop
  fi
  choose_ports "$PORTS_FILE" "${ORCH_SGE_QMASTER_PORT:-6444}" "${ORCH_SGE_EXECD_PORT:-6445}"
  load_ports
  init_cell
  ( cd "$STATE" && spawn /usr/sbin/sge_qmaster ) > "$STATE/qmaster.out" 2>&1 ||
    { show_log_tail "${LOGS[@]}"; die "sge_qmaster failed to start"; }
  wait_until "$START_TIMEOUT" "sge_qmaster to answer qconf" "${LOGS[0]}" timeout 5 qconf -sh ||
    die "sge_qmaster did not come up within ${START_TIMEOUT}s"
  configure_cluster
  # A fresh cell has no accounting file until qmaster flushes its first record; until then qacct
  # answers "unable to find", which the poller rightly reads as a host that keeps no accounting
  # (and settles jobs from their exit sentinel for the next 10 minutes). Start with an empty one.
  [ -f "$COMMON/accounting" ] || install -o "$ADMIN" -g "$ADMIN" -m 644 /dev/null "$COMMON/accounting"
  ( cd "$STATE" && spawn /usr/sbin/sge_execd ) > "$STATE/execd.out" 2>&1 ||
    { show_log_tail "${LOGS[@]}"; die "sge_execd failed to start"; }
  wait_until "$START_TIMEOUT" "all.q@$HOST to be available" "${LOGS[1]}" queue_ready || {
    timeout 10 qstat -f >&2 || true; show_log_tail "${LOGS[0]}" "${LOGS[3]}"
    die "Grid Engine did not come up within ${START_TIMEOUT}s"; }
  log "started (ports $(cat "$PORTS_FILE")) in $(( $(now_ms) - t0 )) ms"
}

do_status() {
  load_ports
  if healthy; then
    echo "sge: running, all.q@$HOST available, ports $(cat "$PORTS_FILE"), SGE_ROOT=$SGE_ROOT"
  else
    echo "sge: not running"; return 3
  fi
}

do_env() {
  load_ports
  healthy || die "not running: run 'bash tests/infra/sge.sh start' first"
  echo "export SGE_ROOT=$SGE_ROOT"
  echo "export SGE_CELL=$SGE_CELL"
  echo "export SGE_QMASTER_PORT=$SGE_QMASTER_PORT"
  echo "export SGE_EXECD_PORT=$SGE_EXECD_PORT"
}

cmd=${1:-}
case "$cmd" in start|stop|status|env) ;; *) usage "start|stop|status|env" ;; esac
take_lock sge
mkdir -p "$STATE"
case "$cmd" in
  start) need_root; do_start ;;
  stop) need_root; do_stop ;;
  status) do_status ;;
  env) do_env ;;
esac
