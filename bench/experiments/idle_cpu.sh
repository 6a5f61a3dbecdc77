#!/bin/bash
# Server CPU spent on idle sockets: starts `microadjust serve --demo` pinned to core 0
# (PYTHONPATH=$1 first, for a pair with another tree), opens N sockets from core 1 (the load
# generator's idle scenario: hello, hold, one page-view batch each, hold), and measures the
# server's CPU over 5 s of the second hold, when every socket has a profile and sends nothing:
# what remains is the ticks that re-evaluate time-based rules (docs/SERVER.md, `tick_ms`).
#
#   bench/experiments/idle_cpu.sh '' 3000
set -euo pipefail
cd "$(dirname "$0")/../.."
pp=${1:-}
n=${2:-3000}
port=${PORT:-8797}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
. bench/experiments/serve_demo.sh
serve_demo "$pp"
taskset -c 1 node bench/loadgen.mjs --url "ws://127.0.0.1:$port/v1/stream?site=demo&v=1" \
  --origin "http://127.0.0.1:$port" --scenario idle --conns "$n" --hold 14 --control stdin \
  < <(sleep 8; echo; sleep 30; echo) > "$data/lg.out" &
lg=$!
# connect (~n/1000 s) and the first hold end at 8 s; the page views go out over ~1 s
sleep 14
hz=$(getconf CLK_TCK)
t0=$(ticks); sleep 10; t1=$(ticks)
echo "$n idle sockets with a page view each: server CPU $(( (t1 - t0) * 1000 / hz / 10 / 10 ))% of a core," \
     "$(( (t1 - t0) * 1000000 / hz / 10 / n )) us per socket per second"
kill "$lg" 2>/dev/null || true
kill "$pid"; wait "$pid" 2>/dev/null || true
