#!/usr/bin/env bash
# stop-slurm.sh DIR: stop the SLURM that start-slurm.sh DIR started. Cancels its jobs
# (so that no job process survives), then stops only the daemons whose PIDs it
# recorded. Idempotent; DIR itself is left for the logs (PURGE=1 removes it).
set -uo pipefail
PROG=stop-slurm
[ $# = 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$(realpath -m "$1")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"
export SLURM_CONF=$DIR/slurm.conf
STOP_TIMEOUT=${STOP_TIMEOUT:-20}

[ -d "$DIR/pids" ] || { log "nothing to stop in $DIR"; exit 0; }
active() { timeout 5 squeue -h -o %i -t PD,R,CG,S,CF 2>/dev/null; }
if recorded_pid slurmctld >/dev/null && recorded_pid slurmd >/dev/null; then
    jobs=$(active | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        timeout 5 scancel $jobs 2>/dev/null
        for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do [ -z "$(active)" ] && break; sleep 0.2; done
        [ -z "$(active)" ] || log "warning: jobs still active after ${STOP_TIMEOUT}s: $(active | tr '\n' ' ')"
    fi
fi
stop_watchdog
stop_recorded slurmd
stop_recorded slurmctld
stop_recorded munged
[ "${PURGE:-0}" = 1 ] && rm -rf "$DIR" && log "removed $DIR"
exit 0
