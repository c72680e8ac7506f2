#!/usr/bin/env bash
# Write the host settings corecast needs for N connections: a sysctl.d file, a limits.d file
# and a systemd drop-in. Dry run unless --apply. Never lowers a value the host has higher.
# docs/tuning.md explains every value.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<'EOF'
Usage: tuning/apply.sh [--connections N] [--processes P] [--workers W] [--user NAME]
                       [--prefix DIR] [--apply | --revert [--dry-run]]

Without --apply or --revert this is a dry run: it prints the files it would write, whether
each is new, changed or unchanged, and the commands it would run. Nothing is written.

  --connections N  connections to hold, across all processes (default 1000000)
  --processes P    corecast processes sharing the port (SO_REUSEPORT) (default 1)
  --workers W      workers per process, for the descriptor margin (default: CPU count)
  --user NAME      the user corecast runs as, for limits.d (default corecast)
  --apply          write the files; without --prefix also load the sysctl file
                   (sysctl -p) and run systemctl daemon-reload when systemd runs. Needs root
                   unless --prefix points somewhere writable.
  --revert         remove the files this script wrote (only files carrying its header), then
                   without --prefix reload sysctl (sysctl --system) and systemd. Acts at once;
                   add --dry-run to see what it would remove.
  --dry-run        with --revert: only print what would be removed
  --prefix DIR     use DIR/etc/... instead of /etc/...: writes files only, never runs sysctl
                   or systemctl (values are still read from this host's /proc)
  --help           this text

Files:
  /etc/sysctl.d/90-corecast.conf               kernel settings below the recommendation
  /etc/security/limits.d/90-corecast.conf      nofile and memlock for --user (login sessions)
  /etc/systemd/system/corecast.service.d/limits.conf   LimitNOFILE, LimitMEMLOCK=infinity

A setting the host already has at or above the recommendation is left out of the sysctl file;
a value that is higher in part (a tcp_mem field) is kept. Running twice changes nothing the
second time. Exit status: 0 done (or nothing to do), 1 failed, 2 usage error.
EOF
}

N=1000000
P=1
W=""
RUN_USER=corecast
PREFIX=""
MODE=plan
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --connections|--processes|--workers|--connections=*|--processes=*|--workers=*)
      sizing_opt "$@"; shift "$USED" ;;
    --user) [ $# -ge 2 ] || die "--user needs a value"; RUN_USER=$2; shift 2 ;;
    --user=*) RUN_USER=${1#*=}; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --apply) [ "$MODE" = revert ] || MODE=apply; shift ;;
    --revert) MODE=revert; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$W" ] || W=$(cpu_count)
positive "$N" || die "--connections must be a whole number >= 1, got '$N'"
positive "$P" || die "--processes must be a whole number >= 1, got '$P'"
positive "$W" || die "--workers must be a whole number >= 1, got '$W'"
[[ "$RUN_USER" =~ ^[A-Za-z_][A-Za-z0-9_.-]*[$]?$ ]] || die "--user: not a user name: '$RUN_USER'"
if [ -n "$PREFIX" ]; then
  [ -d "$PREFIX" ] || die "--prefix $PREFIX: no such directory"
  PREFIX=$(cd "$PREFIX" && pwd)
fi
[ "$MODE" = plan ] && DRY=1

SYSCTL_FILE="$PREFIX/etc/sysctl.d/90-corecast.conf"
LIMITS_FILE="$PREFIX/etc/security/limits.d/90-corecast.conf"
DROPIN_DIR="$PREFIX/etc/systemd/system/corecast.service.d"
DROPIN_FILE="$DROPIN_DIR/limits.conf"
MARKER="# Written by corecast tuning/apply.sh"

if [ "$DRY" = 0 ] && [ -z "$PREFIX" ] && [ "$(id -u)" != 0 ]; then
  echo "apply.sh: writing /etc needs root (or --prefix DIR to write elsewhere)" >&2
  exit 1
fi

ours() { [ -f "$1" ] && head -n 1 "$1" | grep -qF "$MARKER"; }
systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# ---------------------------------------------------------------- revert
if [ "$MODE" = revert ]; then
  removed=()
  for f in "$SYSCTL_FILE" "$LIMITS_FILE" "$DROPIN_FILE"; do
    if [ ! -e "$f" ]; then
      echo "absent:    $f"
    elif ! ours "$f"; then
      echo "kept:      $f (not written by apply.sh: no '$MARKER' header)"
    elif [ "$DRY" = 1 ]; then
      echo "would remove: $f"
      removed+=("$f")
    else
      rm -f -- "$f"
      echo "removed:   $f"
      removed+=("$f")
    fi
  done
  if [ "$DRY" = 0 ] && [ -d "$DROPIN_DIR" ]; then
    rmdir -- "$DROPIN_DIR" 2>/dev/null && echo "removed:   $DROPIN_DIR/ (empty)"
  fi
  if [ ${#removed[@]} -eq 0 ]; then
    echo "Nothing to revert: no file written by apply.sh${PREFIX:+ under $PREFIX}."
    exit 0
  fi
  if [ -n "$PREFIX" ]; then
    echo "With --prefix: files only; sysctl and systemctl were not run."
    exit 0
  fi
  run=()
  for f in "${removed[@]}"; do
    [ "$f" = "$SYSCTL_FILE" ] && run+=("sysctl --system")
    [ "$f" = "$DROPIN_FILE" ] && systemd_running && run+=("systemctl daemon-reload")
  done
  rc=0
  for cmd in "${run[@]}"; do
    if [ "$DRY" = 1 ]; then
      echo "would run: $cmd"
    else
      echo "running:   $cmd"
      # shellcheck disable=SC2086 # the commands above are plain words
      $cmd >/dev/null || { echo "failed:    $cmd" >&2; rc=1; }
    fi
  done
  echo "Kernel values raised earlier stay in effect until reboot; 'sysctl --system' re-applied"
  echo "the remaining sysctl files. The limits.d change takes effect at the next login, the"
  echo "drop-in's at the next 'systemctl restart corecast'."
  exit "$rc"
fi

# ---------------------------------------------------------------- plan
compute "$N" "$P" "$W"

# existing_limits_nofile USER: the highest nofile in limits.conf and other limits.d files
# for USER (or *, which pam_limits does not apply to root); 0 if none, -1 for unlimited.
existing_limits_nofile() {
  local files=() f
  [ -f "$PREFIX/etc/security/limits.conf" ] && files+=("$PREFIX/etc/security/limits.conf")
  for f in "$PREFIX"/etc/security/limits.d/*.conf; do
    [ -f "$f" ] && [ "$f" != "$LIMITS_FILE" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || { echo 0; return; }
  awk -v user="$1" '
    $1 !~ /^#/ && ($1 == user || ($1 == "*" && user != "root")) && $3 == "nofile" {
      if ($4 == "unlimited" || $4 == "infinity") { best = -1; exit }
      if ($4 ~ /^[0-9]+$/ && $4 + 0 > best) best = $4 + 0
    }
    END { print best + 0 }' "${files[@]}"
}

# existing_unit_nofile: the highest LimitNOFILE in corecast.service and its other drop-ins;
# 0 if none, -1 for infinity.
existing_unit_nofile() {
  local files=() f
  for f in "$PREFIX/etc/systemd/system/corecast.service" \
           "$PREFIX/usr/lib/systemd/system/corecast.service" \
           "$PREFIX/lib/systemd/system/corecast.service" "$DROPIN_DIR"/*.conf; do
    [ -f "$f" ] && [ "$f" != "$DROPIN_FILE" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || { echo 0; return; }
  awk -F= '
    $1 ~ /^[ \t]*LimitNOFILE[ \t]*$/ {
      v = $2; gsub(/[ \t]/, "", v); n = split(v, part, ":"); v = part[n]
      if (v == "infinity") { best = -1; exit }
      if (v ~ /^[0-9]+$/ && v + 0 > best) best = v + 0
    }
    END { print best + 0 }' "${files[@]}"
}

limits_nofile=$REC_FD
have=$(existing_limits_nofile "$RUN_USER")
if [ "$have" = -1 ]; then limits_nofile=unlimited; else limits_nofile=$(max "$REC_FD" "$have"); fi
unit_nofile=$REC_FD
have=$(existing_unit_nofile)
if [ "$have" = -1 ]; then unit_nofile=infinity; else unit_nofile=$(max "$REC_FD" "$have"); fi
# fs.nr_open caps both: setrlimit above it fails, and so would the login or the service start.
nr_open_need=$REC_FD
is_uint "$limits_nofile" && nr_open_need=$(max "$nr_open_need" "$limits_nofile")
is_uint "$unit_nofile" && nr_open_need=$(max "$nr_open_need" "$unit_nofile")

# Keys this script wrote last time stay in the file (at the higher of host and
# recommendation), so that a second run after a real --apply produces the same file.
prev_keys=""
if ours "$SYSCTL_FILE"; then
  prev_keys=$(awk -F= '/^[a-z]/ { k = $1; gsub(/[ \t]/, "", k); print k }' "$SYSCTL_FILE")
fi
was_written() { grep -qxF "$1" <<<"$prev_keys"; }

header="$MARKER for $N connections ($(procs_workers "$P" "$W"))."
SYSCTL_BODY="$header
# Remove with: tuning/apply.sh --revert. Each value is explained in docs/tuning.md.
# Only settings below the recommendation are set here; the host's higher values are kept.
"
SET_KEYS=() SET_VALS=() CHANGES=()
# want KEY VALUE WHY: add KEY to the sysctl file if the host is below VALUE.
want() {
  local key=$1 rec=$2 why=$3 cur new below=0
  cur=$(read_sysctl "$key")
  if [ -z "$cur" ]; then
    SYSCTL_BODY+="# $key: not present on this host, skipped
"
    return
  fi
  if [ "$(field 3 "$rec")" != "" ]; then
    new=$(max_triple "$cur" "$rec")
    triple_below "$cur" "$rec" && below=1
  else
    is_uint "$cur" || cur=0
    new=$(max "$cur" "$rec")
    [ "$cur" -lt "$rec" ] && below=1
  fi
  if [ "$below" = 1 ] || was_written "$key"; then
    SYSCTL_BODY+="# $why
$key = $new
"
    SET_KEYS+=("$key"); SET_VALS+=("$new")
    if [ "$cur" != "$new" ]; then CHANGES+=("$key: $cur -> $new"); fi
  else
    SYSCTL_BODY+="# $key: left to the host (already >= $rec)
"
  fi
}

want fs.nr_open "$nr_open_need" \
  "ceiling for every process's nofile limit (LimitNOFILE, limits.d)"
want fs.file-max "$REC_FILE_MAX" "open files, system-wide: 2 x N + margin"
want net.core.somaxconn "$REC_SOMAXCONN" \
  "accept queue cap per listener; also raise corecast's backlog to use it"
want net.ipv4.tcp_max_syn_backlog "$REC_SYN_BACKLOG" "half-open connections per listener"
want net.core.netdev_max_backlog "$REC_NETDEV" "packets queued per CPU before the stack"
want net.ipv4.tcp_mem "$REC_TCP_MEM" \
  "pages (min pressure max): N x 4.3 KB at min, room for traffic above"
if [ -n "$(read_sysctl net.netfilter.nf_conntrack_max)" ]; then
  want net.netfilter.nf_conntrack_max "$REC_CONNTRACK" \
    "conntrack is loaded: one entry per connection, N + 25%"
fi
SYSCTL_BODY+="# Optional, not set by this script (see docs/tuning.md):
# net.ipv4.ip_local_port_range = 10240 65535   # clients on this host: more source ports
# net.ipv4.tcp_rmem = 4096 16384 6291456        # leaner default buffers for many idle sockets
# net.ipv4.tcp_wmem = 4096 16384 4194304
"

LIMITS_BODY="$header
# Remove with: tuning/apply.sh --revert. Applies to new login sessions (pam_limits).
$RUN_USER soft nofile $limits_nofile
$RUN_USER hard nofile $limits_nofile
$RUN_USER soft memlock unlimited
$RUN_USER hard memlock unlimited
"

DROPIN_BODY="$header
# Remove with: tuning/apply.sh --revert. Takes effect at the next restart of corecast.
[Service]
LimitNOFILE=$unit_nofile
LimitMEMLOCK=infinity
"

# state FILE BODY: new, changed, unchanged, or foreign (exists, not written by us).
state() {
  if [ ! -e "$1" ]; then echo new
  elif ! ours "$1"; then echo foreign
  elif [ "$(cat "$1"; printf x)" = "${2}x" ]; then echo unchanged
  else echo changed
  fi
}

sysctl_state=$(state "$SYSCTL_FILE" "$SYSCTL_BODY")
limits_state=$(state "$LIMITS_FILE" "$LIMITS_BODY")
dropin_state=$(state "$DROPIN_FILE" "$DROPIN_BODY")
for pair in "$SYSCTL_FILE:$sysctl_state" "$LIMITS_FILE:$limits_state" "$DROPIN_FILE:$dropin_state"; do
  if [ "${pair##*:}" = foreign ]; then
    echo "apply.sh: ${pair%:*} exists and was not written by apply.sh; move it away first" >&2
    exit 1
  fi
done

# Keys in the file whose running value differs (without --prefix, these need sysctl -p).
RUNTIME_DIFF=()
if [ -z "$PREFIX" ]; then
  for i in "${!SET_KEYS[@]}"; do
    [ "$(read_sysctl "${SET_KEYS[$i]}")" = "${SET_VALS[$i]}" ] || RUNTIME_DIFF+=("${SET_KEYS[$i]}")
  done
fi

show() { # FILE STATE BODY
  echo "---- $1 ($2)"
  printf '%s' "$3" | sed 's/^/    /'
}

if [ "$DRY" = 1 ]; then
  echo "Dry run for $N connections ($(procs_workers "$P" "$W"), $NEED_FD fds each). Nothing is written."
  echo
  show "$SYSCTL_FILE" "$sysctl_state" "$SYSCTL_BODY"
  show "$LIMITS_FILE" "$limits_state" "$LIMITS_BODY"
  show "$DROPIN_FILE" "$dropin_state" "$DROPIN_BODY"
  echo
  if [ ${#CHANGES[@]} -gt 0 ]; then
    echo "Kernel values the sysctl file raises (this host now -> file):"
    printf '    %s\n' "${CHANGES[@]}"
  fi
  if [ -n "$PREFIX" ]; then
    echo "With --prefix, --apply writes the files only: no sysctl, no systemctl."
  else
    echo "Commands --apply would run:"
    if [ "$sysctl_state" != unchanged ] || [ ${#RUNTIME_DIFF[@]} -gt 0 ]; then
      echo "    sysctl -p $SYSCTL_FILE"
      for i in "${!SET_KEYS[@]}"; do
        echo "      (= sysctl -w ${SET_KEYS[$i]}=\"${SET_VALS[$i]}\")"
      done
    fi
    if [ "$dropin_state" != unchanged ]; then
      if systemd_running; then echo "    systemctl daemon-reload"
      else echo "    (systemd is not running here: no daemon-reload)"
      fi
    fi
  fi
  if [ "$sysctl_state$limits_state$dropin_state" = unchangedunchangedunchanged ] \
     && [ ${#RUNTIME_DIFF[@]} -eq 0 ]; then
    echo "No change needed: the files are up to date${PREFIX:+ (under $PREFIX)}."
  else
    echo "Run again with --apply to do it."
  fi
  exit 0
fi

# ---------------------------------------------------------------- apply
write_file() { # FILE BODY
  local dir tmp
  dir=$(dirname "$1")
  mkdir -p -- "$dir"
  tmp=$(mktemp "$dir/.corecast-apply.XXXXXX")
  printf '%s' "$2" >"$tmp"
  chmod 0644 "$tmp"
  mv -f -- "$tmp" "$1"
}

changed=0
for spec in "SYSCTL:$sysctl_state" "LIMITS:$limits_state" "DROPIN:$dropin_state"; do
  which=${spec%%:*} st=${spec#*:}
  file_var="${which}_FILE" body_var="${which}_BODY"
  if [ "$st" = unchanged ]; then
    echo "unchanged: ${!file_var}"
  else
    write_file "${!file_var}" "${!body_var}"
    echo "wrote:     ${!file_var} ($st)"
    changed=1
  fi
done

rc=0
if [ -z "$PREFIX" ]; then
  if [ "$sysctl_state" != unchanged ] || [ ${#RUNTIME_DIFF[@]} -gt 0 ]; then
    for c in "${CHANGES[@]}"; do echo "raising:   $c"; done
    if command -v sysctl >/dev/null 2>&1; then
      echo "running:   sysctl -p $SYSCTL_FILE"
      sysctl -p "$SYSCTL_FILE" >/dev/null || { echo "failed:    sysctl -p $SYSCTL_FILE (read-only /proc/sys?)" >&2; rc=1; }
    else
      for i in "${!SET_KEYS[@]}"; do
        echo "writing:   ${SET_KEYS[$i]} = ${SET_VALS[$i]} (no sysctl binary)"
        printf '%s\n' "${SET_VALS[$i]}" >"$(sysctl_path "${SET_KEYS[$i]}")" || rc=1
      done
    fi
    changed=1
  fi
  if [ "$dropin_state" != unchanged ]; then
    if systemd_running; then
      echo "running:   systemctl daemon-reload (restart corecast to use the new limits)"
      systemctl daemon-reload || { echo "failed:    systemctl daemon-reload" >&2; rc=1; }
    else
      echo "note:      systemd is not running here; the drop-in applies once it does"
    fi
  fi
  if [ "$limits_state" != unchanged ]; then
    echo "note:      limits.d applies to new login sessions of '$RUN_USER'"
  fi
else
  echo "With --prefix: files only; sysctl and systemctl were not run."
fi

if [ "$changed" = 0 ]; then
  if [ -n "$PREFIX" ]; then
    echo "No change: the files under $PREFIX were already up to date."
  else
    echo "No change: the files were already up to date and the kernel has their values."
  fi
fi
exit "$rc"
