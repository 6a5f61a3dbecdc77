# Sourced by the experiment scripts next to it (bash): `serve_demo PYTHONPATH [serve args...]`
# starts `microadjust serve --demo` pinned to core 0 on $port with $data as its data directory
# and PYTHONPATH first on the path (a copy of another tree's server/, for a pair; '' for this
# tree), sets $pid and waits until /healthz answers. Its stderr goes to $SERVE_STDERR
# (default: nowhere). `ticks` prints the server's CPU ticks so far (user + system).
serve_demo() {
  local pp=$1
  shift
  PYTHONPATH=$pp taskset -c 0 .venv/bin/microadjust serve --demo --host 127.0.0.1 --port "$port" \
    --data-dir "$data" --log-level warning "$@" > /dev/null 2> "${SERVE_STDERR:-/dev/null}" &
  pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "127.0.0.1:$port/healthz" && return 0
    sleep 0.2
  done
  echo "serve_demo: no answer on port $port" >&2
  return 1
}

ticks() { awk '{print $14+$15}' "/proc/$pid/stat"; }
