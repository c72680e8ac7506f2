#!/usr/bin/env bash
# Hold N idle WebSocket connections on one host, past a per-process open-files limit:
# P corecast processes share one port with SO_REUSEPORT, corecast-load opens the connections
# from many 127.0.0.x source addresses in several processes, and this script reports how many
# were held, and the memory per connection: corecast's RSS (user space) and the kernel's slab
# (sockets of both ends, since both are on this host).
#
#   perf/many-conns.sh --connections 200000 [--per-process 16000] [--rate 8000] [--hold 20]
#                      [--driver auto] [--port 9301] [--json FILE] [-- corecast flags...]
#
# Flags after `--` go to every corecast process (e.g. `-- --ping-interval 120s`).
#
# Loopback only; everything it starts is stopped on exit. Needs target/release/corecast and
# target/release/corecast-load (cargo build --release -p corecast -p corecast-load).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N=100000 PER=16000 RATE=8000 HOLD=20 DRIVER=auto PORT=9301 JSON=""
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) N=$2; shift 2 ;;
    --per-process) PER=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --hold) HOLD=$2; shift 2 ;;
    --driver) DRIVER=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

BIN=target/release/corecast
LOAD=target/release/corecast-load
[ -x "$BIN" ] && [ -x "$LOAD" ] || { echo "build first: cargo build --release -p corecast -p corecast-load" >&2; exit 2; }

NOFILE=$(ulimit -Hn)
# Each server process takes about N/P connections, and SO_REUSEPORT's hash is not exact:
# leave each room for its share plus 20%, within its descriptor limit.
P=$(( (N + PER - 1) / PER ))
MAXC=$(( PER * 12 / 10 ))
[ "$MAXC" -le $((NOFILE - 100)) ] || MAXC=$((NOFILE - 100))
# Generator processes: each holds at most 19,000 (its own descriptors).
G=$(( (N + 18999) / 19000 ))
# Source addresses: 28,232 ephemeral ports each toward one server address and port.
IPS=$(( N / 25000 + 2 ))

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

kb() { awk -v k="$1" '$1 == k":" {print $2}' "$2"; }
slab_kb() { kb Slab /proc/meminfo; }
rss_kb_sum() {
  local s=0 p
  for p in "${PIDS[@]}"; do s=$((s + $(kb VmRSS /proc/$p/status))); done
  echo "$s"
}
# Cheap enough to poll with 10^6 sockets: TCP sockets in use, both ends, halved.
in_use_pairs() { awk '$1 == "TCP:" {print int($3 / 2)}' /proc/net/sockstat; }
# Exact, but it walks every socket: once, at the peak.
established() { ss -Htn state established "( sport = :$PORT )" | wc -l; }

echo "== $N connections: $P corecast processes (max $MAXC each, 1 worker, driver $DRIVER)," \
     "$G generator processes, $IPS source addresses, nofile $NOFILE"
for i in $(seq "$P"); do
  "$BIN" --listen "127.0.0.1:$PORT" --admin-listen 127.0.0.1:0 --workers 1 \
    --pin-workers false --driver "$DRIVER" --max-connections "$MAXC" \
    --log-filter warn "$@" >/dev/null 2>&1 &
  PIDS+=($!)
done
for _ in $(seq 100); do
  [ "$(ss -Htln "( sport = :$PORT )" | wc -l)" -ge "$P" ] && break
  sleep 0.1
done
sleep 0.5
SLAB0=$(slab_kb)
RSS0=$(rss_kb_sum)
echo "   servers up: RSS $((RSS0 / 1024)) MiB in all, kernel slab $((SLAB0 / 1024)) MiB"

REPORT=${JSON:-$(mktemp /tmp/many-conns.XXXXXX.json)}
T0=$SECONDS
"$LOAD" connect --target "127.0.0.1:$PORT" -n "$N" --rate "$RATE" --processes "$G" \
  --source-ips "$IPS" --duration "$HOLD" --connect-timeout 30 --json "$REPORT" \
  >/tmp/many-conns.load.log 2>&1 &
LOADPID=$!

# Sample at the peak: wait for the server side to stop growing, then read the memory.
PEAK=0 SAME=0 RSS1=0 SLAB1=0 EXACT=0
while kill -0 "$LOADPID" 2>/dev/null; do
  sleep 2
  E=$(in_use_pairs)
  if [ "$E" -gt "$PEAK" ]; then
    PEAK=$E SAME=0
    RSS1=$(rss_kb_sum) SLAB1=$(slab_kb)
  else
    SAME=$((SAME + 1))
  fi
  printf '   t=%3ds about %d connections (%d MiB available)\n' $((SECONDS - T0)) "$E" \
    $(( $(kb MemAvailable /proc/meminfo) / 1024 ))
  if [ "$SAME" -ge 2 ] && [ "$EXACT" = 0 ]; then
    EXACT=$(established)
    echo "   established at the servers (ss): $EXACT"
  fi
done
wait "$LOADPID" || true
tail -n 25 /tmp/many-conns.load.log

PEAK=$(( EXACT > 0 ? EXACT : PEAK ))
echo "== peak: $PEAK connections established at the servers (target $N)"
if [ "$PEAK" -gt 0 ]; then
  echo "   corecast RSS: $(( (RSS1 - RSS0) * 1024 / PEAK )) B per connection ($((RSS1 / 1024)) MiB in all, $P processes)"
  echo "   kernel slab: $(( (SLAB1 - SLAB0) * 1024 / PEAK )) B per connection, both ends (loopback)"
fi
echo "   generator report: $REPORT"
