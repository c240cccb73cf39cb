#!/usr/bin/env bash
# Install the Debian packages that the tests need, only those missing.
#   system-deps.sh [GROUP...]     groups: postgres slurm slurm-accounting sge ssh relion browser all
#                                 (default: postgres; `all` is every group)
# A second run costs one `dpkg -s` per group; apt-get update runs only when something is missing.
set -euo pipefail
SERVICE=system-deps
. "$(dirname "$0")/lib.sh"

declare -A GROUP_PACKAGES=(
  [postgres]="postgresql"
  [slurm]="slurmctld slurmd slurm-client munge"
  [slurm-accounting]="slurmdbd mariadb-server"
  [sge]="gridengine-master gridengine-exec gridengine-client"
  [ssh]="openssh-server openssh-client rsync"
  [relion]="relion openmpi-bin ghostscript"
  [browser]="chromium fonts-dejavu-core"
)
ALL_GROUPS="postgres slurm slurm-accounting sge ssh relion browser"

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(postgres)
if [ "${groups[0]}" = all ]; then read -r -a groups <<< "$ALL_GROUPS"; fi
for g in "${groups[@]}"; do
  [ -n "${GROUP_PACKAGES[$g]+x}" ] || die "unknown group '$g' (known: $ALL_GROUPS all)"
done

# Packages of a list that are not installed (dpkg -s exits non-zero, or status is not installed).
missing_of() {
  local p out=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || out+=("$p")
  done
  echo "${out[*]:-}"
}

preseed_gridengine() {
  local h; h=$(hostname)
  printf '%s\n' \
    "gridengine-common shared/gridengineconfig boolean true" \
    "gridengine-common shared/gridenginecell string default" \
    "gridengine-common shared/gridenginemaster string $h" \
    "gridengine-client shared/gridenginemaster string $h" \
    "gridengine-master shared/gridenginemaster string $h" | debconf-set-selections
}

export DEBIAN_FRONTEND=noninteractive
updated=0
for g in "${groups[@]}"; do
  # shellcheck disable=SC2086
  missing=$(missing_of ${GROUP_PACKAGES[$g]})
  if [ -z "$missing" ]; then
    echo "system-deps: $g: already installed (${GROUP_PACKAGES[$g]})"
    continue
  fi
  need_root
  t0=$(now_ms)
  mkdir -p "$ORCH_CI_ROOT"
  if [ $updated -eq 0 ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null || die "apt-get update failed"
    updated=1
  fi
  [ "$g" = sge ] && preseed_gridengine
  # shellcheck disable=SC2086
  if ! apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing \
        > "$ORCH_CI_ROOT/apt-$g.log" 2>&1; then
    tail -n 30 "$ORCH_CI_ROOT/apt-$g.log" >&2
    die "$g: apt-get install $missing failed (full log: $ORCH_CI_ROOT/apt-$g.log)"
  fi
  echo "system-deps: $g: installed $missing in $(( ($(now_ms) - t0) / 1000 ))s"
done
