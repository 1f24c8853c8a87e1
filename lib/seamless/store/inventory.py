"""What a buffer directory holds: every buffer's files, bytes and last use.

Bytes are bytes on disk (allocated blocks), what a disk quota and max_size are about:
a 10-byte buffer takes a 4 KiB block. scan() walks the directory (prefix and flat
layouts, every stored form, its length sidecar and its .KEEP mark). totals() answers "how many buffers, how many bytes" without walking it all:
a prefix directory's entries only change when its own mtime does, so each one's count
and bytes are kept in <dir>/.seamless-summary.json with that mtime and only changed
ones are walked again. A directory changed within the last SETTLE seconds is not
remembered (a file added in the same clock tick would not move its mtime).
"""

import json
import os
import re
import stat
import time

from seamless.files import atomic_write
from seamless.store.directory import KEEP_SUFFIX as KEEP, LENGTH_SUFFIX

SUMMARY = ".seamless-summary.json"
SETTLE = 2.0
# <cs>, <cs>.gz, <cs>.zst, <cs>.BUFFERLENGTH, <cs>.KEEP
_NAME = re.compile(r"^([0-9a-f]{64})(\.gz|\.zst|\.BUFFERLENGTH|\.KEEP)?$")
SIDECARS = (LENGTH_SUFFIX, KEEP)  # files of a buffer that are not a stored form of it
_PREFIX = re.compile(r"^[0-9a-f]{2}$")


class Buffer:
    """One checksum's files in the directory."""

    __slots__ = ("checksum", "paths", "bytes", "size", "mtime_ns", "mtimes", "kept")

    def __init__(self, checksum):
        self.checksum = checksum
        self.paths = []  # every file of it (forms and sidecars)
        self.mtimes = []  # their mtimes, in the same order (gc checks them again)
        self.bytes = 0  # on disk, every file of it
        self.size = 0  # of its largest stored form (the buffer's length, if it is stored plain)
        self.mtime_ns = 0  # last use: the latest mtime of its forms
        self.kept = False  # marked to be kept (seamless-upload): gc leaves it

    @property
    def age(self):
        return time.time() - self.mtime_ns / 1e9


def _dirs(root):
    """The directories buffers may be in: the root (flat layout) and its prefix dirs."""
    yield root
    try:
        with os.scandir(root) as it:
            names = sorted(e.name for e in it if _PREFIX.match(e.name) and e.is_dir(follow_symlinks=False))
    except OSError:
        return
    for name in names:
        yield os.path.join(root, name)


def _entries(directory, strange=None):
    """(checksum, suffix, path, stat) of each buffer file directly in `directory`; what
    has a buffer's name but is no file (a directory) goes to `strange`."""
    try:
        with os.scandir(directory) as it:
            for entry in it:
                m = _NAME.match(entry.name)
                if m is None:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if strange is not None:
                        strange.append(entry.path)
                    continue
                yield m.group(1), m.group(2), entry.path, st
    except (FileNotFoundError, NotADirectoryError):
        return


def disk_bytes(st) -> int:
    return st.st_blocks * 512


def scan(root, strange=None) -> dict:
    """{checksum: Buffer} of everything stored under root (directories with a buffer's
    name go to `strange`: they are not ours to remove)."""
    found = {}
    for directory in _dirs(root):
        for cs, suffix, path, st in _entries(directory, strange):
            buf = found.get(cs)
            if buf is None:
                buf = found[cs] = Buffer(cs)
            buf.paths.append(path)
            buf.mtimes.append(st.st_mtime_ns)
            buf.bytes += disk_bytes(st)
            if suffix == KEEP:
                buf.kept = True
            elif suffix not in SIDECARS:
                buf.mtime_ns = max(buf.mtime_ns, st.st_mtime_ns)
                buf.size = max(buf.size, st.st_size)
    return found


_FORMS = {"": True, ".gz": True, ".zst": True, ".BUFFERLENGTH": False, ".KEEP": False}  # suffix -> a form?


def _count(directory):
    """(buffers, bytes) directly in directory: the hot loop of stats, so names are told by
    their suffix only (gc's scan checks them whole)."""
    buffers, total = set(), 0
    try:
        with os.scandir(directory) as it:
            for entry in it:
                name = entry.name
                form = _FORMS.get(name[64:])
                if form is None or len(name) < 64:
                    continue
                try:
                    total += disk_bytes(entry.stat(follow_symlinks=False))
                except FileNotFoundError:
                    continue
                if form:
                    buffers.add(name[:64])
    except (FileNotFoundError, NotADirectoryError):
        pass
    return len(buffers), total


def totals(root, remember=True) -> tuple:
    """(buffers, bytes) stored under root, walking only directories changed since the
    last call (their summaries are kept in root/SUMMARY when the directory is writable)."""
    path = os.path.join(root, SUMMARY)
    try:
        with open(path) as f:
            known = json.load(f)
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    now = time.time()
    fresh, buffers, total = {}, 0, 0
    for directory in _dirs(root):
        name = os.path.relpath(directory, root)
        try:
            mtime = os.stat(directory).st_mtime_ns
        except FileNotFoundError:
            continue
        entry = known.get(name)
        if isinstance(entry, list) and len(entry) == 3 and entry[0] == mtime and name != ".":
            count, size = entry[1], entry[2]
        else:
            count, size = _count(directory)
        if now - mtime / 1e9 > SETTLE and name != ".":  # the root's mtime moves with SUMMARY itself
            fresh[name] = [mtime, count, size]
        buffers += count
        total += size
    if remember and fresh != known:
        try:
            atomic_write(path, json.dumps(fresh, separators=(",", ":")), mode=0o644)
        except OSError:
            pass  # a read-only cache is walked each time
    return buffers, total
