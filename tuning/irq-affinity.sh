#!/usr/bin/env bash
# Show (and with --apply set) the IRQ affinity of a NIC's queues, and say which CPUs to leave
# to corecast's pinned workers. Prints RPS/XPS and isolcpus/nohz_full guidance; sets only IRQ
# affinity. docs/tuning.md, "IRQ and CPU affinity", explains the layout.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

usage() {
  cat <<'EOF'
Usage: tuning/irq-affinity.sh [--iface IF] [--reserve K] [--apply]

Finds the IRQs of IF's queues and spreads them across CPUs, queue q on the q-th CPU of the
chosen set (a queue's rx and tx IRQs stay together). Dry run by default.

  --iface IF    network interface (default: the one holding the default route)
  --reserve K   put NIC IRQs on the last K CPUs only and leave the others to corecast's
                workers (run corecast with workers = CPUs - K). Default 0: IRQs on all CPUs,
                each shared with the worker pinned there (workers = 0).
  --apply       write /proc/irq/N/smp_affinity_list (needs root)
  --help        this text

corecast pins worker i to the (i mod C)-th CPU of its affinity mask (pin_workers = true), C =
the number of CPUs it may use; with the full mask and W workers they run on CPUs 0..W-1.
EOF
}

IFACE=""
RESERVE=0
APPLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --iface) [ $# -ge 2 ] || die "--iface needs a value"; IFACE=$2; shift 2 ;;
    --iface=*) IFACE=${1#*=}; shift ;;
    --reserve) [ $# -ge 2 ] || die "--reserve needs a value"; RESERVE=$2; shift 2 ;;
    --reserve=*) RESERVE=${1#*=}; shift ;;
    --apply) APPLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
is_uint "$RESERVE" || die "--reserve must be a whole number, got '$RESERVE'"

SYS="$TUNING_ROOT/sys"
PROC="$TUNING_ROOT/proc"

# expand_list "0-3,8": one CPU id per line.
expand_list() {
  tr ',' '\n' <<<"$1" | awk -F- 'NF == 1 && $1 != "" { print $1 } NF == 2 { for (i = $1; i <= $2; i++) print i }'
}
# compress_list 0 1 2 3 8: "0-3,8".
compress_list() {
  printf '%s\n' "$@" | sort -n | awk '
    NR == 1 { s = p = $1; next }
    $1 == p + 1 { p = $1; next }
    { out = out (out == "" ? "" : ",") (s == p ? s : s "-" p); s = p = $1 }
    END { if (NR) print out (out == "" ? "" : ",") (s == p ? s : s "-" p) }'
}
# cpu_mask 0 1 5: the hex mask sysfs takes (32-bit groups, comma-separated), "23".
cpu_mask() {
  local top=0 c g groups=() out=""
  for c in "$@"; do [ "$c" -gt "$top" ] && top=$c; done
  for ((g = 0; g <= top / 32; g++)); do groups[g]=0; done
  for c in "$@"; do groups[c / 32]=$(( groups[c / 32] | (1 << (c % 32)) )); done
  for ((g = top / 32; g >= 0; g--)); do
    if [ -z "$out" ]; then out=$(printf '%x' "${groups[g]}")
    else out+=$(printf ',%08x' "${groups[g]}")
    fi
  done
  echo "$out"
}

# ---------------------------------------------------------------- CPUs
online=$(cat "$SYS/devices/system/cpu/online" 2>/dev/null || echo "0-$(($(cpu_count) - 1))")
mapfile -t CPUS < <(expand_list "$online")
C=${#CPUS[@]}
[ "$RESERVE" -lt "$C" ] || die "--reserve $RESERVE leaves no CPU for workers ($C online)"
if [ "$RESERVE" -gt 0 ]; then
  IRQ_CPUS=("${CPUS[@]:C-RESERVE}")
  WORKER_CPUS=("${CPUS[@]:0:C-RESERVE}")
else
  IRQ_CPUS=("${CPUS[@]}")
  WORKER_CPUS=("${CPUS[@]}")
fi

# ---------------------------------------------------------------- interface and its IRQs
if [ -z "$IFACE" ]; then
  IFACE=$(awk 'NR > 1 && $2 == "00000000" { print $1; exit }' "$PROC/net/route" 2>/dev/null || true)
fi
if [ -z "$IFACE" ]; then
  for d in "$SYS"/class/net/*; do
    [ -e "$d/device" ] && { IFACE=${d##*/}; break; }
  done
fi
[ -n "$IFACE" ] || die "no network interface found; name one with --iface"
[ -d "$SYS/class/net/$IFACE" ] || die "no interface '$IFACE' in $SYS/class/net"

# irq_name N: the action name of IRQ N in /proc/interrupts (its last field).
irq_name() { awk -v irq="$1:" '$1 == irq { print $NF; exit }' "$PROC/interrupts"; }

IRQS=()
dev=$(readlink -f "$SYS/class/net/$IFACE/device" 2>/dev/null || true)
msi_dir=""
if [ -n "$dev" ] && [ -d "$dev/msi_irqs" ]; then
  msi_dir="$dev/msi_irqs"
elif [ -n "$dev" ] && [ -d "$dev/../msi_irqs" ]; then
  msi_dir="$dev/../msi_irqs"    # virtio: the netdev's device is virtioN under the PCI function
fi
if [ -n "$msi_dir" ]; then
  vname=${dev##*/}
  for f in "$msi_dir"/*; do
    [ -e "$f" ] || continue
    irq=${f##*/}
    name=$(irq_name "$irq")
    [ -n "$name" ] || continue
    case "$name" in *config*|*async*|*-event*|*ctrl*|*misc*) continue ;; esac
    case "$vname" in virtio*) [[ "$name" == "$vname"-* ]] || continue ;; esac
    IRQS+=("$irq")
  done
fi
if [ ${#IRQS[@]} -eq 0 ]; then
  # No MSI directory (or nothing in it): IRQs whose name carries the interface name.
  mapfile -t IRQS < <(awk -v ifc="$IFACE" '$1 ~ /^[0-9]+:$/ && index($NF, ifc) { sub(":", "", $1); print $1 }' \
    "$PROC/interrupts" 2>/dev/null)
fi

nrx=$(find "$SYS/class/net/$IFACE/queues" -maxdepth 1 -name 'rx-*' 2>/dev/null | wc -l)
ntx=$(find "$SYS/class/net/$IFACE/queues" -maxdepth 1 -name 'tx-*' 2>/dev/null | wc -l)

echo "Interface $IFACE: ${#IRQS[@]} queue IRQs, $nrx rx / $ntx tx queues; $C CPUs online ($online)."
echo "NIC IRQs on CPUs: $(compress_list "${IRQ_CPUS[@]}"). corecast workers on CPUs: $(compress_list "${WORKER_CPUS[@]}")."
echo

# ---------------------------------------------------------------- plan and apply
rc=0
if [ ${#IRQS[@]} -eq 0 ]; then
  echo "No queue IRQs found for $IFACE (a virtual or loopback device, or no MSI-X): nothing to set."
else
  fmt='%-6s %-28s %-10s %-10s %s\n'
  # shellcheck disable=SC2059 # the format is the constant above
  printf "$fmt" IRQ NAME NOW PROPOSED ""
  ord=0
  for irq in "${IRQS[@]}"; do
    name=$(irq_name "$irq")
    # Queue index: the last number in the name (eth0-TxRx-3, virtio2-input.0, mlx5_comp3@...);
    # rx and tx IRQs of one queue pair then land on the same CPU.
    q=$(sed -E 's/@.*//' <<<"$name" | grep -oE '[0-9]+' | tail -n 1 || true)
    [ -n "$q" ] || q=$ord
    ord=$((ord + 1))
    cpu=${IRQ_CPUS[q % ${#IRQ_CPUS[@]}]}
    now=$(cat "$PROC/irq/$irq/smp_affinity_list" 2>/dev/null || echo "?")
    note=""
    if [ "$APPLY" = 1 ] && [ "$now" != "$cpu" ]; then
      if printf '%s\n' "$cpu" 2>/dev/null >"$PROC/irq/$irq/smp_affinity_list"; then
        note="set"
      else
        note="FAILED (kernel-managed IRQ or not root)"
        rc=1
      fi
    elif [ "$now" = "$cpu" ]; then
      note="already"
    fi
    # shellcheck disable=SC2059
    printf "$fmt" "$irq" "$name" "$now" "$cpu" "$note"
  done
  echo
  if [ "$APPLY" = 0 ]; then
    echo "Dry run: nothing changed. --apply writes /proc/irq/N/smp_affinity_list (not persistent:"
    echo "run it at boot, e.g. from a oneshot systemd unit after the network is up)."
  fi
fi

irqbalance=no
for c in "$PROC"/[0-9]*/comm; do
  if [ "$(cat "$c" 2>/dev/null)" = irqbalance ]; then irqbalance=yes; break; fi
done
if [ "$irqbalance" = yes ]; then
  echo "irqbalance is running and will move these IRQs again: stop it (systemctl disable --now"
  echo "irqbalance) or ban the IRQs, e.g. IRQBALANCE_BANNED_CPULIST=$(compress_list "${WORKER_CPUS[@]}")."
fi

# ---------------------------------------------------------------- corecast settings
echo
echo "corecast:"
if [ "$RESERVE" -gt 0 ]; then
  echo "  workers = $((C - RESERVE)), pin_workers = true: worker i runs on CPU i, i.e. CPUs $(compress_list "${WORKER_CPUS[@]}");"
  echo "  the other CPUs ($(compress_list "${IRQ_CPUS[@]}")) take the NIC interrupts and softirq work."
else
  echo "  workers = 0 (one per CPU), pin_workers = true: worker i runs on CPU i and shares it with"
  echo "  the NIC queue whose IRQ is there. Good when the NIC has a queue per CPU; with fewer queues"
  echo "  than CPUs, consider --reserve K or RPS below."
fi
echo "  corecast pins worker i to the (i mod C)-th CPU of its affinity mask: with the full mask"
echo "  these are the low CPUs; to place workers elsewhere, restrict the mask (CPUAffinity= in the"
echo "  unit, or taskset) to the worker CPUs."

# ---------------------------------------------------------------- RPS / XPS
echo
echo "RPS/XPS (printed only, not applied):"
if [ "$nrx" -gt 0 ] && [ "$nrx" -lt "$C" ]; then
  rmask=$(cpu_mask "${IRQ_CPUS[@]}")
  echo "  $IFACE has $nrx rx queue(s) for $C CPUs: RPS spreads receive processing to CPUs $(compress_list "${IRQ_CPUS[@]}"),"
  echo "  with RFS steering each flow to the CPU that reads it:"
  per=$(( 32768 / nrx ))
  echo "    sysctl -w net.core.rps_sock_flow_entries=32768"
  for ((i = 0; i < nrx; i++)); do
    echo "    echo $rmask > /sys/class/net/$IFACE/queues/rx-$i/rps_cpus; echo $per > /sys/class/net/$IFACE/queues/rx-$i/rps_flow_cnt"
  done
else
  echo "  $IFACE has $nrx rx queue(s) for $C CPUs: RPS is not needed (hardware RSS spreads the flows)."
fi
if [ "$ntx" -gt 1 ]; then
  echo "  XPS: let CPU c transmit on queue c % $ntx, so a worker never contends for another's queue:"
  for ((i = 0; i < ntx; i++)); do
    mine=()
    for c in "${CPUS[@]}"; do [ $((c % ntx)) -eq "$i" ] && mine+=("$c"); done
    [ ${#mine[@]} -gt 0 ] || continue
    echo "    echo $(cpu_mask "${mine[@]}") > /sys/class/net/$IFACE/queues/tx-$i/xps_cpus"
  done
else
  echo "  XPS: one tx queue, nothing to map."
fi

# ---------------------------------------------------------------- isolation
echo
echo "Optional CPU isolation (kernel command line; reboot; only for latency-critical hosts):"
if [ "$RESERVE" -gt 0 ] && [ "$C" -gt 2 ]; then
  # CPU 0 stays a housekeeping CPU: nohz_full cannot take the boot CPU.
  iso=$(compress_list "${WORKER_CPUS[@]:1}")
  echo "  isolcpus=managed_irq,domain,$iso nohz_full=$iso rcu_nocbs=$iso"
  echo "  CPU 0 stays a housekeeping CPU (the boot CPU cannot be nohz_full); worker 0 shares it."
else
  echo "  isolcpus=managed_irq,domain,<worker CPUs but 0> nohz_full=<same> rcu_nocbs=<same>"
fi
echo "  isolcpus also shrinks a process's default CPU set: start corecast with an explicit"
echo "  CPUAffinity= (systemd) or taskset covering the worker CPUs, and check the startup log."
exit "$rc"
