#!/usr/bin/env bash
# narwhal beside the process managers people would pick instead, in four deploys: the same app
# (GET / answering a small body after a boot delay, 4 workers) under narwhal with each server it
# is tested with, and under gunicorn, unicorn, puma, uwsgi and a node-cluster runner, with the
# same load (4 clients on fresh connections, 4 on keep-alive ones) on 127.0.0.1, each run
# bounded in time. Installs its Debian packages, then rewrites its own section of
# bench/RESULTS.md ("## Deploys beside the peers"). About 40 minutes on 2 cores.
#   bench/peers.sh                    every scenario and row
#   bench/peers.sh -scenarios a -rows gunicorn
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

need=()
command -v gunicorn >/dev/null || need+=(gunicorn)
/usr/bin/python3 -c 'import uvicorn' 2>/dev/null || need+=(python3-uvicorn)
command -v puma >/dev/null || need+=(puma)
command -v unicorn >/dev/null || need+=(unicorn)
command -v uwsgi >/dev/null || need+=(uwsgi)
[[ -e /usr/lib/uwsgi/plugins/python3_plugin.so ]] || need+=(uwsgi-plugin-python3)
command -v node >/dev/null || need+=(nodejs)
if [[ ${#need[@]} -gt 0 ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

make -s build
(cd bench && go build -o ../bin/bench-driver ./driver)
source bench/lib.sh
section=$(mktemp)
tables=$(mktemp)
trap 'rm -f "$section" "$tables"' EXIT

bin/bench-driver -root . peers "$@" | tee "$tables"
[[ $# -eq 0 ]] || exit 0 # a partial run is for looking, not for RESULTS.md
{
  echo "## Deploys beside the peers"
  echo
  echo "Run by \`bench/peers.sh\` on $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3), $(date -u +%Y-%m-%d);"
  echo "gunicorn $(gunicorn --version | cut -d' ' -f3 | tr -d '()'), uvicorn $(/usr/bin/python3 -c 'import uvicorn; print(uvicorn.__version__)'),"
  echo "puma $(puma --version | cut -d' ' -f3), unicorn $(unicorn -v | cut -d' ' -f2), uwsgi $(uwsgi --version), node $(node --version)."
  echo
  echo "Each row starts the manager with 4 workers of the same app (\`examples/python/app.py\`,"
  echo "\`examples/ruby/config.ru\`, \`examples/node/server.js\`, \`examples/go\`), loads it for 3 s, then"
  echo "deploys. A restart counts as verified when every worker that answered before it has exited"
  echo "and a new one answers. Latencies are of every request, failed ones included; steady is the"
  echo "load before the first deploy, during is from the first deploy to the end of the last. The max"
  echo "grows with the number of requests a window holds, and a narwhal rollout, which waits for each"
  echo "replacement to be ready, holds many more than a peer's; "slowest ms per deploy" is the slowest"
  echo "request within each deploy (signal to done), the median over the deploys: the fairer tail."
  echo "narwhal runs with NARWHAL_READY_TIMEOUT=10s. Failed means a refused, reset or non-200 request."
  echo
  cat "$tables"
} > "$section"
replace_section "Deploys beside the peers" "$section"
