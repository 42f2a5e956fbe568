#!/usr/bin/env bash
# What reading proportional memory costs narwhal: 16 workers of 200 MB each (a Python process
# that fills a bytearray and sleeps), narwhal's own CPU (utime + stime from /proc/PID/stat) over
# 60 s once they are up: everything narwhal does, its smaps_rollup reads included (every 2 s,
# or less often where they would take more than 0.5% of a core).
# Medians of 3 runs.
# Rewrites only its own section of bench/RESULTS.md ("## Proportional memory").
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
export PATH="$PATH:/usr/local/go/bin"
while IFS='=' read -r name _; do unset "$name"; done < <(env | grep '^NARWHAL_' || true)

tmp=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$tmp"' EXIT
CGO_ENABLED=0 timeout 600 go build -trimpath -ldflags '-s -w' -o "$tmp/narwhal" .
worker='import time
b = bytearray(200 << 20)
for i in range(0, len(b), 4096):
    b[i] = 1
open("/dev/stdout", "w").write("up\n")
time.sleep(3600)'

# run prints narwhal's CPU share of one core, in percent, over 60 s once every worker is up, and
# the pool's total proportional memory as narwhal last published it, in MiB.
run() {
  local pid cpu0 cpu1 t0 t1
  env NARWHAL_WORKERS=16 NARWHAL_READY=delay NARWHAL_READY_DELAY=1s NARWHAL_METRICS_ADDR=127.0.0.1:19390 \
    NARWHAL_CONTROL_SOCKET="@narwhal-bench-pss-$$" "$tmp/narwhal" python3 -c "$worker" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  for _ in $(seq 600); do  # at most 60 s for 16 workers to fill their memory
    [[ $(grep -c '^up$' "$tmp/out" 2>/dev/null || true) -ge 16 ]] && break
    sleep 0.1
  done
  sleep 5 # past the start's faster scans
  read -r cpu0 < <(awk '{print $14 + $15}' "/proc/$pid/stat"); t0=$(date +%s.%N)
  sleep 60
  read -r cpu1 < <(awk '{print $14 + $15}' "/proc/$pid/stat"); t1=$(date +%s.%N)
  pss=$(timeout 10 curl -s http://127.0.0.1:19390/metrics | awk '/^narwhal_worker_proportional_memory_bytes/ {s += $2} END {printf "%.0f", s / 1048576}')
  kill -TERM "$pid"; wait "$pid" || true
  awk -v a="$cpu0" -v b="$cpu1" -v t0="$t0" -v t1="$t1" -v pss="$pss" 'BEGIN { printf "%.2f/%s", (b - a) / 100 / (t1 - t0) * 100, pss }'
}
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

cpu=(); pss=()
for _ in 1 2 3; do
  r=$(run)
  cpu+=("${r%/*}"); pss+=("${r#*/}")
done
section="$tmp/section.md"
{
  echo "## Proportional memory"
  echo
  echo "Run by \`bench/pss.sh\` on $(nproc) cores, $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo "16 workers of 200 MB each (Python, a filled bytearray), narwhal's own CPU over 60 s once all"
  echo "are up; medians of 3 runs. Everything narwhal does is counted, its reads of each worker"
  echo "tree's smaps_rollup (for NARWHAL_MAX_MEMORY, the budget, --status and the gauge; every 2 s, or"
  echo "less often where they would take more than 0.5% of a core)"
  echo "included. Goal: under 1% of a core."
  echo
  echo "| | median | runs |"
  echo "| --- | ---: | --- |"
  echo "| narwhal's CPU, % of one core | $(median3 "${cpu[@]}") | ${cpu[*]} |"
  echo "| the pool's proportional memory, MiB (narwhal_worker_proportional_memory_bytes, summed) | $(median3 "${pss[@]}") | ${pss[*]} |"
} >"$section"
replace_section "Proportional memory" "$section"
cat "$section"
