#!/usr/bin/env bash
# perf/compare.sh: runs the same `corecast-load echo` scenario against corecast and the peer
# echo servers in perf/peers, alternating their order every round (A B C, then B C A, ...),
# and prints the medians over rounds per server with each one's ratio to corecast, then draws
# the latency and timeline charts with corecast-plot.
#
# usage: perf/compare.sh [--rounds 3] [--duration 10] [--warmup 2] [--connections 100]
#                        [--size 20] [--rate R] [--inflight K] [--binary] [--threads N]
#                        [--out DIR] [--no-build] [-- SERVERS...]
#
# SERVERS (default: corecast-uring corecast-epoll peer-tokio-tungstenite peer-fastwebsockets):
#   corecast, corecast-uring   examples/echo --driver uring
#   corecast-epoll             examples/echo --driver epoll
#   peer-tokio-tungstenite     perf/peers, tokio-tungstenite
#   peer-fastwebsockets        perf/peers, fastwebsockets
# The first corecast server named is the baseline of the ratios.
#
# Every server is started fresh on a free loopback port for each run, with --server-pid given
# to the load generator so it can count messages per server CPU-second, and stopped after it
# (and on any exit). Binaries are built in release unless --no-build; ECHO_BIN, LOAD_BIN,
# PLOT_BIN and PEERS_BIN_DIR point at prebuilt ones, and CARGO_TARGET_DIR / PEERS_TARGET_DIR
# choose where builds go. Results go to --out (default target/compare/DATE-TIME).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=3 DURATION=10 WARMUP=2 CONNECTIONS=100 SIZE=20 THREADS=$(nproc)
OUT="" BUILD=1
EXTRA=()
SERVERS=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "compare.sh: $*" >&2; exit 2; }

while (($#)); do
    case "$1" in
        --rounds) ROUNDS=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --warmup) WARMUP=${2:?}; shift 2 ;;
        --connections | -c) CONNECTIONS=${2:?}; shift 2 ;;
        --size) SIZE=${2:?}; shift 2 ;;
        --threads) THREADS=${2:?}; shift 2 ;;
        --rate | --inflight) EXTRA+=("$1" "${2:?}"); shift 2 ;;
        --binary) EXTRA+=(--binary); shift ;;
        --out) OUT=${2:?}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; SERVERS=("$@"); break ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
((${#SERVERS[@]})) ||
    SERVERS=(corecast-uring corecast-epoll peer-tokio-tungstenite peer-fastwebsockets)
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"

BASELINE=""
want_corecast=0 want_peers=0
for s in "${SERVERS[@]}"; do
    case "$s" in
        corecast | corecast-uring | corecast-epoll)
            want_corecast=1
            [[ -n $BASELINE ]] || BASELINE=$s
            ;;
        peer-tokio-tungstenite | peer-fastwebsockets) want_peers=1 ;;
        *) die "unknown server $s" ;;
    esac
done
[[ -n $BASELINE ]] || BASELINE=${SERVERS[0]}

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PEERS_TARGET=${PEERS_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/perf/peers/target}}
ECHO_BIN=${ECHO_BIN:-$TARGET/release/examples/echo}
LOAD_BIN=${LOAD_BIN:-$TARGET/release/corecast-load}
PLOT_BIN=${PLOT_BIN:-$TARGET/release/corecast-plot}
PEERS_BIN_DIR=${PEERS_BIN_DIR:-$PEERS_TARGET/release}

if ((BUILD)); then
    echo "== building (release)" >&2
    if ((want_corecast)); then
        (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release -q -p corecast --example echo)
    fi
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release -q -p corecast-load --bins)
    if ((want_peers)); then
        (cd "$ROOT/perf/peers" && CARGO_TARGET_DIR=$PEERS_TARGET cargo build --release -q)
    fi
fi
for bin in "$LOAD_BIN" "$PLOT_BIN"; do
    [[ -x $bin ]] || die "missing $bin (build it or drop --no-build)"
done
((want_corecast == 0)) || [[ -x $ECHO_BIN ]] || die "missing $ECHO_BIN"

OUT=${OUT:-$ROOT/target/compare/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/runs" "$OUT/logs"

# Servers this script started and has not stopped yet; the trap stops whatever is left.
declare -A LIVE=()
LOAD_PID=""
cleanup() {
    local pid
    [[ -z $LOAD_PID ]] || kill -TERM "$LOAD_PID" 2>/dev/null || true
    for pid in "${!LIVE[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${!LIVE[@]}"; do
        wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
        unset 'LIVE[$pid]'
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# alive PID: true while PID runs (an exited child that is not reaped yet counts as gone).
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z ]]
}

# wait_gone PID SECONDS: true once PID has exited (reaping it), false if it is still there.
wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
}

# A loopback port nothing listens on, below the ephemeral range (32768-60999) the load
# generator's own connections use.
free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

# start_server NAME PORT LOG: starts it, sets SERVER_PID, waits until the port accepts.
start_server() {
    local name=$1 port=$2 log=$3 cmd
    case "$name" in
        corecast | corecast-uring | corecast-epoll)
            local driver=uring
            [[ $name == corecast-epoll ]] && driver=epoll
            cmd=("$ECHO_BIN" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$(free_port)"
                --driver "$driver" --workers "$THREADS" --log-filter warn)
            ;;
        peer-*) cmd=("$PEERS_BIN_DIR/$name" --listen "127.0.0.1:$port" --threads "$THREADS") ;;
    esac
    echo "${cmd[*]}" >"$log"
    "${cmd[@]}" >>"$log" 2>&1 &
    SERVER_PID=$!
    LIVE[$SERVER_PID]=1
    local deadline=$((SECONDS + 15))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! alive "$SERVER_PID" || ((SECONDS >= deadline)); then
            echo "compare.sh: $name did not come up on port $port; its log:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.05
    done
}

stop_server() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$pid" 15; then
        echo "compare.sh: pid $pid ignored SIGTERM for 15 s, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || true
    fi
    unset 'LIVE[$pid]'
}

{
    echo "command: perf/compare.sh --rounds $ROUNDS --duration $DURATION --warmup $WARMUP" \
        "--connections $CONNECTIONS --size $SIZE --threads $THREADS ${EXTRA[*]} -- ${SERVERS[*]}"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
    echo "host: $(uname -srm), $(nproc) cpus, $mem"
    echo "commit: $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/command.txt"
cat "$OUT/command.txt" >&2

TABLE_ARGS=()
FAILED=0
n=${#SERVERS[@]}
for ((round = 1; round <= ROUNDS; round++)); do
    order=()
    for ((i = 0; i < n; i++)); do order+=("${SERVERS[$(((i + round - 1) % n))]}"); done
    echo "== round $round/$ROUNDS: ${order[*]}" >&2
    for name in "${order[@]}"; do
        port=$(free_port)
        json=$OUT/runs/$name-r$round.json
        start_server "$name" "$port" "$OUT/logs/$name-r$round.log"
        echo "-- $name on :$port (pid $SERVER_PID)" >&2
        # In the background, so that a signal reaches the trap at once rather than after it.
        "$LOAD_BIN" echo --target "127.0.0.1:$port" -c "$CONNECTIONS" --size "$SIZE" \
            --duration "$DURATION" --warmup "$WARMUP" --json "$json" \
            --server-pid "$SERVER_PID" "${EXTRA[@]}" >"$OUT/logs/load-$name-r$round.log" 2>&1 &
        LOAD_PID=$!
        load_rc=0
        wait "$LOAD_PID" || load_rc=$?
        LOAD_PID=""
        if ((load_rc == 0)) && [[ -s $json ]]; then
            TABLE_ARGS+=(--label "$name" "$json")
        else
            FAILED=$((FAILED + 1))
            echo "compare.sh: the load run against $name failed; its log:" >&2
            tail -n 20 "$OUT/logs/load-$name-r$round.log" >&2
        fi
        if ! alive "$SERVER_PID"; then
            echo "compare.sh: $name exited during the run (log: $OUT/logs/$name-r$round.log)" >&2
        fi
        stop_server "$SERVER_PID"
    done
done

((${#TABLE_ARGS[@]})) || die "no run produced a result"
"$PLOT_BIN" table --baseline "$BASELINE" --medians "$OUT/medians.tsv" -o "$OUT/summary.md" \
    "${TABLE_ARGS[@]}"

# Charts from each server's median-throughput round.
PLOT_ARGS=()
while IFS=$'\t' read -r label file; do
    PLOT_ARGS+=(--label "$label" "$file")
done <"$OUT/medians.tsv"
params="echo, $CONNECTIONS connections, $SIZE B, ${DURATION}s, median round of $ROUNDS"
"$PLOT_BIN" latency --log-y -o "$OUT/latency.svg" --title "Echo latency ($params)" \
    "${PLOT_ARGS[@]}" || echo "compare.sh: no latency chart" >&2
for chart in "msgs_per_s:Echo throughput" "p99_us:Echo p99 latency per second" \
    "rss_bytes:Server RSS"; do
    field=${chart%%:*}
    "$PLOT_BIN" timeline --field "$field" -o "$OUT/timeline-$field.svg" \
        --title "${chart#*:} ($params)" "${PLOT_ARGS[@]}" ||
        echo "compare.sh: no $field chart" >&2
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/command.txt"
echo
cat "$OUT/command.txt"
echo
cat "$OUT/summary.md"
echo
echo "results, logs and charts: $OUT"
((FAILED == 0)) || { echo "compare.sh: $FAILED run(s) failed" >&2; exit 1; }
