#!/usr/bin/env bash
# Deploys with NARWHAL_PRELOAD beside the fastest peer deploy, unicorn's re-exec (USR2 + QUIT),
# and beside narwhal without preload, in one run of bench/peers.sh's harness (the same app, 4
# workers, 4 fresh + 4 keep-alive clients on 127.0.0.1): healthy deploys (300 ms boot, 10
# restarts), a release that raises at boot and one that hangs, each followed by a good deploy.
# Rewrites its own section of bench/RESULTS.md ("## Preload deploys"). About 10 minutes on 2 cores.
#   bench/preload.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

need=()
command -v gunicorn >/dev/null || need+=(gunicorn)
command -v puma >/dev/null || need+=(puma)
command -v unicorn >/dev/null || need+=(unicorn)
if [[ ${#need[@]} -gt 0 ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

make -s build
(cd bench && go build -o ../bin/bench-driver ./driver)
source bench/lib.sh
section=$(mktemp)
tables=$(mktemp)
trap 'rm -f "$section" "$tables"' EXIT

bin/bench-driver -root . peers -scenarios acd -rows "unicorn USR2|narwhal + gunicorn|narwhal + puma" | tee "$tables"
{
  echo "## Preload deploys"
  echo
  echo "Run by \`bench/preload.sh\` on $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3), $(date -u +%Y-%m-%d);"
  echo "gunicorn $(gunicorn --version | cut -d' ' -f3 | tr -d '()'), puma $(puma --version | cut -d' ' -f3), unicorn $(unicorn -v | cut -d' ' -f2)."
  echo
  echo "bench/peers.sh's harness and columns (see \"Deploys beside the peers\"), in one run: unicorn's"
  echo "re-exec deploy (USR2, then QUIT to the old master), narwhal + gunicorn and narwhal + puma as"
  echo "docs/servers.md runs them, and the same with \`NARWHAL_PRELOAD=true\` as docs/preload.md runs them"
  echo "(\`gunicorn -c narwhal_fork.py app:app\`; puma with \`NarwhalFork.fork_point\` in config.ru, the"
  echo "helpers copied into the release beside the app). Rollout s is the median time from the signal"
  echo "to a verified restart."
  echo
  cat "$tables"
} >"$section"
replace_section "Preload deploys" "$section"
