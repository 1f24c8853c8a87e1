"""Identical work runs once: one holder per transformation checksum, the others wait.

In this process a lock per checksum lets one thread through; the threads that waited
find its result (or its failure) on the shared entry, even a result too large for any
cache. Across processes a file lock in the stores' lock directory does the same, and
the one that waited finds the result in the stores. The holder removes the lock file
while still holding it; a waiter that then locks a removed file tries again.

The holder writes one JSON line into its lock file: {"pid": P} and, while one of its
bash jobs runs, {"pid": P, "job": DIR} (note_job), which is how seamless-cancel finds
the job of a transformation from another process (holder()).
"""

import json
import os
import threading
from contextlib import contextmanager

from seamless.execution.job import Canceled

POLL = 0.1


class Entry:
    __slots__ = ("lock", "users", "result", "error")

    def __init__(self):
        self.lock = threading.Lock()
        self.users = 0
        self.result = self.error = None  # what the holder before us got


_entries = {}
_entries_lock = threading.Lock()
_held = threading.local()  # .fds: the lock files this thread holds, innermost last


class once:
    """with once(key, lock_dir, canceled, on_wait) as entry: hold the right to compute
    `key`; the entry says what an earlier holder got (a class, not a generator: this is
    on every miss of the Python API)."""

    __slots__ = ("key", "lock_dir", "canceled", "on_wait", "entry", "file_lock")

    def __init__(self, key, lock_dir=None, canceled=None, on_wait=None):
        self.key, self.lock_dir, self.canceled, self.on_wait = key, lock_dir, canceled, on_wait
        self.file_lock = None

    def __enter__(self):
        with _entries_lock:
            entry = _entries.get(self.key)
            if entry is None:
                entry = _entries[self.key] = Entry()
            entry.users += 1
        self.entry = entry
        try:
            _acquire(entry.lock, self.canceled, self.on_wait)
        except BaseException:
            self._leave()
            raise
        if self.lock_dir is not None and entry.result is None and entry.error is None:
            self.file_lock = _file_lock(os.path.join(self.lock_dir, self.key + ".lock"), self.canceled, self.on_wait)
            try:
                self.file_lock.__enter__()
            except BaseException:
                entry.lock.release()
                self._leave()
                raise
        return entry

    def __exit__(self, *exc):
        try:
            if self.file_lock is not None:
                self.file_lock.__exit__(*exc)
        finally:
            self.entry.lock.release()
            self._leave()
        return False

    def _leave(self):
        with _entries_lock:
            self.entry.users -= 1
            if not self.entry.users:
                del _entries[self.key]


def _acquire(lock, canceled, on_wait):
    if lock.acquire(blocking=False):
        return
    if on_wait is not None:
        on_wait()
    while not lock.acquire(timeout=POLL):
        if canceled is not None and canceled():
            raise Canceled("Transformation was canceled")


@contextmanager
def _file_lock(path, canceled, on_wait):
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told and on_wait is not None:
                on_wait()
            told = True
            try:
                _wait_flock(fd, canceled)
            except BaseException:
                os.close(fd)
                raise
        try:  # the holder before us removes the file when done: lock the live one
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    fds = _held.__dict__.setdefault("fds", [])
    fds.append(fd)
    try:
        _write_record(fd, None)
        yield
    finally:
        fds.remove(fd)
        try:
            os.unlink(path)  # while still holding the lock; waiters then retry
        except FileNotFoundError:
            pass
        os.close(fd)


def _write_record(fd, job):
    record = {"pid": os.getpid(), **({"job": job} if job else {})}
    line = (json.dumps(record) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, line, 0)


def note_job(job_dir):
    """Record (None: clear) the job directory where this thread's innermost held
    transformation now runs; nothing when it holds no lock file."""
    fds = getattr(_held, "fds", None)
    if fds:
        try:
            _write_record(fds[-1], job_dir)
        except OSError:  # only seamless-cancel reads it: never fail the job over it
            pass


def holder(lock_dir, key):
    """The record of the lock file of `key` ({"pid", "job"?}), or None. It may be stale
    (a holder killed with -9): whoever acts on it checks that the job still runs."""
    try:
        with open(os.path.join(lock_dir, key + ".lock"), "rb") as f:
            record = json.loads(f.read(4096) or b"null")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _wait_flock(fd, canceled):
    import fcntl
    import time

    if canceled is None:  # nothing to poll for: block (a signal still interrupts it)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if canceled():
                raise Canceled("Transformation was canceled") from None
            time.sleep(POLL)
