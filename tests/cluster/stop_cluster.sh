#!/usr/bin/env bash
# Stop the one-node SLURM test cluster started by tests/cluster/start_cluster.sh.
#
# Stops slurmd, slurmctld and munged by the pids in their pidfiles (never by
# process name). Cancels any remaining jobs first. Packages, /etc/slurm/slurm.conf
# and the munge key are left in place, so the next start takes seconds.
# Set STOP_MUNGE=0 to leave munged running.
set -uo pipefail

RUN_DIR=/run/slurm
MUNGE_PID=/run/munge/munged.pid

say() { printf '[stop_cluster] %s\n' "$*"; }

stop_pidfile() {  # stop_pidfile <name> <pidfile>
    local pid
    if [[ -s "$2" ]] && pid=$(cat "$2") && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null
            say "$1: killed (pid $pid did not stop within 5 s)"
        else
            say "$1: stopped (pid $pid)"
        fi
    else
        say "$1: not running"
    fi
    rm -f "$2"
}

[[ $(id -u) -eq 0 ]] || { say "must run as root"; exit 1; }

if command -v scancel >/dev/null && scontrol ping 2>/dev/null | grep -q UP; then
    jobs=$(squeue --noheader --format=%i 2>/dev/null | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null && say "cancelled jobs: $jobs"
    fi
fi
stop_pidfile slurmd "$RUN_DIR/slurmd.pid"
stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
if [[ ${STOP_MUNGE:-1} != 0 ]]; then
    stop_pidfile munged "$MUNGE_PID"
fi
