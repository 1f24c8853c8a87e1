#!/usr/bin/env bash
# watchdog.sh DIR STOP_SCRIPT [OWNER_PID OWNER_STARTTIME]: started by start-*.sh. Waits
# until the owner process is gone (without an owner: until killed), then runs the stop.
PROG=watchdog DIR=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"
while [ -z "${3:-}" ] || [ "$(starttime "$3")" = "$4" ]; do sleep 2 9>&-; done
log "owner $3 is gone: stopping the cluster"
"$2" "$DIR" 9>&-
