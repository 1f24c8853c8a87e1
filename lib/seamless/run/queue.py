"""The queue file of `seamless-run --qsubmit` and seamless-queue: upstream's protocol.

A queue file ($SEAMLESS_QUEUE_FILE, default .seamless-queue) is a sequence of records,
each `json.dumps(record, indent=2)` followed by a NUL byte (JSON never contains one):

  {"queue_command": "SUBMIT", "original_command": "seamless-run ...",
   "original_argv": ["seamless-run", ...],
   "transformation_checksum": CS, "transformation_dict": {...},
   "result_targets": {job path: local path or null (the same), "STDOUT": local path},
   "params": {"undo", "scratch", "workdir", "download", "auto_confirm": "yes"|"no",
              "capture_stdout", "max_download_size", "max_download_files"},
   "seamless_options": {"local", "fingertip", "project", "stage", "queue"}}
  {"queue_command": "EOF", "reply_pid": PID}

`original_argv`, `seamless_options` and `reply_pid` are ours; readers ignore keys they do
not know. `original_command` is upstream's, unquoted ("seamless-run " + " ".join(argv)), so
messages name a command by its shlex-quoted original_argv when there is one. Local paths
are relative to the record's workdir and must stay inside it.

A writer appends a record in one write() while it holds an flock on the queue file
(serializing our writers, released by the kernel if one dies) and QUEUEFILE.LOCK
(upstream's lock: created here with O_EXCL, broken when older than 30 s), so that no
reader ever sees part of a record. seamless-queue keeps QUEUEFILE.RUNNING (its pid,
refreshed every few seconds) while it serves the file, and answers an EOF record that
has a reply_pid in QUEUEFILE.DONE.<pid>.
"""

import fcntl
import json
import os
import shlex
import socket
import stat
import threading
import time
from contextlib import contextmanager

from seamless.files import UnsafePath, atomic_write, inside, within

LOCK_STALE = 30.0  # upstream breaks a QUEUEFILE.LOCK older than this
HEARTBEAT = 2.0  # seamless-queue refreshes QUEUEFILE.RUNNING this often
HEARTBEAT_STALE = 15.0  # ...and is gone when it has not for this long


class QueueError(ValueError):
    """A record that cannot be run, or a queue file that cannot be used; the text says why."""


def queue_path(environ=None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get("SEAMLESS_QUEUE_FILE") or ".seamless-queue"


def encode(record) -> bytes:
    return json.dumps(record, indent=2).encode() + b"\0"


# --- writing ---------------------------------------------------------------------------------


def append(path, record) -> None:
    """Append one record, whole or not at all."""
    data = encode(record)
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:  # the queue finished and deleted it: a new queue file
                continue
            with _upstream_lock(path + ".LOCK"):
                size = os.fstat(fd).st_size
                try:
                    if os.write(fd, data) != len(data):
                        raise OSError(28, "short write (is the disk full?)", path)
                except OSError:
                    os.ftruncate(fd, size)  # no partial record: it would spoil the next one too
                    raise
            return
        finally:
            os.close(fd)


@contextmanager
def _upstream_lock(lockpath):
    """Hold QUEUEFILE.LOCK, as upstream's writers do (they wait while it exists).

    Only our writers that hold the queue file's flock get here, one at a time, so
    breaking a stale lock (a writer died holding it) cannot remove a fresh one of ours."""
    while True:
        try:
            os.close(os.open(lockpath, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            break
        except FileExistsError:
            try:
                age = time.time() - os.stat(lockpath).st_mtime
            except FileNotFoundError:
                continue
            if age > LOCK_STALE:
                _unlink(lockpath)
                continue
            time.sleep(0.05)
    try:
        yield
    finally:
        _unlink(lockpath)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def submit_record(spec, argv, options, scratch=False, download=True, answer=None) -> dict:
    """seamless-run --qsubmit's record of a prepared command (run/transformation.py's spec);
    local paths relative to the current directory, which must hold them all."""
    from seamless.transfer import LIMITS, parse_size

    workdir = os.getcwd()
    targets = {}
    for target in spec["targets"]:
        rel = os.path.relpath(os.path.abspath(target.local), workdir)
        if rel == ".." or rel.startswith("../"):
            raise QueueError(f"the result {target.local!r} is outside the current directory, where the "
                             "queue writes results: run seamless-run --qsubmit from a directory above it")
        if not all(within(workdir, p) for p in (target.local, target.local + ".FUTURE")):
            raise QueueError(f"the result {target.local!r} is reached through a symlink that leaves the current "
                             "directory, and the queue would refuse it: remove the link or name another file")
        if target.server == "STDOUT" and "STDOUT" in targets:
            raise QueueError("a queued command's stdout can be captured into one file only (one -cp :FILE)")
        targets[target.server] = None if rel == target.server else rel
    max_files, max_size = LIMITS["download"]
    return {
        "queue_command": "SUBMIT",
        "original_command": "seamless-run " + " ".join(argv),  # upstream's key, as upstream writes it
        "original_argv": ["seamless-run", *argv],
        "transformation_checksum": spec["checksum"],
        "transformation_dict": spec["transformation"],
        "result_targets": targets,
        "params": {
            "undo": False, "scratch": scratch, "workdir": workdir, "download": download,
            # the queue cannot ask: without -n it downloads, as seamless-run does without a terminal
            "auto_confirm": "no" if answer is False else "yes",
            "capture_stdout": "STDOUT" in targets,
            "max_download_size": parse_size(os.environ.get("SEAMLESS_MAX_DOWNLOAD_SIZE", max_size)),
            "max_download_files": int(os.environ.get("SEAMLESS_MAX_DOWNLOAD_FILES", max_files)),
        },
        "seamless_options": options,
    }


def write_futures(futures) -> None:
    """The .FUTURE markers of a submitted job, so that a later step waits for its results
    (results.Futures: the queue refreshes and removes them)."""
    for path, text in futures.paths.items():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, text)


# --- reading ---------------------------------------------------------------------------------


class Tail:
    """The records appended to a queue file since the last read()."""

    def __init__(self, path):
        self.path = path
        self.file = None
        self.pending = b""

    def read(self) -> list:
        if self.file is None:
            try:
                self.file = open(self.path, "rb")
            except FileNotFoundError:
                return []
        *chunks, self.pending = (self.pending + self.file.read()).split(b"\0")
        return [chunk for chunk in chunks if chunk.strip()]

    def close(self):
        if self.file is not None:
            self.file.close()


def decode(chunk) -> dict:
    try:
        record = json.loads(chunk.decode())
    except UnicodeDecodeError:
        raise QueueError("a record is not valid text") from None
    except ValueError:
        raise QueueError("a record is not valid JSON") from None
    if not isinstance(record, dict) or not isinstance(record.get("queue_command"), str):
        raise QueueError("a record is not a queue command (no \"queue_command\")")
    return record


def check_queue_file(path) -> None:
    """Its records say what to run and where to write: only its owner may write it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if st.st_uid != os.getuid() or st.st_mode & 0o002:
        raise QueueError(f"refusing the queue file {path}: it is writable by others or owned by another user, "
                         f"and its records say what to run and where to write (chmod o-w {path})")


class Submission:
    """A SUBMIT record, checked: what to compute and where its results go."""

    def __init__(self, record):
        self.command = command_of(record)
        self.record = record
        self.targets = []

    def check(self):
        """Check the record (raises QueueError); the targets first, so that their .FUTURE
        markers can be removed whatever else is wrong."""
        from seamless.checksum import parse_checksum
        from seamless.execution.job import is_command
        from seamless.identity import transformation_checksum
        from seamless.run.command import Target

        record = self.record
        params = _field(record, "params", dict)
        workdir = _field(params, "workdir", str)
        if not os.path.isabs(workdir) or not os.path.isdir(workdir):
            raise QueueError(f"params.workdir {workdir!r} is not an absolute path to a directory")
        self.workdir = workdir
        targets = _field(record, "result_targets", dict)
        if not targets:
            raise QueueError("result_targets is empty: a queued job must write files")
        for server, local in targets.items():
            if not (local is None or isinstance(local, str)) or (server == "STDOUT" and local is None):
                raise QueueError(f"result_targets {server!r}: the local path must be a string")
            for name in (server, local):
                if isinstance(name, str) and _names(name) == []:
                    raise QueueError(f"result target {server!r} -> {local!r}: "
                                     + ("an empty path" if name == "" else f"{name!r} is the workdir itself")
                                     + ", not a file in it, cannot be a result target")
            try:
                if server != "STDOUT":
                    inside(".", server)
                path = inside(workdir, server if local is None else local)
            except UnsafePath:
                raise QueueError(f"result target {server!r} -> {local!r} would be written outside the "
                                 f"workdir {workdir}") from None
            if not all(within(workdir, p) for p in (path, path + ".FUTURE")):
                raise QueueError(f"result target {path} is reached through a symlink that leaves the "
                                 f"workdir {workdir}")
            self.targets.append(Target(server, path))
        try:
            self.checksum = parse_checksum(record.get("transformation_checksum"))
        except ValueError:
            raise QueueError("transformation_checksum is not a checksum") from None
        transformation = _field(record, "transformation_dict", dict)
        try:
            actual = transformation_checksum(transformation)
            command = is_command(transformation)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise QueueError(f"transformation_dict is not a transformation ({exc})") from None
        if actual != self.checksum:  # the result would be cached under another computation's name
            raise QueueError(f"transformation_checksum {self.checksum} is not that of its transformation_dict "
                             f"({actual})")
        if not command:
            raise QueueError("transformation_dict is not a seamless-run command")
        self.transformation = transformation
        if params.get("undo", False) is not False:
            raise QueueError("params.undo is not supported")
        self.scratch = _field(params, "scratch", bool, False)
        self.download = _field(params, "download", bool, True)
        confirm = _field(params, "auto_confirm", str, "no")
        if confirm not in ("yes", "no"):
            raise QueueError(f"params.auto_confirm must be \"yes\" or \"no\", not {confirm!r}")
        self.answer = confirm == "yes"
        options = record.get("seamless_options")
        self.options = options if isinstance(options, dict) else {}
        return self


    def remove_futures(self) -> int:
        """Remove the .FUTURE markers that --qsubmit wrote for this record, which will not run,
        so that no later step waits for its results; checked or not, whatever is wrong with it.
        Only a regular file inside the record's workdir, reached without following a symlink
        out of it, whose text names the record's transformation: a marker of another job at
        the same place stays. Returns how many were removed."""
        from seamless.run.command import Target
        from seamless.run.results import Futures

        record = self.record
        params, targets = record.get("params"), record.get("result_targets")
        workdir = params.get("workdir") if isinstance(params, dict) else None
        claimed = record.get("transformation_checksum")  # what --qsubmit wrote into the markers
        if not (isinstance(workdir, str) and os.path.isabs(workdir) and isinstance(targets, dict)
                and isinstance(claimed, str)):
            return 0
        removed = 0
        for server, local in targets.items():
            names = _names(server if local is None else local)
            if names:
                marker = Futures([Target(server, "/".join(names))], claimed).paths
                removed += sum(_unlink_if(workdir, path, text) for path, text in marker.items())
        return removed


def command_of(record) -> str:
    """How messages name a record's command: its argv quoted for the shell when we wrote it."""
    argv = record.get("original_argv")
    if isinstance(argv, list) and argv and all(isinstance(word, str) for word in argv):
        return shlex.join(argv)
    command = record.get("original_command")
    return command if isinstance(command, str) else "(a record without original_command)"


def _names(relpath):
    """The parts of a relative path from a record: [] for "" or "." (the root itself), None
    for one that could leave its root (absolute, "..") or is not a path at all."""
    try:
        return inside("/", relpath)[1:].split("/")
    except UnsafePath:
        pass
    if isinstance(relpath, str) and not relpath.startswith("/"):
        if all(part in ("", ".") for part in relpath.replace("\\", "/").split("/")):
            return []
    return None


def _unlink_if(root, relpath, text) -> bool:
    """Unlink root/relpath if it is a regular file holding exactly `text`. Its directory is
    resolved, must be inside root, and is then opened one part at a time with O_NOFOLLOW:
    a symlink swapped in meanwhile fails the walk, it is never followed out of root."""
    try:
        real_root = os.path.realpath(root)
        parent = os.path.realpath(os.path.join(root, os.path.dirname(relpath)))
        if not within(real_root, parent):
            return False
        fd = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, ValueError):  # ValueError: a NUL byte in the record's workdir
        return False
    parts = [p for p in os.path.relpath(parent, real_root).split(os.sep) if p != "."]
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        for part in parts:
            sub = os.open(part, nofollow | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        name = os.path.basename(relpath)
        marker = os.open(name, nofollow | os.O_NONBLOCK, dir_fd=fd)  # O_NONBLOCK: a FIFO does not hang us
        try:
            st = os.fstat(marker)
            if not stat.S_ISREG(st.st_mode) or os.read(marker, len(text) + 2) != text.encode():
                return False
        finally:
            os.close(marker)
        os.unlink(name, dir_fd=fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _field(record, key, kind, default=None):
    value = record.get(key, default)
    if not isinstance(value, kind) or kind is not bool and isinstance(value, bool):
        raise QueueError(f"{key} is missing or not a {kind.__name__}")
    return value


# --- the queue's presence and its answer -----------------------------------------------------


def reply_path(path, pid: int) -> str:
    return f"{path}.DONE.{pid}"


def serving(path):
    """The live seamless-queue on this queue file ({"pid", "hostname", ...}), or None."""
    running = path + ".RUNNING"
    try:
        age = time.time() - os.stat(running).st_mtime
        with open(running) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        info = {}  # being written
    if not isinstance(info, dict):
        info = {}
    if age > HEARTBEAT_STALE:
        return None
    if info.get("hostname") == socket.gethostname() and isinstance(info.get("pid"), int):
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return info


class Running:
    """QUEUEFILE.RUNNING while a seamless-queue serves the file: one at a time."""

    def __init__(self, path):
        self.path = path + ".RUNNING"
        self.queue = path
        self._stop = threading.Event()

    def __enter__(self):
        while True:  # held with an flock for as long as this process serves the file
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                other = serving(self.queue) or {}
                raise QueueError(f"another seamless-queue (pid {other.get('pid', '?')}) is serving "
                                 f"{self.queue}") from None
            if os.fstat(fd).st_nlink:
                break
            os.close(fd)  # the one before just removed it
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "hostname": socket.gethostname(),
                                 "started": time.time()}).encode())
        threading.Thread(target=self._beat, daemon=True, name="seamless-queue-heartbeat").start()
        return self

    def _beat(self):
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def __exit__(self, *exc):
        self._stop.set()
        _unlink(self.path)
        os.close(self.fd)
        return False


@contextmanager
def holding(path):
    """The queue file's flock: no record is appended meanwhile (for the last read and the delete)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
