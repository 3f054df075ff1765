#!/usr/bin/env bash
# The whole suite N times in a row (default 5) while stress-ng keeps the CPUs, memory and disk
# busy: a test that passes only on an idle machine fails here. Not a CI step (about 45 min);
# run it after changing tests or timing-sensitive code and record the result in
# docs/RELIABILITY.md ("Tests under load").
# Usage: scripts/test-under-load.sh [runs]     GHOSTPIPE_LOAD="--cpu 2 --cpu-load 60 ..." to change the load
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
if ! command -v stress-ng >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends stress-ng >/dev/null
fi
# One CPU worker per core at 60 %, a memory worker touching 128 MiB, an I/O worker syncing:
# the suite's own processes then compete for what is left, as on a busy gateway.
load="${GHOSTPIPE_LOAD:---cpu $(nproc) --cpu-load 60 --vm 1 --vm-bytes 128M --io 1}"
# shellcheck disable=SC2086
stress-ng $load --timeout 0 --quiet &
stress_pid=$!
trap 'kill "$stress_pid" 2>/dev/null || true; wait "$stress_pid" 2>/dev/null || true' EXIT
echo "load: stress-ng $load (pid $stress_pid), $(nproc) cores" >&2
for run in $(seq 1 "$runs"); do
  started=$(date +%s)
  log="${TMPDIR:-/tmp}/ghostpipe-under-load-$run.log"
  if bash scripts/test.sh >"$log" 2>&1; then
    echo "run $run/$runs: PASS in $(( $(date +%s) - started )) s ($(grep -E '^# (tests|pass|fail)' "$log" | tr '\n' ' '))" >&2
  else
    echo "run $run/$runs: FAIL after $(( $(date +%s) - started )) s; log: $log" >&2
    grep -E '^not ok|^# (tests|pass|fail)' "$log" >&2 || true
    exit 1
  fi
done
