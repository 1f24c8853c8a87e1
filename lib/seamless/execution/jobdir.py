"""A job directory: where a bash transformation runs, and the process that runs it.

Inputs are materialized from the buffer store: hard links (or symlinks across
filesystems) to the stored, read-only files; copies for executables (their mode must
change), for remote stores and where no link is possible. A job that writes into a
linked input anyway (root ignores 0444) is caught afterwards and its result refused.
Every pin name is checked to stay inside the job directory.

The job's stdout and stderr are drained by threads while it runs, stderr shown live,
so any amount of output never blocks it. SIGINT/SIGTERM kill its whole process group.

A cancel, from this process (kill) or another one (cancel_job: seamless-cancel), leaves
a DIR.cancel marker beside the job and stops its processes; seeing the marker, the
owner fails the job with CANCELED (exit status CANCEL_EXIT) and keeps nothing.
"""

import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

from seamless.execution import latch
from seamless.execution.job import JobError

HEADER = "set -u -e\ntrap 'jobs -p | xargs -r kill 2>/dev/null' EXIT\n"
STDERR_TAIL = 8192
KILL_GRACE = 2.0
CANCEL_SUFFIX = ".cancel"
CANCEL_EXIT = 130  # as an interrupt: it was stopped from outside (seamless-run(1), EXIT STATUS)
CANCELED = "the command was canceled; nothing was kept"


class Pin:
    """One input of a job: a file, a directory (with its deep index {relpath: checksum})
    or a value (kind "file", "directory", "value"). A value is written as `data`; its
    text `value`, if any, is also exported when short, or always (`always_export`)."""

    def __init__(self, name, kind, checksum=None, index=None, value=None, data=None, executable=False,
                 always_export=False):
        self.name, self.kind, self.checksum = name, kind, checksum
        self.index = index or {}
        self.value, self.data, self.executable = value, data, executable
        self.always_export = always_export


def chmod_targets(code) -> set:
    """Pin names that the generated code makes executable (they must be copies)."""
    import shlex

    for line in code.splitlines()[:3]:
        if line.startswith("chmod +x "):
            try:
                return set(shlex.split(line[len("chmod +x "):]))
            except ValueError:
                return set()
    return set()


def safe_path(root, name) -> str:
    """root/name, refusing names that could land outside root."""
    from seamless.files import UnsafePath, inside

    try:
        return inside(root, name)
    except UnsafePath:
        raise JobError(f"input name {name!r} would be outside the job directory "
                       "(use -w/-W to choose the directory that paths are relative to)") from None


class Job:
    def __init__(self, stores, parent=None):
        self.stores = stores
        self.dir, self._lock = _claim_directory(parent)
        self.env = {}
        self._linked = []  # (store file, cs, label, stamp, mode) to check for in-place writes
        self._proc = None  # the job's shell while it runs
        self._placed = {}  # job path -> checksum of the input file placed there

    # --- inputs ---------------------------------------------------------------------

    def materialize(self, pins, code=""):
        executables = chmod_targets(code)
        for pin in sorted(pins, key=lambda p: p.name):
            pin.executable = pin.executable or pin.name in executables
            if pin.kind == "file":
                dest = safe_path(self.dir, pin.name)
                self._place(pin.checksum, dest, pin.executable, pin.name)
                self._export(pin.name, pin.name)
            elif pin.kind == "directory":
                root = safe_path(self.dir, pin.name)
                os.makedirs(root, exist_ok=True)
                for rel, cs in sorted(pin.index.items()):
                    self._place(cs, safe_path(root, rel), False, f"{pin.name}/{rel}")
                self._export(pin.name, pin.name)
            else:
                dest = safe_path(self.dir, pin.name)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "wb") as f:
                    f.write(pin.data)
                if pin.value is not None and (pin.always_export or ("." not in pin.name and len(pin.value) <= 1000)):
                    self._export(pin.name, pin.value)

    def _export(self, name, value):
        if "=" not in name and "\0" not in name and "\0" not in value:  # else not an environment entry
            self.env[name] = value

    def _place(self, cs, dest, executable, label):
        placed = self._placed.get(dest)
        if placed is not None:  # also inside another input (d and d/sub): one file, if they agree
            if placed != cs:
                raise JobError(f"two inputs disagree about {label!r} ({placed} and {cs}): refresh their "
                               ".CHECKSUM/.INDEX sidecars")
            return
        self._placed[dest] = cs
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        # only a stored file whose bytes are verified is linked; copies are verified on the way
        found = None if executable else self.stores.verified_local(cs)
        if found is not None and _link(found[0], dest):
            st = os.stat(dest)  # after linking: a new link changes the inode's ctime
            self._linked.append((found[0], cs, label, _stamp(st), st.st_mode))
        elif not self.stores.get_to_file(cs, dest):
            raise JobError(f"input {label!r}: buffer {cs} is not in any store "
                           "(--fingertip recomputes buffers that a cached transformation produced)")
        if executable:
            os.chmod(dest, 0o755)  # a copy: the stored file's mode never changes

    def tampered(self):
        """Inputs whose stored file the job changed in place (then removed from the store).

        Any change to a linked file's inode, size, mtime or ctime (a write that restores
        the mtime still moves the ctime) means its bytes are hashed again; a concurrent job
        linking the same file moves the ctime too, and passes. A mere mode change (chmod
        on a linked input) is undone.
        """
        from seamless.checksum import checksum_file

        bad = []
        for source, cs, label, stamp, mode in self._linked:
            try:
                st = os.stat(source)
                intact = _stamp(st) == stamp or checksum_file(source) == cs
            except FileNotFoundError:
                continue
            if not intact:
                bad.append(label)
                for store in self.stores.buffer_write:
                    if getattr(store, "plain_path", None) and store.plain_path(cs) == source:
                        store.remove(source)
            elif st.st_mode != mode:
                try:
                    os.chmod(source, stat.S_IMODE(mode))
                except OSError:
                    pass
        return bad

    # --- running --------------------------------------------------------------------

    def run(self, code, quiet=False, stdout=None, setup=""):
        """Run the code; raise JobError on failure. Returns resource usage of the job."""
        env = {**os.environ, **self.env, MARKER: self.dir}  # inherited by all it starts, setsid or not
        latch.note_job(self.dir)  # where seamless-cancel finds it
        try:
            return self._run(code, quiet, stdout, setup, env)
        finally:
            latch.note_job(None)

    def _run(self, code, quiet, stdout, setup, env):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        self._check_canceled()
        try:
            proc = subprocess.Popen(["/bin/bash", "-c", HEADER + setup + code], cwd=self.dir, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise JobError(f"cannot start /bin/bash: {exc.strerror}") from None
        self._proc = proc
        tail = bytearray()
        out = stdout if stdout is not None else sys.stdout.buffer
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, out, None), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, None if quiet else sys.stderr.buffer, tail),
                             daemon=True),
        ]
        for t in pumps:
            t.start()
        try:
            with _killing_on_signal(proc, pumps, self.dir):
                _wait_unreaped(proc)
            code_, own = _reap(proc)
        finally:
            bad = self.tampered()  # however it ended: a damaged stored input never stays
        self._check_canceled()  # however it ended: a canceled job's output is not its result
        if own is None:  # reaped elsewhere: what this process's children used meanwhile
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            own = (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, after.ru_maxrss)
        usage = {
            "wall_time_seconds": round(time.monotonic() - started, 6),
            "cpu_time_user_seconds": round(own[0], 6),
            "cpu_time_system_seconds": round(own[1], 6),
            "memory_peak_bytes": own[2] * 1024,
            "pid": proc.pid,
        }
        if quiet and tail:  # not shown live: whoever runs it may pass it on
            usage["stderr"] = tail.decode(errors="replace")
        damage = (f"the command wrote into its input(s) {', '.join(bad)} in place; those are shared cached "
                  "files, so they were removed from the cache and nothing was kept. Copy an input before "
                  "modifying it.") if bad else ""
        if code_ != 0:
            code = code_ if code_ > 0 else 128 - code_  # killed by a signal: shell convention
            raise JobError(f"the command failed with exit code {code}" + (f"; {damage}" if bad else ""),
                           code, bytes(tail))
        if bad:
            raise JobError(damage)
        return usage

    def _check_canceled(self):
        if os.path.exists(self.dir + CANCEL_SUFFIX):
            raise JobError(CANCELED, CANCEL_EXIT)

    def kill(self):
        """Cancel the job from this process (as cancel_job does from another): its
        process group goes, the run fails with CANCELED."""
        if self._lock is None:  # over already
            return
        _mark_canceled(self.dir)
        proc = self._proc
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass

    def result_path(self):
        return os.path.join(self.dir, "RESULT")

    def cleanup(self):
        _remove_tree(self.dir)
        self.release()

    def release(self):
        """Give up the job directory's ownership (it was removed, or moved elsewhere)."""
        if self._lock is not None:
            _unlink(self.dir + CANCEL_SUFFIX)
            _unlink(self.dir + LOCK_SUFFIX)
            os.close(self._lock)
            self._lock = None


# --- ownership of job directories ----------------------------------------------------
# Each job directory D has a lock file D.lock beside it, locked (flock) by its owner for
# as long as it lives. A killed owner (kill -9) releases the lock with its last breath,
# so whoever starts the next job in that parent finds D.lock lockable and removes D.

LOCK_SUFFIX = ".lock"
JOB_PREFIX = "seamless-job-"


def _claim_directory(parent):
    """A new private job directory under parent, and the held lock that says it is ours."""
    import fcntl

    parent = parent or tempfile.gettempdir()
    sweep_dead_jobs(parent)
    while True:
        fd, lock = tempfile.mkstemp(prefix=JOB_PREFIX, suffix=LOCK_SUFFIX, dir=parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        directory = lock[: -len(LOCK_SUFFIX)]
        try:
            os.mkdir(directory, 0o700)
            _unlink(directory + CANCEL_SUFFIX)  # a cancel that came too late for an earlier job of this name
            return directory, fd
        except FileExistsError:  # a leftover without its lock: not ours, take another name
            os.close(fd)
            _unlink(lock)


def sweep_dead_jobs(parent) -> int:
    """Remove the job directories under parent whose owner is dead; returns how many."""
    import fcntl

    removed = 0
    try:
        names = os.listdir(parent)
    except OSError:
        return 0
    for name in names:
        if not (name.startswith(JOB_PREFIX) and name.endswith(LOCK_SUFFIX)):
            continue
        lock = os.path.join(parent, name)
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its owner is alive
            os.close(fd)
            continue
        try:
            if os.path.exists(lock):  # not already swept by someone else while we waited
                for pid in marked_processes(lock[: -len(LOCK_SUFFIX)]):  # what the killed run left running
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                _remove_tree(lock[: -len(LOCK_SUFFIX)])
                _unlink(lock[: -len(LOCK_SUFFIX)] + CANCEL_SUFFIX)
                _unlink(lock)
                removed += 1
        finally:
            os.close(fd)
    return removed


def cancel_job(job_dir) -> bool:
    """Cancel the job running in job_dir, owned by any process of this user: its owner
    is told (the marker), then its processes get SIGTERM, and SIGKILL after a grace
    period. False when no job runs there (its owner is gone, or it is not a job)."""
    import fcntl

    if not os.path.basename(job_dir).startswith(JOB_PREFIX):
        return False
    try:
        fd = os.open(job_dir + LOCK_SUFFIX, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False  # lockable: its owner is gone
        except BlockingIOError:
            pass
        _mark_canceled(job_dir)
    finally:
        os.close(fd)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = marked_processes(job_dir)
        if sig == signal.SIGTERM:
            # frozen first, so that every process has the signal before any runs again: a shell
            # that outlived its killed child would say "Terminated" on the user's terminal
            for step in (signal.SIGSTOP, signal.SIGTERM, signal.SIGCONT):
                _signal(pids, step)
        else:
            _signal(pids, sig)
        deadline = time.monotonic() + KILL_GRACE
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = marked_processes(job_dir)
        if not pids:
            break
    return True


def _signal(pids, sig):
    """Each process group at once, then every process (those that left their group too)."""
    for kill, pid in [(os.killpg, pid) for pid in pids if _leads_group(pid)] + [(os.kill, pid) for pid in pids]:
        try:
            kill(pid, sig)
        except OSError:
            pass


def _leads_group(pid) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _mark_canceled(job_dir):
    try:
        os.close(os.open(job_dir + CANCEL_SUFFIX, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        pass


def _remove_tree(path):
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError:  # the job left read-only directories behind
        for root, dirs, _ in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), stat.S_IRWXU)
        shutil.rmtree(path, ignore_errors=True)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _pump(stream, sink, tail):
    """Copy a pipe to a sink as data arrives; keep the last bytes in `tail`."""
    try:
        while chunk := stream.read1(65536):
            if sink is not None:
                try:
                    sink.write(chunk)
                    sink.flush()
                except (OSError, ValueError):
                    sink = None  # our reader went away: keep draining
            if tail is not None:
                tail += chunk
                del tail[:-STDERR_TAIL]
    finally:
        stream.close()


class _killing_on_signal:
    """While the job runs, SIGINT/SIGTERM kill its process group and interrupt us. However
    the job ends, what it left running in the background is killed with it."""

    def __init__(self, proc, pumps, marker):
        self.proc, self.pumps, self.marker = proc, pumps, marker

    def __enter__(self):
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self.saved[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, exc_type, exc, tb):
        try:
            _end_group(self.proc, self.pumps, self.marker)
        finally:
            for sig, handler in self.saved.items():
                signal.signal(sig, handler)
        return False


def _wait_unreaped(proc):
    """Wait for the job's shell to exit but leave it unreaped, so that its pid, which is
    also its process group's id, cannot be reused before the group is killed."""
    if hasattr(os, "waitid"):
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    else:
        proc.wait()


def _reap(proc):
    """(exit status, (user s, system s, peak RSS KiB) of the job's shell and what it waited
    for): its own figures, not those of every child this process ever had (a long-lived
    worker runs many jobs at once, and once had larger children)."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:
        return proc.wait(), None
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, (usage.ru_utime, usage.ru_stime, usage.ru_maxrss)


def _end_group(proc, pumps, marker):
    """SIGTERM the job's process group and whatever else carries the job's mark (a
    process that left the group with setsid, or daemonized), then SIGKILL them once our
    pipes are closed (or after a grace period): nothing outlives the job or holds us up."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for kill, pid in [(os.killpg, proc.pid)] + [(os.kill, p) for p in marked_processes(marker)]:
            try:
                kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + KILL_GRACE
        for t in pumps:
            t.join(max(0.0, deadline - time.monotonic()))


# A job's processes carry SEAMLESS_JOB=<its directory> in their environment, which they
# inherit whatever they do to their session or process group.
MARKER = "SEAMLESS_JOB"


def marked_processes(job_dir) -> list:
    """The pids of this user's processes whose environment says they belong to job_dir."""
    needle = f"{MARKER}={job_dir}".encode()
    found = []
    me, uid = os.getpid(), os.getuid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:  # no /proc: only the process group can be ended
        return found
    for pid in pids:
        try:
            if pid == me or os.stat(f"/proc/{pid}").st_uid != uid:
                continue  # a cheap stat spares reading the environment of others' processes
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(pid)
        except OSError:  # gone, or another user's
            pass
    return found


def _stamp(st):
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _link(source, dest) -> bool:
    for make in (os.link, os.symlink):  # a symlink when the job dir is on another filesystem
        try:
            make(source, dest)
            return True
        except OSError:
            pass
    return False
