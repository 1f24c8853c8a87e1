"""SEAMLESS_SUMMARY=1: one line on stderr when a script of seamless-run steps ends,
saying how many steps ran, how many were cached and about how much time that saved.

Each seamless-run is a process of its own, so the steps of a script meet in a file:
each appends one JSON line about itself to the file of its job, that is its process
group (job control makes a script, or a pipeline, one; sbatch makes the batch script
one), named by the group leader's pid and start time so that a recycled pid is never
taken for it, in a private directory. The step that creates the file starts the
watcher (watch(), this module's program), which waits for the leader to exit, prints
the line on the leader's stderr and deletes the file. A seamless-run that leads its
own job (typed at the prompt) prints its line itself (not with -q), and so does one
whose leader is an interactive shell (`$(seamless-run ...)` at the prompt): that shell
ends too late. A leader that finds earlier steps in its job's file is the end of a script
whose shell exec'd its last command in place (`bash -c 'a; b'`, `sbatch --wrap`): it
prints the script's line, even with -q (that silences the step, not the script).
A nested non-interactive script (`bash inner.sh` inside a script) has no job of its own:
its steps count in the outer job's one line.
Only the standard library, and nothing at all when SEAMLESS_SUMMARY is unset.
"""

import json
import os
import stat
import sys
import time

OFF = ("", "0", "no", "false", "off")
POLL = 0.1  # seconds between looks at the leader where no pidfd tells when it exits
STALE = 60.0  # seconds after which a file whose leader is gone is left over
_warned = []


def enabled() -> bool:
    return os.environ.get("SEAMLESS_SUMMARY", "").strip().lower() not in OFF


def duration(seconds: float) -> str:
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def original_seconds(stores, tf):
    """How long the cached result took to compute, from its execution record (or None)."""
    for db in stores.db_read:
        try:
            record = db.get_metadata(tf)
        except Exception:  # provenance only: a hit never fails over it
            continue
        if isinstance(record, dict):
            value = record.get("wall_time_seconds")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                return float(value)
    return None


def line(steps) -> str:
    """The summary of steps (dicts: outcome "cached", "executed" or "failed"; seconds; saved)."""
    by = {outcome: [s for s in steps if s.get("outcome") == outcome] for outcome in ("cached", "executed", "failed")}
    parts = []
    if by["cached"]:
        parts.append(f"{len(by['cached'])} cached")
    if by["executed"]:
        ran = sum(_number(s.get("seconds")) for s in by["executed"])
        parts.append(f"{len(by['executed'])} executed ({duration(ran)})")
    if by["failed"]:
        parts.append(f"{len(by['failed'])} failed")
    text = f"seamless: {len(steps)} step{'' if len(steps) == 1 else 's'}: " + ", ".join(parts)
    known = [_number(s.get("saved")) for s in by["cached"] if s.get("saved") is not None]
    if known:
        text += f"; about {duration(sum(known))} saved"
    return text


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def record(step: dict, quiet=False):
    """Count one step of the job this seamless-run belongs to (see the module's doc)."""
    leader = os.getpgrp()
    info = _proc_stat(leader)
    folder = None
    if info is not None and leader != os.getpid() and not (info["session"] == leader and info["tty"]):
        folder = _directory()
    if folder is None:  # its own job, an interactive shell's, no /proc, or no private place: say it now
        path = _path(_directory(), leader, info) if leader == os.getpid() and info is not None else None
        # a leader with steps before it is a script's last step that the shell exec'd (`bash -c
        # 'a; b'`, sbatch --wrap) or a pipeline's last: the line is the script's, -q or not
        earlier = _take(path) if path else []
        if earlier or not quiet:
            sys.stderr.write(line(earlier + [step]) + "\n")
        return
    path = _path(folder, leader, info)
    data = (json.dumps(step) + "\n").encode()
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        first = True
    except FileExistsError:
        try:
            fd, first = os.open(path, flags), False
        except OSError:
            return
    except OSError:
        return
    try:
        os.write(fd, data)  # one short O_APPEND write: concurrent steps do not interleave
    finally:
        os.close(fd)
    if first:
        _spawn_watcher(path, leader, info["start"])


def _path(folder, leader, info):
    return None if folder is None else os.path.join(folder, f"{leader}-{info['start']}.jsonl")


def _directory():
    """The private directory of the steps' files, made if needed; None if it cannot be had
    or is not private (someone else's, or a link): nothing is ever written there."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        path = os.path.join(runtime, "seamless-summary")
    else:
        path = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"seamless-summary-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
        return path
    if not _warned:
        _warned.append(path)
        sys.stderr.write(f"seamless-run: warning: {path} is not a private directory of yours, so "
                         "SEAMLESS_SUMMARY counts no step there: remove it\n")
    return None


def _proc_stat(pid):
    """What /proc says of a process (state, ppid, pgrp, session, tty, start), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()  # after the command name, which may hold anything
        return {"state": fields[0].decode(), "pgrp": int(fields[2]), "session": int(fields[3]),
                "tty": int(fields[4]), "start": int(fields[19])}
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid, start) -> bool:
    info = _proc_stat(pid)
    return info is not None and info["start"] == start and info["state"] not in ("Z", "X")


def _spawn_watcher(path, leader, start):
    """Start watch() in the background: stdin and stdout /dev/null, stderr the leader's
    (where the script's own messages go), else this one's. posix_spawn: no subprocess import."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]
    try:
        err = os.open(f"/proc/{leader}/fd/2", os.O_WRONLY | os.O_APPEND | os.O_NOCTTY)
    except OSError:  # closed, a socket, or unreadable: ours will do
        err = None
    if err is not None:
        actions.append((os.POSIX_SPAWN_DUP2, err, 2))
    # not -m: that would put the current directory first on sys.path, where a `seamless` may be
    code = "import sys; del sys.path[0]; from seamless.run.summary import watch; watch(*sys.argv[1:])"
    try:
        os.posix_spawn(sys.executable, [sys.executable, "-c", code, path, str(leader), str(start)],
                       os.environ, file_actions=actions)
    except OSError:
        pass  # no summary, but the step itself stands
    finally:
        if err is not None:
            os.close(err)


def watch(path, leader, start):
    """The watcher: wait until the job's leader exits, then print the summary line."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a script stopped by Ctrl-C still gets its line
    for fd in os.listdir("/proc/self/fd"):  # inherited descriptors: no pipe is kept open by us
        if int(fd) > 2:
            try:
                os.close(int(fd))
            except OSError:
                pass
    leader, start = int(leader), int(start)
    _clean(os.path.dirname(path), path)
    _wait(leader, start)
    steps = _take(path)
    if steps:
        sys.stderr.write(line(steps) + "\n")
        sys.stderr.flush()


def _wait(pid, start):
    fd = None
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # before Linux 5.3, or Python 3.9: look now and then
        pass
    try:
        if fd is not None and _alive(pid, start):  # the pidfd is the leader's, not a recycled pid's
            import select

            select.select([fd], [], [])
            return
        while _alive(pid, start):
            time.sleep(POLL)
    finally:
        if fd is not None:
            os.close(fd)


def _take(path):
    """The steps recorded in path, which is removed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
    except OSError:
        return []
    steps = []
    for text in data.splitlines():
        try:
            step = json.loads(text)
        except ValueError:
            continue
        if isinstance(step, dict):
            steps.append(step)
    return steps


def _clean(folder, keep):
    """Remove the files of jobs whose leader is long gone without a watcher to print them
    (killed, say); not a fresh one, whose watcher may be reading it right now."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        pid, _, rest = name.partition("-")
        start = rest[: -len(".jsonl")] if rest.endswith(".jsonl") else ""
        path = os.path.join(folder, name)
        if path == keep or not (pid.isdigit() and start.isdigit()) or _alive(int(pid), int(start)):
            continue
        try:
            if time.time() - os.lstat(path).st_mtime > STALE:
                os.unlink(path)
        except OSError:
            pass
