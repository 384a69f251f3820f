#!/usr/bin/env bash
# Moves every interrupt of a NIC onto the housekeeping CPUs, off the cores
# the engine is pinned to (engine.network_core, engine.publisher_cores).
#   usage (as root): tuning/irq-affinity.sh NIC CPULIST    e.g. eth0 0-1
# Stop irqbalance first (systemctl disable --now irqbalance), or it moves them
# back. `panda-feed doctor --nic NIC` checks the result.
set -euo pipefail
nic="${1:?usage: irq-affinity.sh NIC CPULIST (e.g. eth0 0-1)}"
cpus="${2:?usage: irq-affinity.sh NIC CPULIST (e.g. eth0 0-1)}"
irqs=$(awk -v nic="$nic" '$0 ~ nic { sub(":", "", $1); print $1 }' /proc/interrupts)
if [ -z "$irqs" ]; then
  echo "no interrupts of $nic in /proc/interrupts" >&2
  exit 1
fi
for irq in $irqs; do
  if echo "$cpus" > "/proc/irq/$irq/smp_affinity_list" 2>/dev/null; then
    echo "irq $irq ($nic) -> $cpus"
  else
    echo "irq $irq ($nic): cannot set (managed by the driver?)" >&2
  fi
done
