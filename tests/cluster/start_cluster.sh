#!/usr/bin/env bash
# Start a one-node SLURM test cluster on this host.
#
# Debian 12, run as root, no systemd needed: the daemons (munged, slurmctld,
# slurmd) are started directly. Idempotent: a second run that finds the same
# configuration and a healthy cluster does nothing but report.
#
# What it does (each step is printed):
#   1. installs slurm-wlm + munge with apt-get (skipped when already installed)
#   2. creates /etc/munge/munge.key if missing and starts munged
#   3. writes /etc/slurm/slurm.conf for ONE node = this host (CPUs, memory and
#      topology from `slurmd -C`), no accounting database
#   4. starts slurmctld and slurmd (restarted only if the config changed or a
#      daemon is not running)
#   5. waits until `sinfo` reports the node idle
#
# Environment overrides:
#   SLURM_TEST_PARTITION  partition name (default: main)
#   SLURM_TEST_TIMEOUT    seconds to wait for the node to become idle (default: 60)
#
# Stop with tests/cluster/stop_cluster.sh.
set -euo pipefail

PARTITION="${SLURM_TEST_PARTITION:-main}"
TIMEOUT="${SLURM_TEST_TIMEOUT:-60}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
RUN_DIR=/run/slurm
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
CTLD_PID="$RUN_DIR/slurmctld.pid"
SLURMD_PID="$RUN_DIR/slurmd.pid"
MUNGE_KEY=/etc/munge/munge.key
T0=$(date +%s%N)

say() { printf '[start_cluster] %s\n' "$*"; }
die() { printf '[start_cluster] ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100)); }

pid_alive() {  # pid_alive <pidfile>: true if the pidfile names a live process
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons); try: sudo bash $0"

# --- 1. packages ---------------------------------------------------------------
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
   && command -v munged >/dev/null && command -v sinfo >/dev/null; then
    say "packages: slurm-wlm and munge already installed ($(slurmd -V))"
else
    command -v apt-get >/dev/null || die "slurm is not installed and apt-get is not available; install slurm-wlm and munge"
    say "packages: installing slurm-wlm munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    say "packages: installed $(slurmd -V)"
fi

# --- 2. munge -----------------------------------------------------------------
MUNGE_USER=munge
getent passwd "$MUNGE_USER" >/dev/null || MUNGE_USER=root
if [[ ! -s "$MUNGE_KEY" ]]; then
    say "munge: creating $MUNGE_KEY"
    install -d -m 0700 -o "$MUNGE_USER" /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$MUNGE_KEY" --force
    else
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
fi
chown "$MUNGE_USER:" "$MUNGE_KEY"
chmod 0400 "$MUNGE_KEY"
install -d -m 0755 -o "$MUNGE_USER" /run/munge
install -d -m 0700 -o "$MUNGE_USER" /var/lib/munge /var/log/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munge: munged already running"
else
    say "munge: starting munged as user $MUNGE_USER"
    if [[ $MUNGE_USER == root ]]; then
        munged --force
    else
        runuser -u "$MUNGE_USER" -- munged
    fi
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || die "munged did not start; see /var/log/munge/munged.log"
fi

# --- 3. slurm.conf --------------------------------------------------------------
HOST=$(hostname -s)
# `slurmd -C` prints this machine's real node line (CPUs, sockets, cores,
# threads, RealMemory); using it verbatim keeps slurmd from draining the node
# for a mismatch between configured and detected hardware.
NODE_HW=$(slurmd -C | head -n 1 | sed -e "s/^NodeName=[^ ]* //")
[[ $NODE_HW == *CPUs=* && $NODE_HW == *RealMemory=* ]] \
    || die "could not read the node hardware from 'slurmd -C' (got: '$NODE_HW')"
install -d -m 0755 "$CONF_DIR" "$RUN_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"

NEW_CONF=$(mktemp)
trap 'rm -f "$NEW_CONF"' EXIT
cat > "$NEW_CONF" <<EOF
# Written by tests/cluster/start_cluster.sh: one-node SLURM test cluster.
ClusterName=sclinbench-test
# Resolve this host to 127.0.0.1 so no DNS entry for '$HOST' is needed.
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups: track job processes via /proc, no task binding or confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No accounting database: sacct does not work, query jobs with squeue.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Keep finished jobs visible to squeue for 5 min (the snakemake slurm plugin
# needs MinJobAge >= 3 x its initial status-check delay to trust squeue).
MinJobAge=300
SchedulerType=sched/backfill
# Cores and memory are consumable: jobs requesting mem_mb share the node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Jobs that do not request memory get 1 GB per CPU (not the whole node).
DefMemPerCPU=1024
ReturnToService=2
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 $NODE_HW State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

CONF_CHANGED=0
if [[ -f $CONF ]] && cmp -s "$NEW_CONF" "$CONF"; then
    say "slurm.conf: $CONF unchanged (node $HOST: $NODE_HW)"
else
    [[ -f $CONF ]] && cp "$CONF" "$CONF.bak"
    install -m 0644 "$NEW_CONF" "$CONF"
    CONF_CHANGED=1
    say "slurm.conf: wrote $CONF (node $HOST: $NODE_HW; partition $PARTITION)"
fi

# --- 4. daemons -----------------------------------------------------------------
stop_daemon() {  # stop_daemon <name> <pidfile>
    if pid_alive "$2"; then
        kill "$(cat "$2")"
        for _ in $(seq 1 50); do pid_alive "$2" || break; sleep 0.1; done
        pid_alive "$2" && kill -9 "$(cat "$2")" 2>/dev/null || true
        say "$1: stopped"
    fi
    rm -f "$2"
}

if [[ $CONF_CHANGED -eq 1 ]]; then
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
fi
# A daemon this script did not start (e.g. by the package's init script) would
# hold the ports; refuse rather than guess which process to stop.
for daemon in slurmctld slurmd; do
    pidfile=$CTLD_PID; [[ $daemon == slurmd ]] && pidfile=$SLURMD_PID
    if command -v pgrep >/dev/null && ! pid_alive "$pidfile" && foreign=$(pgrep -x "$daemon"); then
        die "a $daemon not started by this script is running (pid $(echo $foreign)); stop it (kill $(echo $foreign)) and rerun"
    fi
done

if pid_alive "$CTLD_PID"; then
    say "slurmctld: already running (pid $(cat "$CTLD_PID"))"
else
    say "slurmctld: starting (log $LOG_DIR/slurmctld.log)"
    # -c: clean start, no job state from a previous test cluster is recovered.
    slurmctld -c || die "slurmctld failed to start; last log lines:
$(tail -n 20 "$LOG_DIR/slurmctld.log" 2>/dev/null)"
fi
for _ in $(seq 1 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
scontrol ping | grep -q UP || die "slurmctld does not answer 'scontrol ping'; last log lines:
$(tail -n 20 "$LOG_DIR/slurmctld.log" 2>/dev/null)"

if pid_alive "$SLURMD_PID"; then
    say "slurmd: already running (pid $(cat "$SLURMD_PID"))"
else
    say "slurmd: starting (log $LOG_DIR/slurmd.log)"
    slurmd || die "slurmd failed to start; last log lines:
$(tail -n 20 "$LOG_DIR/slurmd.log" 2>/dev/null)"
fi

# --- 5. wait for the node -------------------------------------------------------
state=""
deadline=$(( $(date +%s) + TIMEOUT ))
while (( $(date +%s) < deadline )); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1 | tr -d '*~#!%$@^-')
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        drained|draining|down)
            # e.g. left down by an earlier unclean stop: return it to service
            scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.2
done
case "$state" in
    idle|mixed|allocated|completing) ;;
    *) die "node $HOST is '$state' after ${TIMEOUT}s (reason: $(sinfo -h -n "$HOST" -o %E 2>/dev/null)); see $LOG_DIR/slurmd.log and $LOG_DIR/slurmctld.log" ;;
esac

say "ready in $(elapsed)s: node $HOST is $state"
sinfo
