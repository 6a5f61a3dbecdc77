#!/bin/bash
# Server CPU per batch at a moderate, fixed load (not saturated, so a change that costs or saves
# CPU shows up here even when saturated throughput is lost in the host's drift): starts
# `microadjust serve --demo` pinned to core 0 (PYTHONPATH=$1 first, e.g. a copy of an older tree's
# server/), drives 200 sockets x 3 batches/s for 8 s (after 2 s of warm-up) from core 1, and
# prints the server's CPU ticks over the load, us per sent batch (start-up excluded, connection
# set-up included) and the loader's p99 from scheduled send.
#
#   bench/experiments/cpu_per_batch.sh ''                       # this tree
#   bench/experiments/cpu_per_batch.sh /tmp/old-tree/server     # another tree, for a pair
set -euo pipefail
cd "$(dirname "$0")/../.."
pp=${1:-}
port=${PORT:-8795}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
. bench/experiments/serve_demo.sh
serve_demo "$pp"
t0=$(ticks)
res=$(taskset -c 1 node bench/loadgen.mjs --url "ws://127.0.0.1:$port/v1/stream?site=demo&v=1" \
  --origin "http://127.0.0.1:$port" --scenario latency --conns 200 --rate 3 --duration 8 --warmup 2 | grep '^RESULT')
t1=$(ticks)
kill "$pid"; wait "$pid" 2>/dev/null || true
sent=$(grep -o '"sent":[0-9]*' <<< "$res" | cut -d: -f2)
p99=$(grep -o '"p99":[0-9.]*' <<< "$res" | head -1 | cut -d: -f2)
hz=$(getconf CLK_TCK)
echo "cpu_ticks=$((t1 - t0)) sent=$sent us_per_batch=$(( (t1 - t0) * 1000000 / hz / sent )) p99_ms=$p99"
