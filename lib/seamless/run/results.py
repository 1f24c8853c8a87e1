"""Delivering results: stdout printing, files and directories with sidecars, .FUTURE markers."""

import json
import os
import sys
import threading

from seamless import files
from seamless.checksum import calculate_checksum, serialize
from seamless.files import UnsafePath, atomic_write, inside, within
from seamless.run.argtyping import strip_compression

FUTURE_REFRESH = 30.0


class ResultError(Exception):
    pass


def print_result(f, out=None):
    """Copy a result to stdout in constant memory, with upstream's stdout rules: leading
    newlines dropped, trailing newlines collapsed to one; raw bytes, UTF-8 or not."""
    out = out or sys.stdout.buffer
    leading, pending = True, 0  # pending: newlines held back, maybe the trailing run
    while chunk := f.read(1 << 20):
        if leading:
            chunk = chunk.lstrip(b"\n")
            if not chunk:
                continue
            leading = False
        body = chunk.rstrip(b"\n")
        if body:
            out.write(b"\n" * pending)
            out.write(body)
            pending = len(chunk) - len(body)
        else:
            pending += len(chunk)
    if pending:
        out.write(b"\n")
    out.flush()


def deliver(stores, index, targets, download=True, compress_by_name=False):
    """Write each target (file or directory) from the result index, with sidecars.

    index: {path in RESULT: checksum}. A file target gets LOCAL.CHECKSUM; a directory
    target gets LOCAL.INDEX (its sub-index, plain JSON) and LOCAL.CHECKSUM (of that).
    With download, the bytes are written too, atomically and verified, exactly as the
    command produced them (x.gz included); `compress_by_name` instead compresses them
    for a LOCAL named x.gz or x.zst (a download of an upload's uncompressed checksum).
    Every path comes from the index, which anyone may have written: each must stay
    inside its target. Returns the paths whose bytes are in no store.
    """
    from seamless.store.compression import encoding_of

    def fetch(cs, dest):
        return stores.get_to_file(cs, dest, encoding_of(dest) if compress_by_name else None)

    missing = []
    for target in targets:
        local = target.local
        parent = os.path.dirname(os.path.abspath(local))
        os.makedirs(parent, exist_ok=True)
        if target.server in index:
            cs = index[target.server]
            if download and not fetch(cs, local):
                missing.append(target.server)
                continue
            # a sidecar is of the bytes of the file it is named after: x.gz.CHECKSUM of x.gz,
            # x.CHECKSUM of the uncompressed bytes (what compress_by_name downloads)
            sidecar = strip_compression(local) if compress_by_name else local
            atomic_write(sidecar + ".CHECKSUM", cs + "\n")
            continue
        prefix = target.server + "/"
        sub = {k[len(prefix):]: v for k, v in index.items() if k.startswith(prefix)}
        if not sub:
            raise ResultError(f"no result for {target.server!r}: the command did not create it")
        if download:
            if os.path.isfile(local):
                os.unlink(local)
            for rel, cs in sorted(sub.items()):
                dest = _inside(local, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if not within(local, os.path.dirname(dest)):
                    raise ResultError(f"{local}: {rel!r} would be written through a symlink that leaves "
                                      "the directory; remove that symlink")
                if not fetch(cs, dest):
                    missing.append(f"{target.server}/{rel}")
        buffer = serialize(sub, "plain")
        atomic_write(local + ".INDEX", buffer)
        atomic_write(local + ".CHECKSUM", calculate_checksum(buffer) + "\n")
    return missing


def _inside(local, rel):
    try:
        return inside(local, rel)
    except UnsafePath as exc:
        raise ResultError(f"refusing a directory index entry: {exc}") from None


class Futures:
    """LOCAL.FUTURE markers for every target while the job runs; refreshed, then removed.

    Identical runs share a marker (its text names their transformation): each holds a
    shared flock on it, and only the last one out, the one that gets it exclusively,
    removes it. A run canceled while another waits to take its work over thus leaves the
    marker to the survivor; a run killed with -9 holds no lock any more.
    """

    def __init__(self, targets, tf_checksum):
        self.paths = {}
        for target in targets:
            self.paths[target.local + ".FUTURE"] = f"{tf_checksum}.{target.server}\n"
        self._fds = {}
        self._stop = threading.Event()

    def __enter__(self):
        try:
            for path, text in self.paths.items():
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                self._fds[path] = _hold_marker(path, text)
        except BaseException:
            self.__exit__()
            raise
        if self.paths:
            threading.Thread(target=self._refresh, daemon=True).start()
        return self

    def _refresh(self):
        while not self._stop.wait(FUTURE_REFRESH):
            for path in self.paths:
                try:
                    os.utime(path)
                except OSError:
                    pass

    def __exit__(self, *exc):
        import fcntl

        self._stop.set()
        for path, fd in self._fds.items():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while another run holds it
                if os.fstat(fd).st_ino == os.stat(path).st_ino:  # still ours, not a newer marker
                    os.unlink(path)
            except OSError:  # BlockingIOError (in use), or gone already
                pass
            finally:
                os.close(fd)
        self._fds = {}
        return False


def _hold_marker(path, text):
    """A shared flock on the live marker file at `path`, which says `text` (the latest run
    that writes a target names itself in it, as before)."""
    import fcntl

    import errno

    data = text.encode()
    while True:
        try:  # never through a symbolic link planted at the marker's name
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise OSError(errno.ELOOP, "a symbolic link is where a .FUTURE marker belongs (remove it)", path) from None
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a last holder removes it
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # removed by its last holder meanwhile: make a new one
    try:
        if os.pread(fd, len(data) + 1, 0) != data:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_index(stores, cs):
    """A deep result index {relative path: checksum}, checked: None when absent or damaged."""
    data = stores.get_buffer(cs)
    if data is None:
        return None
    try:
        index = json.loads(data)
    except ValueError:
        raise ResultError(f"the result {cs} is not a directory index") from None
    return check_index(index)


def check_index(index, where="directory index"):
    try:
        return files.check_index(index, where)
    except UnsafePath as exc:
        raise ResultError(str(exc)) from None
