# shellcheck shell=bash
# Shared by check.sh and apply.sh: how the host is read and how each recommended value is
# computed from the connection count. Sourced, not run. docs/tuning.md explains the numbers.
#
# CORECAST_TUNING_ROOT (default: empty) reads /proc from another directory instead of the
# host's: test.sh uses it to describe a fake host. CORECAST_TUNING_PAGESIZE overrides the
# page size (default: getconf PAGESIZE).

TUNING_ROOT="${CORECAST_TUNING_ROOT:-}"

# Kernel memory per idle TCP socket and corecast's user-space memory per idle connection,
# in bytes (docs/tuning.md, "Memory for 1M idle connections").
KERNEL_BYTES_PER_SOCKET=4300
USER_BYTES_PER_CONN=900
# corecast's io_uring submission queue entries per worker (uring_entries default).
URING_ENTRIES=4096

die() { printf '%s: %s\n' "${0##*/}" "$*" >&2; exit 2; }

is_uint() { [[ "${1:-}" =~ ^[0-9]+$ ]]; }
positive() { is_uint "$1" && [ "$1" -ge 1 ]; }

# sizing_opt ARGS...: take the option both scripts share (--connections, --processes,
# --workers; "--opt VALUE" or "--opt=VALUE") from the front of ARGS into N, P or W, and set
# USED to the number of arguments it took.
# shellcheck disable=SC2034  # N, P, W and USED are the caller's variables
sizing_opt() {
  local opt=${1%%=*} value
  if [ "$opt" = "$1" ]; then
    [ $# -ge 2 ] || die "$1 needs a value"
    value=$2 USED=2
  else
    value=${1#*=} USED=1
  fi
  case "$opt" in
    --connections) N=$value ;;
    --processes) P=$value ;;
    --workers) W=$value ;;
  esac
}

# procs_workers P W: "1 process x 2 workers", "3 processes x 1 worker".
procs_workers() {
  local a="processes" b="workers"
  [ "$1" = 1 ] && a="process"
  [ "$2" = 1 ] && b="worker"
  printf '%s %s x %s %s' "$1" "$a" "$2" "$b"
}

# join_list A B C: "A, B, C".
join_list() {
  local out="" x
  for x in "$@"; do out+="${out:+, }$x"; done
  printf '%s' "$out"
}

# sysctl_path KEY: net.core.somaxconn -> $TUNING_ROOT/proc/sys/net/core/somaxconn
sysctl_path() { printf '%s/proc/sys/%s' "$TUNING_ROOT" "${1//./\/}"; }

# read_sysctl KEY: the value with runs of whitespace folded to one space; empty if unreadable.
read_sysctl() {
  local p v
  p=$(sysctl_path "$1")
  [ -r "$p" ] || return 0
  v=$(tr -s ' \t' '  ' <"$p" 2>/dev/null) || return 0
  printf '%s' "$v"
}

# field N STRING: the Nth whitespace-separated field (1-based), empty if missing.
field() { awk -v n="$1" '{ print $n }' <<<"$2"; }

max() { if [ "$1" -ge "$2" ]; then echo "$1"; else echo "$2"; fi; }
min() { if [ "$1" -le "$2" ]; then echo "$1"; else echo "$2"; fi; }
ceil_div() { echo $(( ($1 + $2 - 1) / $2 )); }

# next_pow2 N: the smallest power of two >= N (1 for N <= 1).
next_pow2() {
  local p=1
  while [ "$p" -lt "$1" ]; do p=$((p * 2)); done
  echo "$p"
}

# round_up N M: N rounded up to a multiple of M.
round_up() { echo $(( ($1 + $2 - 1) / $2 * $2 )); }

# human BYTES: 1.5 GiB, 340.2 MiB, 12.0 KiB.
human() {
  awk -v b="$1" 'BEGIN {
    split("B KiB MiB GiB TiB", u, " "); i = 1
    while (b >= 1024 && i < 5) { b /= 1024; i++ }
    if (i == 1) printf "%d B", b; else printf "%.1f %s", b, u[i]
  }'
}

page_size() {
  if [ -n "${CORECAST_TUNING_PAGESIZE:-}" ]; then echo "$CORECAST_TUNING_PAGESIZE"; return; fi
  getconf PAGESIZE 2>/dev/null || echo 4096
}

cpu_count() { nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1; }

mem_total_bytes() {
  awk '/^MemTotal:/ { printf "%.0f\n", $2 * 1024; found = 1 } END { if (!found) print 0 }' \
    "$TUNING_ROOT/proc/meminfo" 2>/dev/null || echo 0
}

kernel_release() { read_sysctl kernel.osrelease; }

# kernel_at_least MAJOR MINOR: true if the running kernel is that version or newer.
kernel_at_least() {
  local rel maj minr
  rel=$(kernel_release)
  maj=${rel%%.*}
  minr=${rel#*.}; minr=${minr%%[!0-9]*}
  is_uint "$maj" && is_uint "$minr" || return 1
  [ "$maj" -gt "$1" ] || { [ "$maj" -eq "$1" ] && [ "$minr" -ge "$2" ]; }
}

# read_limit FILE NAME soft|hard: from a /proc/PID/limits file ("Max open files"), the value
# as a number or "unlimited"; empty if missing.
read_limit() {
  local col=1
  [ "$3" = hard ] && col=2
  awk -v name="$2" -v col="$col" '
    index($0, name) == 1 { split(substr($0, length(name) + 1), f, " "); print f[col]; exit }
  ' "$1" 2>/dev/null
}

# bytes_per_ring ENTRIES: what one io_uring ring of ENTRIES submission entries pins (SQEs of
# 64 bytes, a CQ of twice as many 16-byte CQEs, the SQ index array, headers), page-rounded.
bytes_per_ring() {
  local e=$1 ps
  ps=$(page_size)
  echo $(( $(round_up $((e * 64)) "$ps") + $(round_up $((2 * e * 16 + e * 4 + 1024)) "$ps") ))
}

# compute N P W: sets the REC_* / NEED_* variables for N connections spread over P corecast
# processes of W workers each.
# shellcheck disable=SC2034 # the variables are the result, read by the sourcing script
compute() {
  local n=$1 p=$2 w=$3 ps
  ps=$(page_size)
  PAGE=$ps
  PER_PROC=$(ceil_div "$n" "$p")
  # corecast keeps 64 + 8 per worker descriptors aside (listeners, rings, eventfds, logs).
  FD_MARGIN=$((64 + 8 * w))
  NEED_FD=$((PER_PROC + FD_MARGIN))
  REC_FD=$(max 65536 "$(next_pow2 "$NEED_FD")")
  NEED_FILES=$((n + p * FD_MARGIN))
  REC_FILE_MAX=$(max 1048576 "$(next_pow2 $((2 * n + p * FD_MARGIN)))")
  REC_SOMAXCONN=$(min 65535 "$(max 4096 "$(next_pow2 $((n / 16)))")")
  REC_SYN_BACKLOG=$REC_SOMAXCONN
  REC_NETDEV=$(min 16384 "$(max 1000 "$(next_pow2 $((n / 64)))")")
  # tcp_mem is in pages: room for every connection to hold ~4.3 KB of kernel memory at once.
  NEED_TCP_PAGES=$(ceil_div $((n * KERNEL_BYTES_PER_SOCKET)) "$ps")
  # pressure and max get 1.5x and 2x for traffic, but at most 3/4 of RAM (never below min):
  # past that, TCP would push the host into the OOM killer instead of failing on its own.
  local p2=$((NEED_TCP_PAGES * 3 / 2)) p3=$((NEED_TCP_PAGES * 2)) cap
  cap=$(( $(mem_total_bytes) * 3 / 4 / ps ))
  if [ "$cap" -gt 0 ]; then
    cap=$(max "$cap" "$NEED_TCP_PAGES")
    p2=$(min "$p2" "$cap"); p3=$(min "$p3" "$cap")
  fi
  REC_TCP_MEM="$NEED_TCP_PAGES $p2 $p3"
  NEED_CONNTRACK=$n
  REC_CONNTRACK=$(round_up $((n + n / 4)) 65536)
  NEED_MEM=$((n * (KERNEL_BYTES_PER_SOCKET + USER_BYTES_PER_CONN)))
  REC_TW_BUCKETS=$(next_pow2 "$n")
  NEED_MEMLOCK=$((p * w * $(bytes_per_ring "$URING_ENTRIES")))
}

# max_triple "a b c" "x y z": component-wise maximum ("max(a,x) max(b,y) max(c,z)").
max_triple() {
  local i out="" a b
  for i in 1 2 3; do
    a=$(field "$i" "$1"); b=$(field "$i" "$2")
    is_uint "$a" || a=0
    is_uint "$b" || b=0
    out+="$(max "$a" "$b") "
  done
  echo "${out% }"
}

# triple_below "a b c" "x y z": true if any component of the first is below the second's.
triple_below() {
  local i a b
  for i in 1 2 3; do
    a=$(field "$i" "$1"); b=$(field "$i" "$2")
    is_uint "$a" || return 0
    [ "$a" -lt "$b" ] && return 0
  done
  return 1
}
