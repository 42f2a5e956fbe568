#!/usr/bin/env bash
# Worker output through narwhal: four workers (internal/e2e/chatter, one write(2) per line, as
# a logger makes) write 100-byte and 8 KiB lines as fast as they can, to a file and to a pipe
# read by cat, with NARWHAL_WORKER_OUTPUT=inherit, json and text; three runs per row, medians.
# About two minutes. Rewrites its own section of bench/RESULTS.md ("## Worker output").
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

make -s build
(cd bench && go build -o ../bin/bench-driver ./driver)
go build -o bin/chatter ./internal/e2e/chatter
source bench/lib.sh
section=$(mktemp)
tables=$(mktemp)
trap 'rm -f "$section" "$tables"' EXIT

bin/bench-driver -root . output | tee "$tables"
{
  echo "## Worker output"
  echo
  echo "Run by \`bench/output.sh\` on $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3), $(date -u +%Y-%m-%d)."
  echo "Four workers each write their lines as fast as they can, one write(2) per line, as a logger"
  echo "does; narwhal's stdout is a file, or a pipe read by \`cat\` into /dev/null. The time runs from"
  echo "narwhal's start until every worker has written its last line; lines/s and MB/s count the"
  echo "workers' lines (narwhal's labels not included); each row is the median of three runs. The"
  echo "file rows check afterwards that every line is there. \"JSON objects\" are lines like"
  echo "\`{\"z\":\"0\",\"a\":42,\"m\":\"…\"}\`, which json mode keeps and adds \`worker\` to; \"text\" lines"
  echo "become a \`msg\`. CPU is narwhal's own (user and system); the workers' is not counted."
  echo
  cat "$tables"
} > "$section"
replace_section "Worker output" "$section"
