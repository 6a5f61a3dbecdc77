#!/bin/bash
# Server CPU per connection set-up and per plain HTTP request: starts `microadjust serve --demo`
# pinned to core 0 (PYTHONPATH=$1 first, for a pair with another tree), opens 2,000 sockets from
# core 1 with the load generator's idle scenario (upgrade, hello, welcome, one page-view batch,
# close) and then makes 2,000 keep-alive `GET /healthz` requests one after another; prints the
# server's CPU per socket and per request.
#
#   bench/experiments/conn_cost.sh ''
set -euo pipefail
cd "$(dirname "$0")/../.."
pp=${1:-}
port=${PORT:-8798}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
. bench/experiments/serve_demo.sh
serve_demo "$pp"
hz=$(getconf CLK_TCK)
t0=$(ticks)
taskset -c 1 node bench/loadgen.mjs --url "ws://127.0.0.1:$port/v1/stream?site=demo&v=1" \
  --origin "http://127.0.0.1:$port" --scenario idle --conns 2000 --hold 1 > /dev/null
t1=$(ticks)
taskset -c 1 node -e "
const http = require('http'); const agent = new http.Agent({ keepAlive: true }); let n = 0;
const go = () => http.get('http://127.0.0.1:$port/healthz', { agent }, (r) => {
  r.resume(); r.on('end', () => (++n < 2000 ? go() : process.exit(0))); });
go();"
t2=$(ticks)
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "per socket (upgrade, hello, page view, close): $(( (t1 - t0) * 1000000 / hz / 2000 )) us;" \
     "per GET /healthz: $(( (t2 - t1) * 1000000 / hz / 2000 )) us"
