#!/usr/bin/env bash
# Memory of 4 workers beside the peers: the total proportional memory (PSS) of the whole process
# tree (the manager included) of gunicorn and puma, with and without preload, and of narwhal
# running one single-worker server per slot, with and without NARWHAL_MEMORY_MERGE (the node's
# ksmd on), after 2,000 requests on 127.0.0.1 and, for some rows, after 20,000. The apps are
# examples/python/django_mem and examples/ruby/rack_mem (about 40 MB of state each, built at
# boot). Medians of 3 runs, rows interleaved. Installs its Debian packages if missing, puts
# /sys/kernel/mm/ksm back as it found it, and rewrites its own section of bench/RESULTS.md
# ("## Memory beside the peers"). About 5 minutes on 2 idle cores, 10 on busy ones.
#   bench/memory.sh                          every row, 3 runs, then RESULTS.md
#   bench/memory.sh puma narwhal-puma-merge  those rows once, printed only
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
export PATH="$PATH:/usr/local/go/bin"
while IFS='=' read -r name _; do unset "$name"; done < <(env | grep '^NARWHAL_' || true)

need=()
/usr/bin/python3 -c 'import django' 2>/dev/null || need+=(python3-django)
command -v gunicorn >/dev/null || need+=(gunicorn)
command -v puma >/dev/null || need+=(puma)
ruby -e 'require "rack"' 2>/dev/null || need+=(ruby-rack)
if [[ ${#need[@]} -gt 0 ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

port=18961
metrics=127.0.0.1:18962
ksm=/sys/kernel/mm/ksm
tmp=$(mktemp -d)
ksm_saved=()
for f in run pages_to_scan sleep_millisecs; do ksm_saved+=("$f=$(cat "$ksm/$f")"); done
current="" # the server running now, the leader of its own process group (setsid)

# stop ends the process tree under $1: SIGTERM to its top, up to 30 s for it to go, then SIGKILL
# to its process group and to every process of the tree that is left.
stop() {
  local top=$1 pids p
  pids=$(tree "$top")
  kill -TERM "$top" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$top" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$top" 2>/dev/null || true
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  wait "$top" 2>/dev/null || true
}
cleanup() {
  local kv
  [[ -n $current ]] && stop "$current"
  # run last: ksmd stops before its pace goes back.
  for kv in "${ksm_saved[@]:1}" "${ksm_saved[0]}"; do echo "${kv#*=}" >"$ksm/${kv%%=*}" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CGO_ENABLED=0 timeout 600 go build -trimpath -ldflags '-s -w' -o "$tmp/narwhal" .
(cd bench && timeout 600 go build -o "$tmp/load" ./memory/load)

# tree prints $1 and every process descended from it.
tree() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END {
      in_tree[root] = 1
      for (grew = 1; grew; ) { grew = 0; for (p in parent) if (!(p in in_tree) && (parent[p] in in_tree)) { in_tree[p] = 1; grew = 1 } }
      for (p in in_tree) print p
    }'
}
# pss_kib prints the sum of Pss: (kB) in the smaps_rollup of every pid given.
pss_kib() {
  local p sum=0 v
  for p in "$@"; do
    v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
# others_busy prints how busy the cores are over 1 s, in percent, while none of this script's
# servers run: the other work on the machine.
others_busy() {
  local a b
  a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]) }'
}
ksmd_ticks() { awk '{ print $14 + $15 }' "/proc/$(pgrep -x ksmd | head -1)/stat"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f\n", k / 1024 }'; }

# settle waits until ksmd's pages_sharing has not grown for 5 s, after at least two full scans
# from now (a page merges on the scan after the one that first sees it), at most 90 s.
settle() {
  local scans0 best now still=0
  scans0=$(cat "$ksm/full_scans"); best=$(cat "$ksm/pages_sharing")
  for _ in $(seq 90); do
    sleep 1
    now=$(cat "$ksm/pages_sharing")
    if ((now > best)); then best=$now; still=0; else still=$((still + 1)); fi
    ((still >= 5 && $(cat "$ksm/full_scans") >= scans0 + 2)) && return 0
  done
  echo "memory.sh: ksmd still merging after 90 s" >&2
  return 1
}

# load sends $1 requests in all, counting what the readiness probes already sent ($2).
load() {
  local out
  out=$("$tmp/load" -url "http://127.0.0.1:$port/" -n "$(($1 - $2))" -c 4 -timeout 5m) ||
    { echo "memory.sh: load: $out" >&2; return 1; }
  echo "$out" >&2
}

# measure prints "total_kib procs manager_kib" for the tree under $1.
measure() {
  local pids
  pids=$(tree "$1")
  echo "$(pss_kib $pids) $(wc -w <<<"$pids") $(pss_kib "$1")"
}
# ksm_kib prints the memory of pages ksmd merged (ksm_merging_pages) over the tree under $1,
# read here, beside what narwhal last published.
ksm_kib() {
  local p sum=0 v
  for p in $(tree "$1"); do
    v=$(cat "/proc/$p/ksm_merging_pages" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo $((sum * $(getconf PAGESIZE) / 1024))
}

# run ROW: start the row's server, wait for 4 workers to answer, send 2,000 requests (then up to
# 20,000 for the rows that have that column), and print one line per point measured:
# "ROW REQUESTS TOTAL_KIB PROCS MANAGER_KIB KSMD_SECONDS MERGED_KIB OTHERS_BUSY_PERCENT SETTLED
# KSM_KIB": MERGED_KIB as narwhal's /metrics says, KSM_KIB as /proc says at the same time;
# others' share measured over 1 s before the row starts; SETTLED is 0 where ksmd was still
# merging when the 90 s ran out.
run() {
  local row=$1 merge=0 narwhal=0 preload=0 cmd top out probes=0 pids=0 ticks0=0 m n ksmd merged others settled
  local py=(--chdir examples/python/django_mem app.wsgi)
  local ru=examples/ruby/rack_mem/config.ru
  case $row in
    gunicorn) cmd=(gunicorn -w 4 -b "127.0.0.1:$port" "${py[@]}") ;;
    gunicorn-preload) cmd=(gunicorn -w 4 --preload -b "127.0.0.1:$port" "${py[@]}") ;;
    narwhal-gunicorn-preload) narwhal=1; preload=1; cmd=(gunicorn -c contrib/python/narwhal_fork.py "${py[@]}") ;;
    narwhal-gunicorn-preload-nofreeze) narwhal=1; preload=1; cmd=(gunicorn -c bench/memory/nofreeze.py "${py[@]}") ;;
    narwhal-gunicorn*) narwhal=1; cmd=(gunicorn "${py[@]}") ;;
    puma) cmd=(puma -w 4 -t 1:5 -b "tcp://127.0.0.1:$port" "$ru") ;;
    puma-preload) cmd=(puma -w 4 -t 1:5 --preload -b "tcp://127.0.0.1:$port" "$ru") ;;
    narwhal-puma-preload) narwhal=1; preload=1; cmd=(puma --bind-to-activated-sockets only --config examples/ruby/puma.rb "$ru") ;;
    narwhal-puma*) narwhal=1; cmd=(puma --bind-to-activated-sockets only --config examples/ruby/puma.rb "$ru") ;;
  esac
  [[ $row == *-merge ]] && merge=1
  others=$(others_busy)
  if ((merge)); then
    echo 1000 >"$ksm/pages_to_scan"; echo 20 >"$ksm/sleep_millisecs"; echo 1 >"$ksm/run"
    ticks0=$(ksmd_ticks)
  fi
  if ((narwhal)); then
    env NARWHAL_LISTEN="127.0.0.1:$port" NARWHAL_WORKERS=4 NARWHAL_METRICS_ADDR="$metrics" \
      NARWHAL_CONTROL_SOCKET="@narwhal-bench-memory-$$" NARWHAL_MEMORY_MERGE="$( ((merge)) && echo true || echo false)" \
      NARWHAL_PRELOAD="$( ((preload)) && echo true || echo false)" \
      setsid "$tmp/narwhal" "${cmd[@]}" >"$tmp/$row.log" 2>&1 &
  else
    setsid "${cmd[@]}" >"$tmp/$row.log" 2>&1 &
  fi
  top=$!
  current=$top
  # Ready when one batch of 20 requests is answered by 4 distinct pids: every worker has loaded
  # the app. At most 120 s.
  for _ in $(seq 240); do
    out=$("$tmp/load" -url "http://127.0.0.1:$port/" -n 20 -c 4 -timeout 10s 2>/dev/null || true)
    [[ $out =~ responses=([0-9]+).*pids=([0-9]+) ]] && { probes=$((probes + BASH_REMATCH[1])); pids=${BASH_REMATCH[2]}; }
    ((pids >= 4)) && break
    kill -0 "$top" 2>/dev/null || break
    sleep 0.5
  done
  if ((pids < 4)); then
    echo "memory.sh: $row: 4 workers did not answer within 120 s; its log:" >&2
    tail -20 "$tmp/$row.log" >&2
    stop "$top"; current=""
    return 0
  fi
  for n in 2000 20000; do
    [[ $n == 20000 && " ${long[*]} " != *" $row "* ]] && break
    load "$n" "$probes" || break
    probes=$n
    sleep 1
    ksmd=""; merged=""; settled=-
    if ((merge)); then
      settle && settled=1 || settled=0
      ksmd=$(awk -v a="$ticks0" -v b="$(ksmd_ticks)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / hz }')
    fi
    if ((narwhal)); then
      merged=$(timeout 10 curl -s "http://$metrics/metrics" |
        awk '/^narwhal_worker_merged_memory_bytes/ { s += $2 } END { printf "%.0f", s / 1024 }')
    fi
    m=$(measure "$top")
    echo "$row $n $m ${ksmd:--} ${merged:--} $others $settled $( ((merge)) && ksm_kib "$top" || echo -)"
    echo "memory.sh: $row $n: $m ksmd=${ksmd:--} merged=${merged:--} others=$others% load=$(cut -d' ' -f1 /proc/loadavg)" >&2
  done
  stop "$top"; current=""
  if ((merge)); then
    for kv in "${ksm_saved[@]:1}" "${ksm_saved[0]}"; do echo "${kv#*=}" >"$ksm/${kv%%=*}"; done
  fi
}

rows=(gunicorn gunicorn-preload narwhal-gunicorn narwhal-gunicorn-preload narwhal-gunicorn-preload-nofreeze
  narwhal-gunicorn-merge puma puma-preload narwhal-puma narwhal-puma-preload narwhal-puma-merge)
long=(gunicorn-preload narwhal-gunicorn narwhal-gunicorn-preload narwhal-gunicorn-preload-nofreeze narwhal-gunicorn-merge) # also measured at 20,000 requests
runs=3
[[ $# -gt 0 ]] && { rows=("$@"); runs=1; } # a partial run is for looking, not for RESULTS.md
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$runs"); do
  for row in "${rows[@]}"; do
    echo "memory.sh: run $i, $row" >&2
    run "$row" >>"$tmp/points"
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
[[ $# -eq 0 ]] || { cat "$tmp/points"; exit 0; }

# row_line ROW N LABEL prints the table's line for ROW at N requests: medians, then the runs.
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
row_line() {
  local row=$1 n=$2 label=$3 shown=2,000
  [[ $n == 20000 ]] && shown=20,000
  col() { awk -v r="$row" -v n="$n" -v c="$1" '$1 == r && $2 == n { print $c }' "$tmp/points"; }
  if [[ -z $(col 3) ]]; then
    echo "| $label | $shown | did not run | | | | | | |"
    return
  fi
  local total runs procs mgr ksmd merged ksmkib
  total=$(mib "$(col 3 | median)")
  runs=$(for k in $(col 3); do mib "$k"; done | paste -sd' ')
  procs=$(col 4 | median)
  mgr=$(awk -v k="$(col 5 | median)" 'BEGIN { printf "%.1f", k / 1024 }')
  ksmd=$(col 6 | grep -v -- - | median || true)
  merged=$(col 7 | grep -v -- - | median || true)
  [[ -n $merged && $row == *-merge ]] && merged=$(mib "$merged") || merged=""
  ksmkib=$(col 10 | grep -v -- - | median || true)
  [[ -n $ksmkib ]] && ksmkib=$(mib "$ksmkib")
  echo "| $label | $shown | **$total** | $runs | $procs | $mgr | $ksmd | $merged | $ksmkib |"
}

# med ROW N [COLUMN] prints the median over the runs of a column (3: total PSS) in MiB, or "?".
med() {
  local k
  k=$(awk -v r="$1" -v n="$2" -v c="${3:-3}" '$1 == r && $2 == n && $c != "-" { print $c }' "$tmp/points" | median)
  [[ -n $k ]] && mib "$k" || echo "?"
}
# summary states what the table holds, in words: the figures, no more.
summary() {
  local busy own unsettled
  unsettled=$(awk '$9 == 0 { print $1 " at " $2 }' "$tmp/points" | paste -sd, -)
  busy=$(awk '$8 > m { m = $8 } END { print m + 0 }' "$tmp/points")
  own=$(awk '$1 ~ /^narwhal/ { print $5 }' "$tmp/points" | median)
  echo "With preload, at 2,000 requests: narwhal + gunicorn $(med narwhal-gunicorn-preload 2000) MiB against gunicorn --preload's"
  echo "$(med gunicorn-preload 2000), narwhal + puma $(med narwhal-puma-preload 2000) against puma --preload's $(med puma-preload 2000); each narwhal row includes"
  echo "narwhal's own PSS (below). After 20,000 requests: narwhal + gunicorn $(med narwhal-gunicorn-preload 20000) against $(med gunicorn-preload 20000)."
  echo "Without gc.freeze() before the fork point: $(med narwhal-gunicorn-preload-nofreeze 2000) MiB at 2,000 requests, $(med narwhal-gunicorn-preload-nofreeze 20000) at 20,000."
  echo
  echo "Without preload, at 2,000 requests narwhal + gunicorn held $(med narwhal-gunicorn 2000) MiB, against $(med gunicorn 2000) for"
  echo "gunicorn -w 4 and $(med gunicorn-preload 2000) for gunicorn --preload; with memory merge $(med narwhal-gunicorn-merge 2000) ($(med narwhal-gunicorn-merge 2000 10) MiB"
  echo "merged, $(awk '$1 == "narwhal-gunicorn-merge" && $2 == 2000 { print $6 }' "$tmp/points" | median) s of ksmd CPU). narwhal + puma held $(med narwhal-puma 2000) MiB, against $(med puma 2000) for puma -w 4"
  echo "and $(med puma-preload 2000) for puma --preload; with memory merge $(med narwhal-puma-merge 2000) ($(med narwhal-puma-merge 2000 10) MiB merged). After 20,000"
  echo "requests: gunicorn --preload $(med gunicorn-preload 20000), narwhal + gunicorn $(med narwhal-gunicorn 20000), with merge $(med narwhal-gunicorn-merge 20000) MiB."
  echo "narwhal's own PSS was $(mib "${own:-0}") MiB (median over its rows). Other work kept the cores at most"
  echo "$busy% busy (over 1 s before a run, with none of the script's processes up; median $(awk '{ print $8 }' "$tmp/points" | median)%)$(awk -v b="$busy" 'BEGIN { if (b > 25) printf ":\nthe machine was shared with other work (a CI run) for part of the runs" }')."
  [[ -z $unsettled ]] || echo "ksmd was still merging after 90 s at: $unsettled."
  true
}

section="$tmp/section.md"
{
  echo "## Memory beside the peers"
  echo
  echo "Run by \`bench/memory.sh\` on $(nproc) cores, $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC');"
  echo "gunicorn $(gunicorn --version | cut -d' ' -f3 | tr -d '()'), Django $(/usr/bin/python3 -c 'import django; print(django.get_version())'), $(/usr/bin/python3 --version);"
  echo "puma $(puma --version | cut -d' ' -f3), rack $(ruby -e 'require "rack"; print Rack.release'), ruby $(ruby -e 'print RUBY_VERSION'). narwhal built with \`CGO_ENABLED=0 go build -trimpath -ldflags '-s -w'\`."
  echo "Load average (1, 5, 15 min) at the start: $load_start; at the end: $load_end (the benchmark's own"
  echo "workers and load client count in it)."
  echo
  echo "4 workers on 127.0.0.1 of \`examples/python/django_mem\` (Django with admin, auth, sessions and"
  echo "messages, in-memory sqlite, DEBUG off, ~40 MB of distinct strings and ints built at import) and"
  echo "\`examples/ruby/rack_mem\` (~40 MB of distinct strings and ints built at boot); each request reads"
  echo "8 entries of that state at random and answers JSON with its pid. The requests go 4 at a time,"
  echo "each on a new connection (\`bench/memory/load\`), the readiness probes (batches of 20 until 4"
  echo "distinct pids answer) counted in. Total PSS is the sum of \`Pss:\` in \`/proc/PID/smaps_rollup\`"
  echo "of every process of the tree, the manager included, 1 s after the last request; the median of"
  echo "3 runs, then each run. The 20,000 rows are the same runs, measured again after 18,000 more."
  echo
  echo "- gunicorn: \`gunicorn -w 4 [--preload] -b 127.0.0.1:PORT --chdir examples/python/django_mem app.wsgi\`"
  echo "- narwhal + gunicorn: \`NARWHAL_LISTEN=127.0.0.1:PORT NARWHAL_WORKERS=4 narwhal gunicorn --chdir examples/python/django_mem app.wsgi\`"
  echo "  (docs/servers.md: no \`--bind\`, gunicorn takes fd 3 from LISTEN_FDS; one gunicorn master and"
  echo "  one worker per slot)"
  echo "- narwhal + gunicorn, preload: \`NARWHAL_PRELOAD=true … narwhal gunicorn -c contrib/python/narwhal_fork.py --chdir examples/python/django_mem app.wsgi\`"
  echo "  (docs/preload.md: the app loaded once in a template, one gunicorn worker forked per slot, no"
  echo "  gunicorn master; \`gc.freeze()\` before the fork point, or not: \`bench/memory/nofreeze.py\`)"
  echo "- puma: \`puma -w 4 -t 1:5 [--preload] -b tcp://127.0.0.1:PORT examples/ruby/rack_mem/config.ru\`"
  echo "  (threads as \`examples/ruby/puma.rb\` sets them)"
  echo "- narwhal + puma: \`narwhal puma --bind-to-activated-sockets only --config examples/ruby/puma.rb examples/ruby/rack_mem/config.ru\`"
  echo "- narwhal + puma, preload: the same with \`NARWHAL_PRELOAD=true\` (the app's config.ru calls the fork point)"
  echo "- merge: the same with \`NARWHAL_MEMORY_MERGE=true\` and ksmd on (\`run\` 1, \`pages_to_scan\` 1000,"
  echo "  \`sleep_millisecs\` 20, advisor $(grep -o '\[[a-z-]*\]' "$ksm/advisor_mode" 2>/dev/null | tr -d '[]' || echo n/a)), measured once \`pages_sharing\` has not grown for 5 s (after"
  echo "  two full scans, at most 90 s). ksmd CPU is the utime + stime of the ksmd thread from the"
  echo "  pool's start to that point. Merged (narwhal) is \`narwhal_worker_merged_memory_bytes\` summed over"
  echo "  slots, as /metrics gives it then; merged (/proc) is \`/proc/PID/ksm_merging_pages\` of the tree,"
  echo "  read by the script at the same time (narwhal reads it every 2 s, less often when its reads"
  echo "  take long). Both count a merged page in each process that maps it."
  echo
  echo "| row | requests | total PSS, MiB (median) | runs | processes | manager's own PSS, MiB | ksmd CPU, s | merged (narwhal), MiB | merged (/proc), MiB |"
  echo "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
  row_line gunicorn 2000 "gunicorn -w 4"
  row_line gunicorn-preload 2000 "gunicorn -w 4 --preload"
  row_line narwhal-gunicorn 2000 "narwhal + gunicorn"
  row_line narwhal-gunicorn-preload 2000 "narwhal + gunicorn, preload"
  row_line narwhal-gunicorn-preload-nofreeze 2000 "narwhal + gunicorn, preload without gc.freeze()"
  row_line narwhal-gunicorn-merge 2000 "narwhal + gunicorn, merge"
  row_line puma 2000 "puma -w 4"
  row_line puma-preload 2000 "puma -w 4 --preload"
  row_line narwhal-puma 2000 "narwhal + puma"
  row_line narwhal-puma-preload 2000 "narwhal + puma, preload"
  row_line narwhal-puma-merge 2000 "narwhal + puma, merge"
  row_line gunicorn-preload 20000 "gunicorn -w 4 --preload"
  row_line narwhal-gunicorn 20000 "narwhal + gunicorn"
  row_line narwhal-gunicorn-preload 20000 "narwhal + gunicorn, preload"
  row_line narwhal-gunicorn-preload-nofreeze 20000 "narwhal + gunicorn, preload without gc.freeze()"
  row_line narwhal-gunicorn-merge 20000 "narwhal + gunicorn, merge"
  echo
  summary
} >"$section"
replace_section "Memory beside the peers" "$section"
cat "$section"
