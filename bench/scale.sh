#!/usr/bin/env bash
# The dynamic size (NARWHAL_WORKERS=MIN-MAX) under a load that steps up and down, beside fixed
# pools of MIN and of MAX: gunicorn workers that serve one request at a time (5 ms of CPU and
# 20 ms of waiting each), an open-loop load on 127.0.0.1, about 3 minutes in all. Rewrites its
# own section of bench/RESULTS.md ("## Dynamic size under a stepped load").
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
command -v gunicorn >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gunicorn; }

make -s build
(cd bench && go build -o ../bin/bench-driver ./driver)
source bench/lib.sh
section=$(mktemp)
tables=$(mktemp)
trap 'rm -f "$section" "$tables"' EXIT

bin/bench-driver -root . scale | tee "$tables"
{
  echo "## Dynamic size under a stepped load"
  echo
  echo "Run by \`bench/scale.sh\` on $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3), $(date -u +%Y-%m-%d);"
  echo "gunicorn $(gunicorn --version | cut -d' ' -f3 | tr -d '()') sync workers (one request at a time each) running"
  echo "\`bench/driver/scale_app.py\` under narwhal, with NARWHAL_SCALE_DOWN_AFTER=5s (default 60s) so that"
  echo "the way down fits in the run. Worker-seconds is the size summed over the run: what the pool held."
  echo "A failed request is one refused, reset, or not answered within 10 s."
  echo
  cat "$tables"
} > "$section"
replace_section "Dynamic size under a stepped load" "$section"
