#!/bin/bash
# Throughput and the garbage collector's share of it: `microadjust serve --demo` pinned to core 0
# under bench/experiments/gcprobe (PYTHONPATH=$1 first, for a pair with another tree), 200
# sockets in a closed loop for 8 s after 2 s of warm-up from core 1; prints batches/s and each
# generation's collections. REDIS=1 runs Redis mode on a private redis-server (port 6391, pinned
# to core 0 with the server).
#
#   REDIS=1 bench/experiments/thr_gc.sh ''
#   REDIS=1 bench/experiments/thr_gc.sh /tmp/prev/server
set -euo pipefail
cd "$(dirname "$0")/../.."
pp=${1:-}
port=${PORT:-8793}
data=$(mktemp -d)
redis_args=()
if [ -n "${REDIS:-}" ]; then
  taskset -c 0 redis-server --port 6391 --save "" --appendonly no --daemonize yes > /dev/null
  redis_args=(--redis redis://127.0.0.1:6391/0)
fi
trap 'rm -rf "$data"; [ -n "${REDIS:-}" ] && redis-cli -p 6391 shutdown nosave > /dev/null 2>&1 || true' EXIT
. bench/experiments/serve_demo.sh
SERVE_STDERR="$data/gc.log" serve_demo "bench/experiments/gcprobe${pp:+:$pp}" \
  --limit rate_per_s=100000 --limit rate_burst=100000 "${redis_args[@]}"
res=$(taskset -c 1 node bench/loadgen.mjs --url "ws://127.0.0.1:$port/v1/stream?site=demo&v=1" \
  --origin "http://127.0.0.1:$port" --scenario throughput --conns 200 --duration 8 --warmup 2 | grep '^RESULT')
kill -USR1 "$pid"
sleep 0.5
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "$(grep -o '"batches_per_s":[0-9]*' <<< "$res") $(grep '^GCPROBE' "$data/gc.log" | sed 's/GCPROBE //' | tr '\n' ' ')"
