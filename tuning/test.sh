#!/usr/bin/env bash
# Self-test of the tuning scripts. Never touches the real /etc or kernel settings: apply.sh
# runs with --prefix into temporary directories, and fake sysctl/systemctl commands on PATH
# record any call (there must be none). Fake hosts (CORECAST_TUNING_ROOT) make the verdicts
# deterministic. Runs as root or not, with or without systemd. Exit status 1 on any failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export CORECAST_TUNING_PAGESIZE=4096

passed=0 failed=0
pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$1"; [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/      | /'; }
# expect DESC CONDITION...: pass if the command succeeds.
expect() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d" "${OUT:-}"; fi; }
has() { grep -qF -- "$1" <<<"$OUT"; }
hasnt() { ! grep -qF -- "$1" <<<"$OUT"; }
row_status() { # NAME: the STATUS column of check.sh's row starting with NAME
  awk -v n="$1" 'index($0, n) == 1 { print substr($0, 81, 6); exit }' <<<"$OUT" | tr -d ' '
}
# run CMD...: OUT = stdout+stderr, RC = exit status.
run() { OUT=$("$@" 2>&1); RC=$?; }

# Fake sysctl and systemctl: apply.sh with --prefix must never call them.
mkdir -p "$TMP/bin"
for c in sysctl systemctl; do
  printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n' "$c" "$TMP" >"$TMP/bin/$c"
  chmod +x "$TMP/bin/$c"
done
: >"$TMP/calls"
STUB_PATH="$TMP/bin:$PATH"

# make_host DIR [key=value ...]: a fake /proc. Keys are sysctl names, or nofile, memlock
# (bytes or unlimited), memtotal_kb; "key=" leaves the sysctl out (module not loaded).
make_host() {
  local dir=$1; shift
  local -A v=(
    [fs.nr_open]=1048576 [fs.file-max]=9223372036854775807 [fs.file-nr]="1000 0 9223372036854775807"
    [net.core.somaxconn]=4096 [net.ipv4.tcp_max_syn_backlog]=1024
    [net.core.netdev_max_backlog]=1000 [net.ipv4.tcp_mem]="188000 250000 376000"
    [net.ipv4.tcp_rmem]="4096 131072 6291456" [net.ipv4.tcp_wmem]="4096 16384 4194304"
    [net.ipv4.ip_local_port_range]="32768 60999" [net.netfilter.nf_conntrack_max]=262144
    [net.netfilter.nf_conntrack_count]=12 [vm.max_map_count]=65530
    [net.ipv4.tcp_max_tw_buckets]=65536 [kernel.osrelease]=6.8.0-test
    [kernel.io_uring_disabled]=0 [nofile]=1024:524288 [memlock]=8388608 [memtotal_kb]=16384000
  )
  local kv k p
  for kv in "$@"; do v[${kv%%=*}]=${kv#*=}; done
  mkdir -p "$dir/proc/self"
  for k in "${!v[@]}"; do
    case "$k" in nofile|memlock|memtotal_kb) continue ;; esac
    [ -n "${v[$k]}" ] || continue
    p="$dir/proc/sys/${k//./\/}"
    mkdir -p "$(dirname "$p")"
    printf '%s\n' "${v[$k]}" | tr ' ' '\t' >"$p"
  done
  printf 'MemTotal:       %s kB\n' "${v[memtotal_kb]}" >"$dir/proc/meminfo"
  {
    printf '%-26s%-21s%-21s%-10s\n' "Limit" "Soft Limit" "Hard Limit" "Units"
    printf '%-26s%-21s%-21s%-10s\n' "Max open files" "${v[nofile]%%:*}" "${v[nofile]#*:}" "files"
    printf '%-26s%-21s%-21s%-10s\n' "Max locked memory" "${v[memlock]}" "${v[memlock]}" "bytes"
  } >"$dir/proc/self/limits"
}

echo "== check.sh on this machine"
run bash "$HERE/check.sh" --connections 19000
expect "check.sh --connections 19000 runs (exit $RC)" test "$RC" -le 1
for name in "nofile soft" "nofile hard" fs.nr_open fs.file-max fs.file-nr net.core.somaxconn \
    net.ipv4.tcp_max_syn_backlog net.core.netdev_max_backlog net.ipv4.tcp_mem net.ipv4.tcp_rmem \
    net.ipv4.tcp_wmem net.ipv4.ip_local_port_range net.netfilter.nf_conntrack_max memlock \
    vm.max_map_count MemTotal; do
  expect "check.sh reports $name" has "$name"
done
if [ "$RC" = 1 ]; then expect "exit 1 comes with a FAIL row" has " FAIL "; else expect "exit 0 has no FAIL row" hasnt " FAIL "; fi
run bash "$HERE/check.sh"
expect "check.sh (1M default) runs (exit $RC)" test "$RC" -le 1
expect "check.sh defaults to 1000000" has "1000000 connections"
run bash "$HERE/check.sh" --connections 19000 --json
expect "check.sh --json runs" test "$RC" -le 1
expect "--json is one line starting with {" test "$(wc -l <<<"$OUT")" = 1 -a "${OUT:0:1}" = "{"
if command -v python3 >/dev/null 2>&1; then
  expect "--json parses, 16+ checks" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert len(d["checks"]) >= 16 and d["connections"] == 19000' "$OUT"
fi
run bash "$HERE/check.sh" --help
expect "check.sh --help exits 0" test "$RC" = 0
run bash "$HERE/check.sh" --connections lots
expect "check.sh rejects a bad --connections with 2" test "$RC" = 2
run bash "$HERE/check.sh" --frobnicate
expect "check.sh rejects an unknown option with 2" test "$RC" = 2

echo "== check.sh on fake hosts"
make_host "$TMP/big" nofile=1048576:2097152 fs.nr_open=2097152 net.core.somaxconn=65535 \
  net.ipv4.tcp_max_syn_backlog=65535 net.core.netdev_max_backlog=16384 \
  net.ipv4.tcp_mem="2000000 3000000 4000000" net.netfilter.nf_conntrack_max=2097152 \
  memtotal_kb=67108864 net.ipv4.tcp_max_tw_buckets=1048576
run env CORECAST_TUNING_ROOT="$TMP/big" bash "$HERE/check.sh" --connections 1000000 --workers 2
expect "a big host passes 1M (exit 0)" test "$RC" = 0
expect "a big host has no FAIL" hasnt " FAIL "

make_host "$TMP/small" nofile=20000:20000 fs.file-max=500000 net.ipv4.tcp_mem="100 200 300000"
run env CORECAST_TUNING_ROOT="$TMP/small" bash "$HERE/check.sh" --connections 1000000 --workers 2
expect "a small host fails 1M (exit 1)" test "$RC" = 1
expect "NOFILE hard 20000 < 1M + margin: FAIL" test "$(row_status "nofile hard")" = FAIL
expect "file-max 500000 < 1M: FAIL" test "$(row_status fs.file-max)" = FAIL
expect "tcp_mem max 300000 pages < 1M x 4.3 KB: FAIL" test "$(row_status net.ipv4.tcp_mem)" = FAIL
expect "conntrack max 262144 < 1M: FAIL" test "$(row_status net.netfilter.nf_conntrack_max)" = FAIL
expect "nr_open 1048576 >= 1000080: not FAIL" test "$(row_status fs.nr_open)" = ok
expect "the FAIL line suggests --processes 51" has "--processes 51"
run env CORECAST_TUNING_ROOT="$TMP/small" bash "$HERE/check.sh" --connections 1000000 --workers 2 --json
if command -v python3 >/dev/null 2>&1; then
  expect "--json on the small host: 4 failures, ok false" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["failures"] == 4 and d["ok"] is False, d' "$OUT"
fi
run env CORECAST_TUNING_ROOT="$TMP/small" bash "$HERE/check.sh" --connections 1000000 --processes 51 --workers 2
expect "--processes 51: 19608 + 80 fds fit in 20000" test "$(row_status "nofile hard")" = low
run env CORECAST_TUNING_ROOT="$TMP/small" bash "$HERE/check.sh" --connections 19000 --workers 2
expect "the small host passes 19000 (exit 0)" test "$RC" = 0

make_host "$TMP/tiny" memtotal_kb=4194304
run env CORECAST_TUNING_ROOT="$TMP/tiny" bash "$HERE/check.sh" --connections 1000000 --workers 2
expect "4 GiB RAM cannot hold 1M idle connections: MemTotal FAIL" test "$(row_status MemTotal)" = FAIL
expect "tcp_mem pressure and max are capped at 3/4 of RAM, not below min" has "1049805 1049805 1049805"

make_host "$TMP/old" kernel.osrelease=5.10.0-old memlock=65536 net.netfilter.nf_conntrack_max=
run env CORECAST_TUNING_ROOT="$TMP/old" bash "$HERE/check.sh" --connections 10000 --workers 4
expect "kernel 5.10 with 64 KiB memlock: FAIL (io_uring_setup ENOMEM)" test "$(row_status memlock)" = FAIL
expect "conntrack not loaded is reported as such" has "not loaded"
make_host "$TMP/old2" kernel.osrelease=5.10.0-old memlock=unlimited
run env CORECAST_TUNING_ROOT="$TMP/old2" bash "$HERE/check.sh" --connections 10000 --workers 4
expect "kernel 5.10 with unlimited memlock: ok" test "$(row_status memlock)" = ok

echo "== apply.sh: dry run"
mkdir -p "$TMP/dry"
run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --connections 1000000 --prefix "$TMP/dry"
expect "dry run exits 0" test "$RC" = 0
expect "dry run says so" has "Dry run"
expect "dry run shows the three files" test "$(grep -c '^---- ' <<<"$OUT")" = 3
expect "dry run writes nothing" test -z "$(find "$TMP/dry" -type f)"
had_real=0; [ -e /etc/sysctl.d/90-corecast.conf ] && had_real=1
run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --connections 1000000
expect "dry run on the real /etc exits 0" test "$RC" = 0
expect "dry run on the real /etc writes nothing" test "$had_real" = 1 -o ! -e /etc/sysctl.d/90-corecast.conf
expect "dry run on the real /etc names the sysctl command or says nothing is needed" \
  grep -qE 'sysctl -p|No change needed' <<<"$OUT"

echo "== apply.sh --apply --prefix, twice"
P1="$TMP/p1"; mkdir -p "$P1"
FILES=("$P1/etc/sysctl.d/90-corecast.conf" "$P1/etc/security/limits.d/90-corecast.conf"
       "$P1/etc/systemd/system/corecast.service.d/limits.conf")
run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --connections 1000000 --apply --prefix "$P1"
expect "first --apply exits 0" test "$RC" = 0
for f in "${FILES[@]}"; do expect "wrote ${f#"$P1"}" test -s "$f"; done
mkdir -p "$TMP/snap"
for i in "${!FILES[@]}"; do cp -p "${FILES[$i]}" "$TMP/snap/$i"; done
stamps1=$(stat -c '%y' "${FILES[@]}")
expect "drop-in sets LimitNOFILE and LimitMEMLOCK=infinity" grep -qx 'LimitMEMLOCK=infinity' "${FILES[2]}"
expect "limits.d sets nofile for corecast" grep -qE '^corecast hard nofile [0-9]+$' "${FILES[1]}"
run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --connections 1000000 --apply --prefix "$P1"
expect "second --apply exits 0" test "$RC" = 0
expect "second --apply reports no change" has "No change"
expect "second --apply lists every file unchanged" test "$(grep -c '^unchanged:' <<<"$OUT")" = 3
same=1
for i in "${!FILES[@]}"; do cmp -s "${FILES[$i]}" "$TMP/snap/$i" || same=0; done
expect "files are byte-identical after the second run" test "$same" = 1
expect "files were not rewritten (same mtimes)" test "$stamps1" = "$(stat -c '%y' "${FILES[@]}")"
run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --connections 1000000 --prefix "$P1"
expect "a dry run afterwards shows all three unchanged" test "$(grep -c '(unchanged)' <<<"$OUT")" = 3

echo "== apply.sh --revert --prefix"
run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --revert --prefix "$P1"
expect "--revert exits 0" test "$RC" = 0
gone=1
for f in "${FILES[@]}"; do [ -e "$f" ] && gone=0; done
expect "--revert removed the three files" test "$gone" = 1
expect "--revert removed the empty drop-in directory" test ! -e "$P1/etc/systemd/system/corecast.service.d"
run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --revert --prefix "$P1"
expect "a second --revert has nothing to do" has "Nothing to revert"

echo "== apply.sh never lowers, keeps its own keys, leaves foreign files"
make_host "$TMP/high" net.core.somaxconn=100000 fs.nr_open=4194304 \
  net.ipv4.tcp_mem="1500000 1500000 9000000"
P2="$TMP/p2"; mkdir -p "$P2"
run env CORECAST_TUNING_ROOT="$TMP/high" PATH="$STUB_PATH" bash "$HERE/apply.sh" \
  --connections 1000000 --workers 2 --apply --prefix "$P2"
S2="$P2/etc/sysctl.d/90-corecast.conf"
expect "apply on a high host exits 0" test "$RC" = 0
expect "somaxconn 100000 (> 65535) is left to the host" test -z "$(grep '^net.core.somaxconn' "$S2")"
expect "nr_open 4194304 is left to the host" test -z "$(grep '^fs.nr_open' "$S2")"
expect "tcp_mem keeps the host's higher fields" grep -qx 'net.ipv4.tcp_mem = 1500000 1574707 9000000' "$S2"
expect "syn backlog 1024 is raised to 65535" grep -qx 'net.ipv4.tcp_max_syn_backlog = 65535' "$S2"

make_host "$TMP/low" nofile=1024:4096 fs.nr_open=65536
P3="$TMP/p3"; mkdir -p "$P3/etc/security" "$P3/etc/systemd/system"
echo "corecast hard nofile 4194304" >"$P3/etc/security/limits.conf"
printf '[Service]\nLimitNOFILE=1024:2097152\n' >"$P3/etc/systemd/system/corecast.service"
run env CORECAST_TUNING_ROOT="$TMP/low" PATH="$STUB_PATH" bash "$HERE/apply.sh" \
  --connections 1000000 --workers 2 --apply --prefix "$P3"
S3="$P3/etc/sysctl.d/90-corecast.conf"
expect "limits.d keeps a higher nofile from limits.conf" grep -qx 'corecast hard nofile 4194304' "$P3/etc/security/limits.d/90-corecast.conf"
expect "drop-in keeps a higher LimitNOFILE from the unit" grep -qx 'LimitNOFILE=2097152' "$P3/etc/systemd/system/corecast.service.d/limits.conf"
expect "nr_open is raised to cover the highest nofile" grep -qx 'fs.nr_open = 4194304' "$S3"
# Emulate sysctl -p into the fake host, then run again: the keys stay, nothing changes.
while IFS='=' read -r k val; do
  k=${k// /}; val=${val# }
  printf '%s\n' "$val" >"$TMP/low/proc/sys/${k//./\/}"
done < <(grep -E '^[a-z]' "$S3")
cp "$S3" "$TMP/s3.before"
run env CORECAST_TUNING_ROOT="$TMP/low" PATH="$STUB_PATH" bash "$HERE/apply.sh" \
  --connections 1000000 --workers 2 --apply --prefix "$P3"
expect "after the kernel took the values, a rerun changes nothing" has "No change"
expect "... and the sysctl file is byte-identical" cmp -s "$S3" "$TMP/s3.before"

P4="$TMP/p4"; mkdir -p "$P4/etc/sysctl.d"
echo "net.core.somaxconn = 1" >"$P4/etc/sysctl.d/90-corecast.conf"
run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --apply --prefix "$P4"
expect "a foreign file at the same path stops --apply (exit 1)" test "$RC" = 1
expect "... and is left as it was" test "$(cat "$P4/etc/sysctl.d/90-corecast.conf")" = "net.core.somaxconn = 1"
run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --revert --prefix "$P4"
expect "--revert keeps a foreign file" test -e "$P4/etc/sysctl.d/90-corecast.conf"

run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --help
expect "apply.sh --help exits 0" test "$RC" = 0
run env PATH="$STUB_PATH" bash "$HERE/apply.sh" --connections 0
expect "apply.sh rejects --connections 0 with 2" test "$RC" = 2
OUT=$(cat "$TMP/calls")
expect "with --prefix nothing called sysctl or systemctl" test -z "$OUT"

echo "== apply.sh without --prefix, in a private mount namespace (overlay on /etc, fake /proc)"
overlay_ok() { # can this host put an overlay on /etc inside a private mount namespace?
  mkdir -p "$TMP/probe-up" "$TMP/probe-work"
  unshare --mount --propagation private sh -c "mount -t overlay corecast-probe \
    -o lowerdir=/etc,upperdir=$TMP/probe-up,workdir=$TMP/probe-work /etc" 2>/dev/null
}
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && overlay_ok; then
  make_host "$TMP/ns" nofile=1024:4096
  mkdir -p "$TMP/nsbin"
  # A fake sysctl: records the call and loads `-p FILE` into the fake /proc.
  cat >"$TMP/nsbin/sysctl" <<STUB
#!/usr/bin/env bash
echo "sysctl \$*" >>"$TMP/nscalls"
if [ "\$1" = -p ]; then
  grep -E '^[a-z]' "\$2" | while IFS='=' read -r k v; do
    k=\${k// /}; printf '%s\n' "\${v# }" >"$TMP/ns/proc/sys/\${k//./\/}"
  done
fi
STUB
  printf '#!/bin/sh\necho "systemctl $*" >>"%s/nscalls"\n' "$TMP" >"$TMP/nsbin/systemctl"
  chmod +x "$TMP/nsbin/sysctl" "$TMP/nsbin/systemctl"
  : >"$TMP/nscalls"
  # Inside the namespace, /etc is an overlay whose writes land in $TMP/etc-upper; the script
  # stops before running anything unless that holds.
  mkdir -p "$TMP/etc-upper" "$TMP/etc-work"
  cat >"$TMP/ns.sh" <<SCRIPT
set -eu
mount -t overlay corecast-test -o lowerdir=/etc,upperdir="$TMP/etc-upper",workdir="$TMP/etc-work" /etc
[ "\$(stat -f -c %T /etc)" = overlayfs ] || { echo "no overlay on /etc"; exit 99; }
export PATH="$TMP/nsbin:\$PATH" CORECAST_TUNING_ROOT="$TMP/ns" CORECAST_TUNING_PAGESIZE=4096
a() { bash "$HERE/apply.sh" --workers 2 "\$@" 2>&1 || echo "exit \$?"; }
echo "#1"; a --apply
echo "#2"; a --apply
echo 128 >"$TMP/ns/proc/sys/net/core/somaxconn"
echo "#3"; a --apply
echo "#4"; a --revert
echo "#5"; find "$TMP/etc-upper" -type f
SCRIPT
  run unshare --mount --propagation private bash "$TMP/ns.sh"
  ns_out=$OUT
  part() { awk -v n="#$1" '$0 == n { on = 1; next } /^#[0-9]$/ { on = 0 } on' <<<"$ns_out"; }
  OUT=$(part 1)
  expect "--apply writes the three files under /etc and runs sysctl -p" \
    test "$(grep -c '^wrote:' <<<"$OUT")" = 3 -a -n "$(grep -F 'running:   sysctl -p /etc/sysctl.d/90-corecast.conf' <<<"$OUT")"
  OUT=$(part 2)
  expect "a second --apply changes nothing and says so" \
    has "No change: the files were already up to date and the kernel has their values."
  OUT=$(part 3)
  expect "a value lowered at runtime is raised again from the unchanged file" \
    has "raising:   net.core.somaxconn: 128 -> 65535"
  OUT=$(part 4)
  expect "--revert removes the files and runs sysctl --system" \
    test "$(grep -c '^removed:' <<<"$OUT")" -ge 3 -a -n "$(grep -F 'running:   sysctl --system' <<<"$OUT")"
  OUT=$(part 5)
  expect "nothing is left in /etc after --revert" test -z "$OUT"
  OUT=$(grep '^sysctl' "$TMP/nscalls")
  expect "sysctl ran exactly: -p, -p, --system" test "$(tr '\n' '|' <<<"$OUT")" = \
    "sysctl -p /etc/sysctl.d/90-corecast.conf|sysctl -p /etc/sysctl.d/90-corecast.conf|sysctl --system|"
else
  echo "skip  (needs root, unshare --mount and overlayfs)"
fi

echo "== irq-affinity.sh"
run bash "$HERE/irq-affinity.sh"
expect "irq-affinity.sh dry run exits 0" test "$RC" = 0
expect "it says where corecast's workers go" has "corecast:"
expect "it prints RPS/XPS guidance" has "RPS/XPS"
expect "it prints isolcpus/nohz_full guidance" has "nohz_full"
run bash "$HERE/irq-affinity.sh" --reserve 100000
expect "irq-affinity.sh rejects --reserve >= CPUs with 2" test "$RC" = 2

# A fake host: 4 CPUs, eth9 on a PCI function with a misc IRQ and 4 TxRx queue IRQs.
F="$TMP/nic"
mkdir -p "$F/sys/devices/system/cpu" "$F/sys/devices/pci0000:00/0000:00:05.0/msi_irqs" \
  "$F/sys/class/net/eth9" "$F/proc/net"
echo 0-3 >"$F/sys/devices/system/cpu/online"
ln -s "$F/sys/devices/pci0000:00/0000:00:05.0" "$F/sys/class/net/eth9/device"
printf 'Iface\tDestination\tGateway\neth9\t00000000\t0101A8C0\n' >"$F/proc/net/route"
echo "           CPU0       CPU1       CPU2       CPU3" >"$F/proc/interrupts"
for irq in 50 51 52 53 54; do
  : >"$F/sys/devices/pci0000:00/0000:00:05.0/msi_irqs/$irq"
  mkdir -p "$F/proc/irq/$irq"; echo 0-3 >"$F/proc/irq/$irq/smp_affinity_list"
  name=eth9-misc; [ "$irq" -gt 50 ] && name="eth9-TxRx-$((irq - 51))"
  echo " $irq:  1  2  3  4  PCI-MSIX-0000:00:05.0  $((irq - 50))-edge  $name" >>"$F/proc/interrupts"
done
for q in 0 1 2 3; do mkdir -p "$F/sys/class/net/eth9/queues/rx-$q" "$F/sys/class/net/eth9/queues/tx-$q"; done
aff() { cat "$F/proc/irq/$1/smp_affinity_list"; }
run env CORECAST_TUNING_ROOT="$F" bash "$HERE/irq-affinity.sh"
expect "fake NIC: finds eth9 by the default route and its 4 queue IRQs" has "Interface eth9: 4 queue IRQs"
expect "fake NIC: the dry run changes nothing" test "$(aff 51)$(aff 54)" = "0-30-3"
run env CORECAST_TUNING_ROOT="$F" bash "$HERE/irq-affinity.sh" --apply
expect "fake NIC: --apply puts queue q on CPU q" test "$(aff 51) $(aff 52) $(aff 53) $(aff 54)" = "0 1 2 3"
expect "fake NIC: the misc IRQ is left alone" test "$(aff 50)" = 0-3
run env CORECAST_TUNING_ROOT="$F" bash "$HERE/irq-affinity.sh" --reserve 2 --apply
expect "fake NIC: --reserve 2 puts the queues on CPUs 2-3" test "$(aff 51) $(aff 52) $(aff 53) $(aff 54)" = "2 3 2 3"
expect "fake NIC: --reserve 2 tells workers = 2 on CPUs 0-1" has "workers = 2, pin_workers = true: worker i runs on CPU i, i.e. CPUs 0-1"
expect "fake NIC: 4 tx queues get an XPS map" has "/sys/class/net/eth9/queues/tx-3/xps_cpus"

echo "== corecast.service"
U="$HERE/corecast.service"
for line in 'ExecStart=/usr/local/bin/corecast --config /etc/corecast/corecast.toml' \
    'LimitMEMLOCK=infinity' 'KillSignal=SIGTERM' 'Restart=on-failure' 'User=corecast'; do
  expect "unit has $line" grep -qxF "$line" "$U"
done
expect "unit sets LimitNOFILE" grep -qE '^LimitNOFILE=[0-9]+$' "$U"
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$U")
expect "TimeoutStopSec ($stop s) exceeds the longest drain: drain_window 10s + close_timeout 5s + 1s" test "${stop:-0}" -gt 16
if command -v systemd-analyze >/dev/null 2>&1; then
  R="$TMP/unitroot"
  mkdir -p "$R/usr/local/bin" "$R/etc/systemd/system"
  printf '#!/bin/sh\n' >"$R/usr/local/bin/corecast"; chmod +x "$R/usr/local/bin/corecast"
  cp "$U" "$R/etc/systemd/system/corecast.service"
  run systemd-analyze verify --root="$R" "$R/etc/systemd/system/corecast.service"
  expect "systemd-analyze verify finds no unknown or invalid setting" \
    test -z "$(grep -iE 'unknown|invalid|failed to parse|ignoring' <<<"$OUT")"
else
  echo "skip  systemd-analyze verify (not installed)"
fi

echo "== shellcheck"
if command -v shellcheck >/dev/null 2>&1; then
  run shellcheck "$HERE"/*.sh
  expect "shellcheck tuning/*.sh is clean" test "$RC" = 0
else
  echo "skip  shellcheck (not installed: apt-get install -y shellcheck)"
fi

echo
echo "tuning/test.sh: $passed passed, $failed failed"
[ "$failed" = 0 ]
