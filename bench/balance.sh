#!/usr/bin/env bash
# How evenly four workers share the connections: node's example server and the Go example under
# narwhal with NARWHAL_SOCKET_MODE=inherit, balanced and reuseport (the Go example only: Node 20
# cannot bind with SO_REUSEPORT), and node's cluster module, on 127.0.0.1; then ten rolling
# restarts and a SIGKILL under load. About five minutes. Rewrites its own section of
# bench/RESULTS.md ("## Balance across workers").
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

make -s build
(cd bench && go build -o ../bin/bench-driver ./driver)
source bench/lib.sh
section=$(mktemp)
tables=$(mktemp)
trap 'rm -f "$section" "$tables"' EXIT

bin/bench-driver -root . balance "$@" | tee "$tables"
{
  echo "## Balance across workers"
  echo
  echo "Run by \`bench/balance.sh\` on $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3), node $(node --version), $(date -u +%Y-%m-%d)."
  echo "Four workers; eight clients on 127.0.0.1 each send their requests one after another, either"
  echo "each on a new connection (4,000 in all) or on one kept-alive connection per client (20,000)."
  echo "max/min is the busiest worker's requests over the idlest's: the median of five runs, then"
  echo "every run's. req/s and p99 are the medians over the runs. narwhal balanced shows how it steered, as"
  echo "it logged at start."
  echo "The second table: ten rolling restarts (SIGHUP) under load from four new-connection clients"
  echo "and two keep-alive ones, then one worker killed with SIGKILL under the same load."
  echo
  cat "$tables"
} > "$section"
replace_section "Balance across workers" "$section"
