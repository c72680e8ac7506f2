#!/usr/bin/env bash
# Run every corecast-load scenario against a fresh corecast, write the JSON reports and SVG
# charts, and print each scenario's table: the run behind the "Scenarios" section of
# docs/benchmarks.md.
#
#   perf/scenarios.sh [--out DIR] [--duration SECS] [--driver auto|uring|epoll] [--no-build]
#                     [--only echo,connect,fanout,slow,storm]
#
# Each scenario gets its own freshly started server (so RSS figures start from the same base):
# examples/echo for `echo`, the corecast binary for the others. Loopback only; everything it
# starts is stopped on exit. About 2 minutes with the default 10 s duration. --only runs the
# named groups alone (`slow` is both slow runs, `storm` both storm runs) and draws only their
# charts; `--only slow --duration 60` is the run that reaches the send bound.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT="target/scenarios/$(date -u +%Y%m%d-%H%M%S)"
DUR=10 DRIVER=auto BUILD=1 ONLY=echo,connect,fanout,slow,storm
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --driver) DRIVER=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$BUILD" = 1 ]; then
  cargo build --release -p corecast -p corecast-load --bins --example echo
fi
BIN=target/release/corecast ECHO=target/release/examples/echo
LOAD=target/release/corecast-load PLOT=target/release/corecast-plot
mkdir -p "$OUT"
PORT=9351 APORT=9352
SERVER=""
ADMIN_ARGS=()
stop() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  SERVER=""
}
trap stop EXIT

listening() { # listening PORT: true once something listens on 127.0.0.1:PORT (up to 5 s)
  for _ in $(seq 100); do
    ss -Htln "( sport = :$1 )" | grep -q . && return 0
    sleep 0.05
  done
  return 1
}

serve() { # serve BIN [flags...]: start a server on $PORT and wait for its listener
  stop
  ADMIN_ARGS=()
  "$@" --listen "127.0.0.1:$PORT" --workers 2 --driver "$DRIVER" --log-filter warn \
    >"$OUT/server.log" 2>&1 &
  SERVER=$!
  listening "$PORT" && return 0
  echo "server did not start" >&2; cat "$OUT/server.log" >&2; return 1
}

want() { [[ ",$ONLY," == *",$1,"* ]]; }

# plot KIND -o OUT ... --label L FILE ...: draw a chart when every FILE it reads exists.
plot() {
  local a
  for a in "$@"; do
    if [[ "$a" == "$OUT"/*.json && ! -f "$a" ]]; then return 0; fi
  done
  "$PLOT" "$@"
}

# serve_corecast [flags...]: the corecast binary, with its admin API on $APORT so that each
# report also says how the server's counters changed (conflated, dropped, disconnects).
serve_corecast() {
  serve "$BIN" --admin-listen "127.0.0.1:$APORT" "$@"
  listening "$APORT" || { echo "admin API did not start" >&2; return 1; }
  ADMIN_ARGS=(--server-admin "127.0.0.1:$APORT")
}

run() { # run NAME corecast-load-args...
  local name=$1; shift
  echo "== $name: corecast-load $* --server-pid $SERVER"
  "$LOAD" "$@" --target "127.0.0.1:$PORT" --server-pid "$SERVER" "${ADMIN_ARGS[@]}" \
    --json "$OUT/$name.json" \
    | tee "$OUT/$name.txt"
}

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/command.txt"

if want echo; then
  serve "$ECHO"
  run echo echo -c 50 --size 32 --duration "$DUR"
  run echo-rate echo -c 100 --rate 50000 --size 32 --duration "$DUR"
fi

if want connect; then
  serve_corecast
  run connect connect -n 19000 --rate 10000 --duration 5
fi

if want fanout; then
  serve_corecast
  run fanout fanout -s 2000 -t 20 -p 4 --rate 1000 --size 200 --duration "$DUR"
fi

if want slow; then
  # --socket-send-buffer caps the kernel's share of each backlog (see docs/backpressure.md), so
  # the send bound is reached within the window instead of after megabytes of kernel buffer.
  serve_corecast --socket-send-buffer 64KiB
  run slow slow -s 1000 -t 10 --rate 2000 --size 500 --slow 20 --stalled 20 \
    --slow-rcvbuf 65536 --duration "$DUR"

  serve_corecast --socket-send-buffer 64KiB --slow-consumer drop
  run slow-drop slow -s 1000 -t 10 --rate 2000 --size 500 --slow 20 --stalled 20 \
    --slow-rcvbuf 65536 --duration "$DUR"

  serve_corecast --socket-send-buffer 64KiB --send-buffer-bytes 256KiB
  run slow-keyed slow -s 1000 -t 10 --rate 2000 --size 500 --slow 20 --stalled 20 --keys 10 \
    --slow-rcvbuf 65536 --duration "$DUR"
fi

if want storm; then
  serve_corecast
  run storm-none storm -c 5000 --rounds 2 --backoff none --duration 3
  serve_corecast
  run storm-jittered storm -c 5000 --rounds 2 --backoff jittered --duration 3
fi
stop

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/command.txt"

plot latency -o "$OUT/echo-latency.svg" --log-y --title "echo round trip (closed loop vs 50k/s open loop)" \
  --label "closed loop, 50 conns" "$OUT/echo.json" --label "50k msgs/s, 100 conns" "$OUT/echo-rate.json"
plot latency -o "$OUT/fanout-latency.svg" --log-y --title "fanout delivery latency (2000 subscribers, 1000 pub/s)" \
  --label fanout "$OUT/fanout.json"
plot timeline -o "$OUT/fanout-rate.svg" --field msgs_per_s --title "fanout deliveries per second" \
  --label fanout "$OUT/fanout.json"
plot timeline -o "$OUT/slow-rss.svg" --field rss_bytes --title "server RSS with 20 slow and 20 stalled subscribers" \
  --label "disconnect policy" "$OUT/slow.json" --label "drop policy" "$OUT/slow-drop.json" \
  --label "keyed (conflation)" "$OUT/slow-keyed.json"
plot timeline -o "$OUT/slow-p99.svg" --field p99_us --title "fast subscribers' p99 next to slow ones" \
  --label "disconnect policy" "$OUT/slow.json" --label "drop policy" "$OUT/slow-drop.json" \
  --label "keyed (conflation)" "$OUT/slow-keyed.json"
plot latency -o "$OUT/connect-latency.svg" --log-y --title "handshake latency, 19,000 connections at 10k/s" \
  --label connect "$OUT/connect.json"
cat "$OUT/command.txt"
echo "reports and charts in $OUT"
