#!/bin/bash
# Latency and garbage-collector pauses at a fixed open-loop load below saturation: starts
# `microadjust serve --demo` pinned to core 0 under bench/experiments/gcprobe (PYTHONPATH=$1
# first, e.g. a copy of an older tree's server/, for a pair), drives CONNS sockets x RATE
# batches/s for 10 s after 3 s of warm-up from core 1, then prints the loader's latency from
# scheduled send, the server's CPU per sent batch, each generation's collections (count, total
# and longest pause) and how many objects the collector tracks once the load has gone.
#
#   bench/experiments/gc_pauses.sh ''                      # this tree, 1,000 sockets x 3/s
#   bench/experiments/gc_pauses.sh /tmp/prev/server 3 1000 # another tree
#   REDIS_URL=redis://127.0.0.1:6390/0 bench/experiments/gc_pauses.sh ''   # Redis mode
set -euo pipefail
cd "$(dirname "$0")/../.."
pp=${1:-}
rate=${2:-3}
conns=${3:-1000}
port=${PORT:-8796}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
. bench/experiments/serve_demo.sh
SERVE_STDERR="$data/gc.log" serve_demo "${GCPROBE:-bench/experiments/gcprobe}${pp:+:$pp}" \
  --limit rate_per_s=100000 --limit rate_burst=100000 ${REDIS_URL:+--redis "$REDIS_URL"}
t0=$(ticks)
res=$(taskset -c 1 node bench/loadgen.mjs --url "ws://127.0.0.1:$port/v1/stream?site=demo&v=1" \
  --origin "http://127.0.0.1:$port" --scenario latency --conns "$conns" --rate "$rate" --duration 10 \
  --warmup 3 | grep '^RESULT')
t1=$(ticks)
kill -USR1 "$pid"
kill -USR2 "$pid"
sleep 1
kill "$pid"; wait "$pid" 2>/dev/null || true
sent=$(grep -o '"sent":[0-9]*' <<< "$res" | cut -d: -f2)
lat=$(grep -o '"latency_ms":{[^}]*}' <<< "$res")
hz=$(getconf CLK_TCK)
echo "$lat us_per_batch=$(( (t1 - t0) * 1000000 / hz / sent ))"
grep -E '^GCPROBE|^GCTYPES total' "$data/gc.log" || true
