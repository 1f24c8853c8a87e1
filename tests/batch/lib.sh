# Shared by start-*.sh and stop-*.sh (sourced; PROG and DIR set by the caller).
# Daemons run in the foreground of a background subshell, their PIDs recorded in
# $DIR/pids/NAME.pid; a stop only ever signals a recorded PID whose command line
# still contains the pattern it was started with (a reused PID is left alone).

export PATH=$PATH:/usr/sbin:/sbin

log() { echo "[$PROG] $*" >&2; }
die() { log "error: $*"; exit 1; }

# ensure_packages PKG...: install the missing Debian packages (root only). Service starts
# are denied while installing (no daemon of the packages' own may run: ours use $DIR).
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return 0
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
        die "missing Debian packages ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
    log "installing ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d made=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made=1; fi
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -y -qq)  # another install may hold the lock
    local rc=0
    { "${apt[@]}" update && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}"; } \
        >"$DIR/log/apt.log" 2>&1 || rc=$?
    [ $made = 1 ] && rm -f "$policy"
    [ $rc = 0 ] || { tail -n 20 "$DIR/log/apt.log" >&2; die "apt-get install ${missing[*]} failed (log: $DIR/log/apt.log)"; }
}

# a TCP port nobody listens on (the kernel's pick, released at once)
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# start_bg NAME PATTERN CMD...: run CMD in the background (fd 9, a lock, not inherited)
start_bg() {
    local name=$1 pattern=$2; shift 2
    ( cd "$DIR" && exec nohup "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 9>&- ) &
    echo "$!" > "$DIR/pids/$name.pid"
    printf '%s\n' "$pattern" > "$DIR/pids/$name.pattern"
    log "started $name (pid $!)"
}
# recorded_pid NAME: its PID, if it still runs what was started
recorded_pid() {
    local f=$DIR/pids/$1.pid p
    [ -s "$f" ] && [ -s "$DIR/pids/$1.pattern" ] || return 1
    p=$(cat "$f")
    { tr '\0' ' ' < "/proc/$p/cmdline"; } 2>/dev/null | grep -qF -- "$(cat "$DIR/pids/$1.pattern")" && echo "$p"
}
running() { [ -n "$({ tr -d '\0' < "/proc/$1/cmdline"; } 2>/dev/null)" ]; }  # false for zombies
# stop_recorded NAME [SIGNAL]: signal, wait up to $STOP_TIMEOUT s, then SIGKILL
stop_recorded() {
    local name=$1 sig=${2:-TERM} p i
    if p=$(recorded_pid "$name"); then
        kill -"$sig" "$p" 2>/dev/null
        for ((i = 0; i < ${STOP_TIMEOUT:-20} * 10; i++)); do running "$p" || break; sleep 0.1; done
        if running "$p"; then log "$name (pid $p) ignored SIG$sig, sending SIGKILL"; kill -KILL "$p" 2>/dev/null; fi
        log "stopped $name (pid $p)"
    fi
    rm -f "$DIR/pids/$name.pid" "$DIR/pids/$name.pattern"
}

DEADLINE=$(( $(date +%s) + ${START_TIMEOUT:-60} ))
# wait_for NAME DESCRIPTION CMD...: until CMD succeeds, or fail (the caller's fail: logs,
# stop) once the daemon NAME has died or the start's time is up
wait_for() {
    local name=$1 what=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        recorded_pid "$name" >/dev/null || fail "$name died"
        [ "$(date +%s)" -lt "$DEADLINE" ] || fail "timed out after ${START_TIMEOUT:-60}s waiting for $what"
        sleep 0.2
    done
}
# show_logs FILE...: the tails of the logs that exist, for a failure message
show_logs() {
    local f
    for f in "$@"; do
        [ -s "$DIR/log/$f" ] && { log "--- tail $DIR/log/$f"; tail -n 15 "$DIR/log/$f" >&2; }
    done
    return 0
}

# the PID's start time (field 22 of /proc/PID/stat; the name in parentheses may hold spaces)
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# With OWNER_PID set (the test session), a watchdog stops the cluster once that process is
# gone, so that not even a killed session leaves daemons behind. The watchdog also holds
# fd 9 (start-oar.sh's lock) until the cluster is stopped.
start_watchdog() {  # start_watchdog STOP_SCRIPT
    local owner=${OWNER_PID:-} since=""
    if [ -n "$owner" ]; then
        since=$(starttime "$owner")
        [ -n "$since" ] || die "owner process $owner is not running"
    fi
    ( exec bash "$HERE/watchdog.sh" "$DIR" "$1" "$owner" "$since" </dev/null >>"$DIR/log/watchdog.out" 2>&1 ) &
    echo "$!" > "$DIR/pids/watchdog.pid"
    printf '%s\n' "watchdog.sh $DIR " > "$DIR/pids/watchdog.pattern"
}
stop_watchdog() {  # unless it is the watchdog that runs this stop
    local p
    if p=$(recorded_pid watchdog) && [ "$p" != "$PPID" ]; then stop_recorded watchdog; fi
    rm -f "$DIR/pids/watchdog.pid" "$DIR/pids/watchdog.pattern"
}
