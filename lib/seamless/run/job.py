"""Run a bash transformation in a fresh job directory.

Inputs are materialized from the buffer store: hard links (or symlinks across
filesystems) to the stored, read-only files; copies for executables (their mode must
change), for remote stores and where no link is possible. A job that writes into a
linked input anyway (root ignores 0444) is caught afterwards and its result refused.
Every pin name is checked to stay inside the job directory.

The job's stdout and stderr are drained by threads while it runs, stderr shown live,
so any amount of output never blocks it. SIGINT/SIGTERM kill its whole process group.
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

HEADER = "set -u -e\ntrap 'jobs -p | xargs -r kill 2>/dev/null' EXIT\n"
STDERR_TAIL = 8192
KILL_GRACE = 2.0


class JobError(Exception):
    """The job could not run, or failed; `code` is the exit status to report."""

    def __init__(self, message, code=1, stderr_tail=b""):
        super().__init__(message)
        self.code = code
        self.stderr_tail = stderr_tail


class Pin:
    """One input of a job: a file, a directory (with its deep index {relpath: checksum})
    or a value; kind is "file", "directory" or "value"."""

    def __init__(self, name, kind, checksum=None, index=None, value=None, executable=False):
        self.name, self.kind, self.checksum = name, kind, checksum
        self.index = index or {}
        self.value, self.executable = value, executable


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
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith("/") or ".." in parts or "" in parts[:-1]:
        raise JobError(f"input name {name!r} would be outside the job directory "
                       "(use -w/-W to choose the directory that paths are relative to)")
    return os.path.join(root, *[p for p in parts if p not in ("", ".")])


class Job:
    def __init__(self, stores, parent=None):
        self.stores = stores
        self.dir = tempfile.mkdtemp(prefix="seamless-job-", dir=parent)
        self.env = {}
        self._linked = []  # (store file, stamp) to check for in-place writes

    # --- inputs ---------------------------------------------------------------------

    def materialize(self, pins, code=""):
        executables = chmod_targets(code)
        for pin in sorted(pins, key=lambda p: p.name):
            pin.executable = pin.executable or pin.name in executables
            if pin.kind == "file":
                dest = safe_path(self.dir, pin.name)
                self._place(pin.checksum, dest, pin.executable, pin.name)
                self.env[pin.name] = pin.name
            elif pin.kind == "directory":
                root = safe_path(self.dir, pin.name)
                os.makedirs(root, exist_ok=True)
                for rel, cs in sorted(pin.index.items()):
                    self._place(cs, safe_path(root, rel), False, f"{pin.name}/{rel}")
                self.env[pin.name] = pin.name
            else:
                dest = safe_path(self.dir, pin.name)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "w") as f:
                    f.write(pin.value + "\n")
                if "." not in pin.name and len(pin.value) <= 1000:
                    self.env[pin.name] = pin.value

    def _place(self, cs, dest, executable, label):
        from seamless.store.directory import encoding_of

        os.makedirs(os.path.dirname(dest), exist_ok=True)
        source = self.stores.local_path(cs)
        if encoding_of(dest) is not None:  # a compressed input: stored uncompressed, recompressed here
            source = None
        if source is None:
            if not self.stores.get_to_file(cs, dest):
                raise JobError(f"input {label!r}: buffer {cs} is not in any store "
                               "(--fingertip recomputes buffers that a cached transformation produced)")
        elif executable or not _link(source, dest):
            shutil.copyfile(source, dest)  # its mode is about to change: never on the stored file
        else:
            st = os.stat(source)
            self._linked.append((source, cs, label, (st.st_size, st.st_mtime_ns), st.st_mode))
        if executable:
            os.chmod(dest, 0o755)

    def tampered(self):
        """Inputs whose stored file the job changed in place (then removed from the store).

        A mere mode change (chmod on a linked input) is undone instead.
        """
        bad = []
        for source, cs, label, stamp, mode in self._linked:
            try:
                st = os.stat(source)
            except FileNotFoundError:
                continue
            if (st.st_size, st.st_mtime_ns) != stamp:
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
        env = {**os.environ, **self.env}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(["/bin/bash", "-c", HEADER + setup + code], cwd=self.dir, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise JobError(f"cannot start /bin/bash: {exc.strerror}") from None
        tail = bytearray()
        out = stdout if stdout is not None else sys.stdout.buffer
        pumps = [
            threading.Thread(target=_pump, args=(proc.stdout, out, None), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, None if quiet else sys.stderr.buffer, tail),
                             daemon=True),
        ]
        for t in pumps:
            t.start()
        with _killing_on_signal(proc):
            code_ = proc.wait()
            for t in pumps:
                t.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        usage = {
            "wall_time_seconds": round(time.monotonic() - started, 6),
            "cpu_time_user_seconds": round(after.ru_utime - before.ru_utime, 6),
            "cpu_time_system_seconds": round(after.ru_stime - before.ru_stime, 6),
            "memory_peak_bytes": after.ru_maxrss * 1024,
        }
        if code_ != 0:
            code = code_ if code_ > 0 else 128 - code_  # killed by a signal: shell convention
            raise JobError(f"the command failed with exit code {code}", code, bytes(tail))
        bad = self.tampered()
        if bad:
            raise JobError(f"the command wrote into its input(s) {', '.join(bad)} in place; those are "
                           "shared cached files, so they were removed from the cache and nothing was kept. "
                           "Copy an input before modifying it.")
        return usage

    def result_path(self):
        return os.path.join(self.dir, "RESULT")

    def cleanup(self):
        try:
            shutil.rmtree(self.dir)
        except OSError:  # the job left read-only directories behind
            for root, dirs, _ in os.walk(self.dir):
                for d in dirs:
                    os.chmod(os.path.join(root, d), stat.S_IRWXU)
            shutil.rmtree(self.dir, ignore_errors=True)


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
    """While the job runs, SIGINT/SIGTERM kill its process group and interrupt us."""

    def __init__(self, proc):
        self.proc = proc

    def __enter__(self):
        self.saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self.saved[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, exc_type, exc, tb):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if self.proc.poll() is None:
            _kill_group(self.proc)
        return False


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _link(source, dest) -> bool:
    for make in (os.link, os.symlink):  # a symlink when the job dir is on another filesystem
        try:
            make(source, dest)
            return True
        except OSError:
            pass
    return False
