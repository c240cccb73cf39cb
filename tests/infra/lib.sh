# Shared helpers for the tests/infra/*.sh service scripts. Sourced, not executed.
# Every service keeps its state under $ORCH_CI_ROOT/<service> (default /tmp/orch-ci) and
# stops only the processes whose pids it wrote there: never anything found by name.

ORCH_CI_ROOT=${ORCH_CI_ROOT:-/tmp/orch-ci}

log() { printf '[%s] %s\n' "${SERVICE:-infra}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${SERVICE:-infra}" "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (it starts daemons and creates users)"; }

# Milliseconds since the epoch, for timings.
now_ms() { date +%s%3N; }

# True when pid $1 exists and is not a zombie.
pid_alive() {
  local pid=$1 state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Pid stored in file $1 (first line), or nothing.
pid_from_file() { [ -s "$1" ] && head -n1 "$1" | tr -dc '0-9' || true; }

# True when the pid in file $1 is alive.
pidfile_alive() { local p; p=$(pid_from_file "$1"); [ -n "$p" ] && pid_alive "$p"; }

# Stop the process whose pid is in file $1: TERM, wait up to $2 s (default 15), then KILL.
# Optional $3: a string that must appear in the process's command line, so that a recycled
# pid belonging to something else is never signalled. Optional $4=quiet: KILL is expected.
stop_pidfile() {
  local file=$1 timeout=${2:-15} expect=${3:-} quiet=${4:-} pid deadline
  pid=$(pid_from_file "$file")
  if [ -z "$pid" ] || ! pid_alive "$pid"; then rm -f "$file"; return 0; fi
  if [ -n "$expect" ] && ! tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$expect"; then
    log "pid $pid in $file is not ours any more (no '$expect' in its command line): leaving it"
    rm -f "$file"; return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  kill -CONT "$pid" 2>/dev/null || true   # a stopped (SIGSTOP) process acts on TERM only once resumed
  deadline=$(( $(date +%s) + timeout ))
  while pid_alive "$pid"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      [ "$quiet" = quiet ] || log "pid $pid ($file) ignored TERM for ${timeout}s: sending KILL"
      kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; break
    fi
    sleep 0.1
  done
  rm -f "$file"
}

# Give a dead pid up to 5 s to be reaped (pid 1 here reaps slowly, ~2 s): some daemons
# (postgres) refuse to start while their predecessor's pid still exists, even as a zombie.
wait_reaped() {
  local i
  for i in $(seq 50); do [ -e "/proc/$1" ] || return 0; sleep 0.1; done
}

# True when something listens on TCP 127.0.0.1:$1 (or on any address at that port).
port_in_use() {
  local port=$1
  if command -v ss >/dev/null 2>&1; then
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
    return 1
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# Print the first port >= $1 that nothing listens on (tries 200 ports), skipping any listed after.
find_free_port() {
  local port=$1 tries=0 skip; shift
  while [ $tries -lt 200 ]; do
    local taken=0
    for skip in "$@"; do [ "$port" = "$skip" ] && taken=1; done
    if [ $taken -eq 0 ] && ! port_in_use "$port"; then echo "$port"; return 0; fi
    port=$((port + 1)); tries=$((tries + 1))
  done
  die "no free TCP port found from $1 upwards"
}

# choose_ports FILE DEFAULT...: one port per default: the default when nothing listens there,
# else the port remembered in FILE when free, else the first free one above the default; all
# different. Writes them, space-separated, to FILE. Our own daemons must be stopped first.
choose_ports() {
  local file=$1; shift
  local defaults=("$@") chosen=() remembered=() i p
  if [ -s "$file" ]; then
    read -r -a remembered < "$file"
    [ ${#remembered[@]} -eq ${#defaults[@]} ] || remembered=()
  fi
  for i in "${!defaults[@]}"; do
    p=${defaults[$i]}
    if port_in_use "$p" || [[ " ${chosen[*]} " == *" $p "* ]]; then
      p=${remembered[$i]:-$p}
      if port_in_use "$p" || [[ " ${chosen[*]} " == *" $p "* ]]; then
        p=$(find_free_port "${defaults[$i]}" "${chosen[@]}")
      fi
    fi
    chosen+=("$p")
  done
  [ "${chosen[*]}" = "${defaults[*]}" ] || log "default port(s) ${defaults[*]} taken by something else: using ${chosen[*]}"
  echo "${chosen[*]}" > "$file"
}

# wait_until TIMEOUT_S DESCRIPTION LOGFILE CMD...: poll CMD every 0.2 s; on timeout, print the
# log's tail and fail.
wait_until() {
  local timeout=$1 what=$2 logfile=$3; shift 3
  local deadline=$(( $(now_ms) + timeout * 1000 ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(now_ms)" -ge "$deadline" ]; then
      log "timed out after ${timeout}s waiting for $what"
      show_log_tail "$logfile"
      return 1
    fi
    sleep 0.2
  done
}

show_log_tail() {
  local f
  for f in "$@"; do
    [ -n "$f" ] && [ -f "$f" ] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n 30 "$f" >&2 || true
  done
}

# Serialise invocations of one service's script: two `make test` side by side must not race.
# The lock is fd 9; daemons must be started through `spawn` so they do not inherit it (a
# daemon holding the lock would block every later call). Their standard input is /dev/null: a
# daemon started with fd 0 closed opens its log file as fd 0 and loses it when it detaches
# (slurmd then fails every job launch: "launch failed requeued held").
take_lock() {
  mkdir -p "$ORCH_CI_ROOT"
  exec 9>"$ORCH_CI_ROOT/.$1.lock"
  flock -w 120 9 || die "another $1 script has held $ORCH_CI_ROOT/.$1.lock for over 120 s"
}
spawn() { "$@" 9>&- </dev/null; }

# Usage message helper: usage "start|stop|status|env"
usage() { echo "usage: $0 $1" >&2; exit 2; }
