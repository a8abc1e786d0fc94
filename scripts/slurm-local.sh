#!/usr/bin/env bash
# Start or stop a one-node Slurm cluster on this machine (Debian's slurm-wlm + munge, as root, no systemd).
# Usage: bash scripts/slurm-local.sh start|stop|status. Used by .ci/run for the live Slurm test (tests/slurm_live.rs).
# What worked is written in ../shared/docs/slurm-local.md; state lives under /var/spool and /var/log/slurm.
set -euo pipefail
cmd="${1:-status}"
host="$(hostname -s)"
pids=/run/powertrain-slurm.pids
case "$cmd" in
start)
    command -v slurmctld >/dev/null || { echo "slurm-local: slurmctld not found: apt-get install -y slurm-wlm munge" >&2; exit 1; }
    if sinfo -h >/dev/null 2>&1; then echo "slurm-local: a controller already answers"; exit 0; fi
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
    chown munge:munge /run/munge 2>/dev/null || true
    mem_mib=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$(nproc) RealMemory=$mem_mib State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    test -s /etc/munge/munge.key || { /usr/sbin/mungekey --create 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
    started_munge=""
    if ! pgrep -x munged >/dev/null; then su -s /bin/sh munge -c /usr/sbin/munged; started_munge=1; fi
    munge -n | unmunge >/dev/null
    slurmctld
    slurmd
    for _ in $(seq 1 30); do
        if sinfo -h -o %t 2>/dev/null | grep -q idle; then
            # The daemons this call started (munged only when it was not running before); `stop` ends these.
            { pgrep -x slurmctld; pgrep -x slurmd; [ -z "$started_munge" ] || pgrep -x munged; } > "$pids"
            echo "slurm-local: node $host idle"
            exit 0
        fi
        sleep 1
    done
    echo "slurm-local: the node did not come up; see /var/log/slurm/" >&2
    exit 1
    ;;
stop)
    if [ -f "$pids" ]; then xargs -r kill < "$pids" 2>/dev/null || true; rm -f "$pids"; fi
    ;;
status)
    sinfo
    ;;
*)
    echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
