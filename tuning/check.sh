#!/usr/bin/env bash
# Read this host's limits and say whether they allow N corecast connections.
# docs/tuning.md explains every row. Needs no root: it reads /proc and the process limits.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<'EOF'
Usage: tuning/check.sh [--connections N] [--processes P] [--workers W] [--pid PID] [--json]

Prints each host limit that matters for N WebSocket connections: its current value, the value
recommended for N, a status and the reason. Exits 1 when a limit would stop N connections.

  --connections N  connections to hold, across all processes (default 1000000)
  --processes P    corecast processes sharing the port with SO_REUSEPORT; each needs
                   N/P descriptors plus a margin (default 1)
  --workers W      workers per process, for the descriptor margin (64 + 8 per worker) and the
                   io_uring memlock need (default: this host's CPU count, as workers = 0)
  --pid PID        read the file and memlock limits of a running process (a corecast) instead
                   of this shell's
  --json           one JSON object instead of the table
  --help           this text

Status: ok = at or above the recommendation; low = below it but N still fits; FAIL = N does
not fit (exit status 1); info = reported, not judged; n/a = unreadable here.
Exit status: 0 when nothing FAILs, 1 when something does, 2 on a usage error.
EOF
}

N=1000000
P=1
W=""
PID=""
JSON=0
while [ $# -gt 0 ]; do
  case "$1" in
    --connections|--processes|--workers|--connections=*|--processes=*|--workers=*)
      sizing_opt "$@"; shift "$USED" ;;
    --pid) [ $# -ge 2 ] || die "--pid needs a value"; PID=$2; shift 2 ;;
    --pid=*) PID=${1#*=}; shift ;;
    --json) JSON=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
CPUS=$(cpu_count)
[ -n "$W" ] || W=$CPUS
positive "$N" || die "--connections must be a whole number >= 1, got '$N'"
positive "$P" || die "--processes must be a whole number >= 1, got '$P'"
positive "$W" || die "--workers must be a whole number >= 1, got '$W'"
if [ -n "$PID" ]; then
  is_uint "$PID" || die "--pid must be a process id, got '$PID'"
  LIMITS="$TUNING_ROOT/proc/$PID/limits"
  [ -r "$LIMITS" ] || die "cannot read $LIMITS"
  LIMITS_OF="process $PID"
else
  LIMITS="$TUNING_ROOT/proc/self/limits"
  LIMITS_OF="this shell; --pid PID for a running corecast"
fi

compute "$N" "$P" "$W"
MEM_TOTAL=$(mem_total_bytes)
KERNEL=$(kernel_release)

NAMES=() CURS=() RECS=() STATS=() WHYS=()
row() { NAMES+=("$1"); CURS+=("$2"); RECS+=("$3"); STATS+=("$4"); WHYS+=("$5"); }
# judge CUR NEED REC: FAIL below NEED (skip with NEED empty), low below REC, else ok.
judge() {
  if ! is_uint "$1"; then
    if [ "$1" = unlimited ]; then echo ok; else echo n/a; fi
  elif [ -n "$2" ] && [ "$1" -lt "$2" ]; then echo FAIL
  elif [ "$1" -lt "$3" ]; then echo low
  else echo ok
  fi
}
or_na() { if [ -n "$1" ]; then echo "$1"; else echo n/a; fi; }

# ---------------------------------------------------------------- file descriptors
nofile_soft=$(read_limit "$LIMITS" "Max open files" soft)
nofile_hard=$(read_limit "$LIMITS" "Max open files" hard)
st=$(judge "$nofile_soft" "" "$NEED_FD")
row "nofile soft (ulimit -Sn)" "$(or_na "$nofile_soft")" "$REC_FD" "$st" \
  "per process; corecast raises soft to hard at start, other programs (corecast-load) do not"

st=$(judge "$nofile_hard" "$NEED_FD" "$REC_FD")
why="per process: one fd per connection, needs N/P + $FD_MARGIN = $NEED_FD; beyond it accept fails with EMFILE"
if [ "$st" = FAIL ] && [ "$nofile_hard" -gt "$FD_MARGIN" ]; then
  fit=$((nofile_hard - FD_MARGIN))
  why="needs $NEED_FD; one process holds $fit, so raise it or run --processes $(ceil_div "$N" "$fit") (SO_REUSEPORT); else EMFILE on accept"
fi
row "nofile hard (ulimit -Hn)" "$(or_na "$nofile_hard")" "$REC_FD" "$st" "$why"

v=$(read_sysctl fs.nr_open)
row "fs.nr_open" "$(or_na "$v")" "$REC_FD" "$(judge "$v" "$NEED_FD" "$REC_FD")" \
  "ceiling for the nofile limit: ulimit -n above it fails (EPERM), and so does LimitNOFILE or limits.d above it"

file_max=$(read_sysctl fs.file-max)
row "fs.file-max" "$(or_na "$file_max")" "$REC_FILE_MAX" \
  "$(judge "$file_max" "$NEED_FILES" "$REC_FILE_MAX")" \
  "system-wide open files, needs $NEED_FILES; at the limit accept fails with ENFILE ('VFS: file-max limit reached')"

file_nr=$(read_sysctl fs.file-nr)
used=$(field 1 "$file_nr")
if is_uint "$used" && is_uint "$file_max"; then
  free=$((file_max - used))
  st=ok; [ "$free" -lt "$NEED_FILES" ] && st=low
  row "fs.file-nr (in use)" "$used" "<= $((file_max - NEED_FILES))" "$st" \
    "fds open on the host now; $free left under file-max, N needs $NEED_FILES"
else
  row "fs.file-nr (in use)" "$(or_na "$used")" "-" n/a "fds open on the host now"
fi

# ---------------------------------------------------------------- accept path
v=$(read_sysctl net.core.somaxconn)
row "net.core.somaxconn" "$(or_na "$v")" "$REC_SOMAXCONN" "$(judge "$v" "" "$REC_SOMAXCONN")" \
  "caps each listener's accept queue (corecast backlog is clamped to it); overflow drops SYNs: ListenOverflows"

v=$(read_sysctl net.ipv4.tcp_max_syn_backlog)
row "net.ipv4.tcp_max_syn_backlog" "$(or_na "$v")" "$REC_SYN_BACKLOG" \
  "$(judge "$v" "" "$REC_SYN_BACKLOG")" \
  "half-open connections per listener during a reconnect storm; beyond it SYN cookies or drops"

v=$(read_sysctl net.core.netdev_max_backlog)
row "net.core.netdev_max_backlog" "$(or_na "$v")" "$REC_NETDEV" "$(judge "$v" "" "$REC_NETDEV")" \
  "packets queued per CPU before the stack; overflow is dropped (2nd column of /proc/net/softnet_stat)"

# ---------------------------------------------------------------- TCP memory
tcp_mem=$(read_sysctl net.ipv4.tcp_mem)
tcp_max=$(field 3 "$tcp_mem")
if is_uint "$tcp_max"; then
  if [ "$tcp_max" -lt "$NEED_TCP_PAGES" ]; then st=FAIL
  elif triple_below "$tcp_mem" "$REC_TCP_MEM"; then st=low
  else st=ok
  fi
else
  st=n/a
fi
row "net.ipv4.tcp_mem (pages)" "$(or_na "$tcp_mem")" "$REC_TCP_MEM" "$st" \
  "N x 4.3 KB = $(human $((NEED_TCP_PAGES * PAGE))) ($NEED_TCP_PAGES pages of $PAGE B); above max: 'TCP: out of memory -- consider tuning tcp_mem'"

for key in net.ipv4.tcp_rmem net.ipv4.tcp_wmem; do
  v=$(read_sysctl "$key")
  def=$(field 2 "$v")
  if is_uint "$def"; then
    row "$key" "$v" "$v" info \
      "min default max bytes per socket, on demand (idle: 0); worst case N x default = $(human $((N * def))), capped by tcp_mem"
  else
    row "$key" n/a "-" n/a "bytes per socket"
  fi
done

if [ "$MEM_TOTAL" -gt 0 ]; then
  st=ok
  if [ "$MEM_TOTAL" -lt "$NEED_MEM" ]; then st=FAIL
  elif [ "$MEM_TOTAL" -lt $((2 * NEED_MEM)) ]; then st=low
  fi
  row "MemTotal" "$(human "$MEM_TOTAL")" ">= $(human $((2 * NEED_MEM)))" "$st" \
    "N idle x (4.3 KB kernel + 0.9 KB corecast) = $(human "$NEED_MEM"); twice that leaves room for traffic"
else
  row "MemTotal" n/a "-" n/a "RAM"
fi

# ---------------------------------------------------------------- ports, conntrack
range=$(read_sysctl net.ipv4.ip_local_port_range)
lo=$(field 1 "$range"); hi=$(field 2 "$range")
if is_uint "$lo" && is_uint "$hi"; then
  ports=$((hi - lo + 1))
  row "net.ipv4.ip_local_port_range" "$range" "10240 65535" info \
    "outgoing only (clients, proxies): $ports per source/destination pair; a loopback test of N needs $(ceil_div "$N" "$ports")+ source IPs"
else
  row "net.ipv4.ip_local_port_range" n/a "10240 65535" n/a "ephemeral ports for outgoing connections"
fi

ct_max=$(read_sysctl net.netfilter.nf_conntrack_max)
if [ -n "$ct_max" ]; then
  ct_count=$(read_sysctl net.netfilter.nf_conntrack_count)
  row "net.netfilter.nf_conntrack_max" "$ct_max" "$REC_CONNTRACK" \
    "$(judge "$ct_max" "$NEED_CONNTRACK" "$REC_CONNTRACK")" \
    "conntrack is loaded ($(or_na "$ct_count") tracked): one entry per connection; full: 'nf_conntrack: table full, dropping packet'"
else
  row "net.netfilter.nf_conntrack_max" "not loaded" "-" ok \
    "conntrack module not loaded: connections are not tracked"
fi

# ---------------------------------------------------------------- io_uring, memory maps
memlock=$(read_limit "$LIMITS" "Max locked memory" soft)
memlock_show=$memlock
is_uint "$memlock" && memlock_show=$((memlock / 1024))
if kernel_at_least 5 12; then
  st=ok
  [ "$memlock" = unlimited ] || st=info
  why="kernel $KERNEL >= 5.12 charges io_uring rings to the memory cgroup, not memlock"
else
  st=$(judge "$memlock" "$NEED_MEMLOCK" 9223372036854775807)
  why="kernel < 5.12 charges io_uring rings to memlock: needs $((NEED_MEMLOCK / 1024)) KiB, else io_uring_setup ENOMEM"
fi
row "memlock KiB (ulimit -l)" "$(or_na "$memlock_show")" unlimited "$st" "$why"

v=$(read_sysctl kernel.io_uring_disabled)
if [ -n "$v" ]; then
  st=ok; why="io_uring allowed"
  if [ "$v" != 0 ]; then
    st=low
    why="io_uring restricted ($v): --driver auto falls back to epoll, --driver uring fails at start"
  fi
  row "kernel.io_uring_disabled" "$v" 0 "$st" "$why"
fi

v=$(read_sysctl vm.max_map_count)
row "vm.max_map_count" "$(or_na "$v")" 65530 "$(judge "$v" "" 65530)" \
  "memory maps per process; corecast maps per worker, not per connection (the default suffices)"

v=$(read_sysctl net.ipv4.tcp_max_tw_buckets)
st=info; is_uint "$v" || st=n/a
is_uint "$v" && [ "$v" -ge "$REC_TW_BUCKETS" ] && st=ok
row "net.ipv4.tcp_max_tw_buckets" "$(or_na "$v")" "$REC_TW_BUCKETS" "$st" \
  "TIME_WAIT sockets after a drain; beyond it 'TCP: time wait bucket table overflow' (harmless)"

# ---------------------------------------------------------------- output
fails=() lows=()
for i in "${!NAMES[@]}"; do
  case "${STATS[$i]}" in
    FAIL) fails+=("${NAMES[$i]}") ;;
    low) lows+=("${NAMES[$i]}") ;;
  esac
done

json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

if [ "$JSON" = 1 ]; then
  printf '{"connections":%s,"processes":%s,"per_process":%s,"workers":%s,"fd_margin":%s,' \
    "$N" "$P" "$PER_PROC" "$W" "$FD_MARGIN"
  printf '"kernel":%s,"cpus":%s,"mem_total_bytes":%s,"page_size":%s,"checks":[' \
    "$(json_str "$KERNEL")" "$CPUS" "$MEM_TOTAL" "$PAGE"
  for i in "${!NAMES[@]}"; do
    [ "$i" -gt 0 ] && printf ','
    printf '{"name":%s,"current":%s,"recommended":%s,"status":%s,"why":%s}' \
      "$(json_str "${NAMES[$i]}")" "$(json_str "${CURS[$i]}")" "$(json_str "${RECS[$i]}")" \
      "$(json_str "${STATS[$i]}")" "$(json_str "${WHYS[$i]}")"
  done
  printf '],"failures":%s,"lows":%s,"ok":%s}\n' "${#fails[@]}" "${#lows[@]}" \
    "$([ ${#fails[@]} -eq 0 ] && echo true || echo false)"
else
  printf 'corecast host check: %s connections, %s (%s connections and %s fds per process)\n' \
    "$N" "$(procs_workers "$P" "$W")" "$PER_PROC" "$NEED_FD"
  printf 'host: Linux %s, %s CPUs, %s RAM, page %s B; process limits of %s\n\n' \
    "$(or_na "$KERNEL")" "$CPUS" "$(human "$MEM_TOTAL")" "$PAGE" "$LIMITS_OF"
  fmt='%-31s %-24s %-24s %-6s %s\n'
  # shellcheck disable=SC2059 # the format is the constant above
  printf "$fmt" SETTING CURRENT RECOMMENDED STATUS WHY
  for i in "${!NAMES[@]}"; do
    # shellcheck disable=SC2059
    printf "$fmt" "${NAMES[$i]}" "${CURS[$i]}" "${RECS[$i]}" "${STATS[$i]}" "${WHYS[$i]}"
  done
  echo
  if [ ${#fails[@]} -gt 0 ]; then
    printf 'FAIL: %s connections will not fit: %s\n' "$N" "$(join_list "${fails[@]}")"
    printf 'Fix: sudo tuning/apply.sh --connections %s (dry run; add --apply), then see docs/tuning.md\n' "$N"
  elif [ ${#lows[@]} -gt 0 ]; then
    printf 'OK: %s connections fit; below the recommendation: %s\n' "$N" "$(join_list "${lows[@]}")"
  else
    printf 'OK: %s connections fit; everything at or above the recommendation\n' "$N"
  fi
fi

[ ${#fails[@]} -eq 0 ]
