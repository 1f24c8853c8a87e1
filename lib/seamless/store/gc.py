"""Bounding and checking a local cache: a buffer directory and its result database.

A result row (transformation -> result) *needs* its result buffer and, when the result
is an index (a directory of results), every buffer the index names: without them it is
useless. It also *holds* its transformation buffer and that one's code buffer, so what
was computed can still be listed, shown and re-run. The buffers its transformation
names (its *inputs*) stand alone: the user's files can give them again.

gc evicts least recently used first (a buffer's mtime: DirectoryStore.find() sets it on
every use): inputs first, then result rows, each with the buffers that only it needs or
holds, so no row ever points at a missing buffer. A row was last used when its result
or its transformation was (not its code, which other rows share). Rows whose needed
buffers are already gone are dropped first. Left alone:
- *kept* buffers (a <cs>.KEEP mark: what seamless-upload stored; the user's only copy,
  after --move), unless gc is told to take them too;
- buffers no row reaches (a queued job's inputs and transformation, a running job's,
  an upload through a server), until unused for ORPHAN_AGE.

Safe while others read and write the same cache:
- nothing used in the last GRACE seconds (5 minutes) is evicted, whatever the bounds:
  a job writes its result buffer, then its row, moments later;
- a buffer is moved to a trash name first, and put back if its mtime moved since the
  scan (someone touched it before the move; one who comes after it finds nothing and
  writes the buffer again);
- rows are deleted in one transaction that first checks that no buffer of theirs was
  written again meanwhile; a writer writes its row after its buffer, so that row waits
  for the transaction and survives it.
The rows are read before the directory is scanned, so a row is never taken for
dangling because its buffer was written between the two.
"""

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager

from seamless.checksum import CHUNK, calculate_checksum
from seamless.store import inventory
from seamless.store.compression import decode_errors, open_decoded

GRACE = 300.0  # seconds ($SEAMLESS_GC_GRACE: the tests make it short)
ORPHAN_AGE = 7 * 86400.0  # seconds unused before gc takes a buffer that no row reaches
BATCH = 5000  # evictions per transaction (a writer waits for one at most)
LOCK = ".seamless-gc.lock"
TRASH = ".gc-"  # <name>.gc-<host>-<pid>: moved aside, not yet deleted
DEEP = ("deepfolder", "deepcell", "folder")  # result celltypes whose buffer is an index of buffers


class Busy(Exception):
    """Another gc works on this directory."""


@contextmanager
def exclusive(directory):
    """One gc (or verify --repair) per buffer directory at a time; the lock file's mtime
    says when the last one ran."""
    fd = os.open(os.path.join(directory, LOCK), os.O_RDWR | os.O_CREAT, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another gc is working on {directory}: wait for it to finish") from None
        os.utime(fd)
        yield
    finally:
        os.close(fd)


def tried_recently(directory, interval=60.0) -> bool:
    """Did a gc run on this directory in the last `interval` seconds?"""
    try:
        return time.time() - os.stat(os.path.join(directory, LOCK)).st_mtime < interval
    except OSError:
        return False


# --- what the cache holds --------------------------------------------------------------

class Row:
    __slots__ = ("key", "needs", "holds", "mtime_ns")  # mtime_ns: its last use

    def __init__(self, key, needs, holds):
        self.key, self.needs, self.holds = key, needs, holds
        self.mtime_ns = 0


class Contents:
    """The rows, the buffers, and who needs what (from one read of each)."""

    def __init__(self, store, db):
        self.store = store
        rows = db.result_rows()  # first: see the module docstring
        self.strange = []  # directories where a buffer should be: not ours to remove
        self.buffers = inventory.scan(store.directory, self.strange)
        self.rows = []
        self.dangling = []
        self.inputs = set()  # what the rows' transformations name (and the files of directory inputs)
        for tf, result in rows:
            needs, holds = {result}, {tf}
            tfdict = self.json(tf)
            if isinstance(tfdict, dict):
                code = _pin(tfdict.get("code"))
                if code:
                    holds.add(code)
                output = tfdict.get("__output__")
                if isinstance(output, list) and len(output) > 1 and output[1] in DEEP:
                    index = self.json(result)
                    if isinstance(index, dict):
                        needs.update(v for v in index.values() if _is_checksum(v))
            holds -= needs
            row = Row((tf, result), needs, holds)
            self.inputs |= self._inputs(tfdict)
            if any(cs not in self.buffers for cs in needs):
                self.dangling.append(row)
                continue
            row.mtime_ns = max(self.buffers[cs].mtime_ns for cs in needs | {tf} if cs in self.buffers)
            self.rows.append(row)

    def _inputs(self, tfdict):
        """The buffers a transformation's pins name, and the files of its directory inputs."""
        found = set()
        if not isinstance(tfdict, dict):
            return found
        for name, value in tfdict.items():
            cs = _pin(value) if not name.startswith("__") and name != "code" else None
            if cs is None:
                continue
            found.add(cs)
            if value[0] == "mixed":  # a directory input: its index names the files
                index = self.json(cs)
                if isinstance(index, dict):
                    found.update(v for v in index.values() if _is_checksum(v))
        return found

    def json(self, cs):
        """A small JSON buffer's value, read without touching it (None if unreadable)."""
        buf = self.buffers.get(cs)
        path = next((p for p in buf.paths if os.path.basename(p) == cs), None) if buf else None
        if path is None or buf.bytes > 64 << 20:
            return None
        try:
            with open(path, "rb") as f:
                data = f.read()
            if calculate_checksum(data) != cs:
                return None
            return json.loads(data)
        except (OSError, ValueError):
            return None

    def bytes(self):
        return sum(b.bytes for b in self.buffers.values())


def _pin(value):
    """The checksum of a transformation pin [celltype, subcelltype, checksum], if it is one."""
    if isinstance(value, list) and len(value) == 3 and _is_checksum(value[2]):
        return value[2]
    return None


def _is_checksum(value):
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


# --- gc ----------------------------------------------------------------------------------

class Report:
    def __init__(self):
        self.buffers = self.bytes = self.rows = self.dangling = 0
        self.kept_busy = 0  # candidates found in use at the last moment
        self.spared = 0  # candidates used too recently (GRACE; ORPHAN_AGE for what no row reaches)
        self.before = self.after = 0

    def as_dict(self):
        return {"evicted_buffers": self.buffers, "evicted_bytes": self.bytes, "evicted_results": self.rows,
                "dangling_results_dropped": self.dangling, "kept_in_use": self.kept_busy,
                "spared_recent": self.spared,
                "bytes_before": self.before, "bytes_after": self.after}


def collect_garbage(store, db, max_size=None, older_than=None, dry_run=False, grace=None, kept=False) -> Report:
    """Evict least recently used buffers (and the rows that need them) until the directory
    holds at most max_size bytes, and everything unused for older_than seconds; `kept`:
    kept buffers too. Returns what was (or, with dry_run, would be) evicted."""
    if grace is None:
        try:
            grace = float(os.environ.get("SEAMLESS_GC_GRACE") or GRACE)
        except ValueError:
            grace = GRACE
    with exclusive(store.directory):
        sweep_trash(store.directory)
        contents = Contents(store, db)
        report = Report()
        report.before = total = contents.bytes()
        holders = {}  # checksum -> how many remaining rows need or hold it
        for row in contents.rows:
            for cs in row.needs | row.holds:
                holders[cs] = holders.get(cs, 0) + 1
        now = time.time_ns()

        def old(mtime_ns, limit):
            return limit is not None and now - mtime_ns > limit * 1e9

        def evictable(cs):
            buf = contents.buffers.get(cs)
            return buf is not None and (kept or not buf.kept)

        # (what, buffers it frees): dangling rows first, then inputs, then rows, oldest first
        plan, freed = [], set()
        for row in contents.dangling:
            frees = [cs for cs in row.holds if evictable(cs) and cs not in holders and cs not in freed
                     and old(contents.buffers[cs].mtime_ns, grace)]
            freed.update(frees)
            total -= sum(contents.buffers[cs].bytes for cs in frees)
            plan.append((row, frees))
        candidates = [(b.mtime_ns, 0, b) for cs, b in contents.buffers.items()
                      if cs not in holders and cs not in freed and evictable(cs)]
        candidates += [(row.mtime_ns, 1, row) for row in contents.rows]
        candidates.sort(key=lambda c: (c[1], c[0]))
        for mtime_ns, _, item in candidates:
            over = max_size is not None and total > max_size
            if not (over or old(mtime_ns, older_than)):
                continue
            orphan = not isinstance(item, Row) and item.checksum not in contents.inputs
            if not old(mtime_ns, max(grace, ORPHAN_AGE) if orphan else grace):
                report.spared += 1
                continue
            if isinstance(item, Row):
                frees = []
                for cs in item.needs | item.holds:
                    holders[cs] -= 1
                    if holders[cs] == 0 and evictable(cs):
                        frees.append(cs)
            else:
                frees = [item.checksum]
            total -= sum(contents.buffers[cs].bytes for cs in frees)
            plan.append((item, frees))
        for start in range(0, len(plan), BATCH):
            _evict(store, db, contents, plan[start:start + BATCH], report, dry_run)
        report.after = report.before - report.bytes
        return report


def _evict(store, db, contents, batch, report, dry_run):
    """Move the batch's buffers aside, drop its rows, then delete what was moved."""
    if dry_run:
        for item, frees in batch:
            _count(report, contents, item, frees)
        return
    moved = {}  # item index -> [(trash, original)]
    busy = set()
    trash_suffix = _trash_suffix()
    for i, (item, frees) in enumerate(batch):
        moved[i] = []
        for cs in frees:
            buf = contents.buffers[cs]
            for path, mtime_ns in zip(buf.paths, buf.mtimes):
                trash = path + trash_suffix
                try:
                    os.rename(path, trash)
                except FileNotFoundError:
                    continue
                except OSError:  # not ours to remove (a shared cache)
                    busy.add(i)
                    continue
                moved[i].append((trash, path))
                try:
                    if os.lstat(trash).st_mtime_ns != mtime_ns:
                        busy.add(i)  # used since the scan
                except FileNotFoundError:
                    busy.add(i)

    def rewritten(i):  # a file moved aside is back: someone wrote that buffer again
        return any(os.path.exists(original) for _, original in moved[i])

    dangling = {id(row) for row in contents.dangling}

    def revived(item):  # a dangling row whose buffers were written again (recomputed) meanwhile
        return id(item) in dangling and all(store.stored(cs) for cs in item.needs)

    def keep(rows):
        """Inside the transaction: rows whose buffers are in use stay, and so do their buffers."""
        staying = []
        for i, (item, _) in enumerate(batch):
            if isinstance(item, Row) and (i in busy or rewritten(i) or revived(item)):
                _restore(moved[i])
                moved[i] = []
                staying.append(item.key)
        return staying

    rows = [item.key for item, _ in batch if isinstance(item, Row)]
    gone = set(db.forget(rows, keep)) if rows else set()
    for i, (item, frees) in enumerate(batch):
        if isinstance(item, Row):
            if item.key not in gone:
                report.kept_busy += 1
                continue
        elif i in busy:
            _restore(moved[i])
            report.kept_busy += 1
            continue
        for trash, _ in moved[i]:
            _unlink(trash)
        _count(report, contents, item, frees)


def _count(report, contents, item, frees):
    if isinstance(item, Row):
        if item.key and any(cs not in contents.buffers for cs in item.needs):
            report.dangling += 1
        else:
            report.rows += 1
    report.buffers += len(frees)
    report.bytes += sum(contents.buffers[cs].bytes for cs in frees)


def _trash_suffix():
    """What a moved-aside file's name ends with: whose it is (sweep_trash reads it back)."""
    return f"{TRASH}{socket.gethostname()}-{os.getpid()}"


def _restore(pairs):
    for trash, original in pairs:
        try:
            os.rename(trash, original)  # a copy written meanwhile has the same bytes
        except OSError:
            _unlink(trash)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def sweep_trash(root, max_age=86400):
    """Delete what a killed gc moved aside: its process is gone (on this host), or a day passed."""
    import re

    host = socket.gethostname()
    moved = re.compile(r"^[0-9a-f]{64}(\.gz|\.zst|\.BUFFERLENGTH|\.KEEP)?" + re.escape(TRASH) + r"(.+)-(\d+)$")
    for directory in inventory._dirs(root):
        try:
            entries = [(e, m) for e in os.scandir(directory) if (m := moved.match(e.name))]
        except OSError:
            continue
        for entry, m in entries:
            owner, pid = m.group(2), m.group(3)
            try:
                stale = (owner == host and not _alive(int(pid))) or \
                    time.time() - entry.stat(follow_symlinks=False).st_ctime > max_age
            except OSError:
                continue
            if stale:
                _unlink(entry.path)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- verify --------------------------------------------------------------------------------

class Findings:
    def __init__(self):
        self.checked = 0
        self.corrupt = []  # (path, why)
        self.dangling = []  # (tf, result, missing checksums)
        self.stray = []  # (tf, result) of reverse rows / records without their row; (index, file) of
        #                  expression rows whose index is no row's result
        self.orphans = []  # checksums no row reaches
        self.orphan_bytes = 0
        self.strange = []  # directories where a buffer should be: reported, never removed
        self.repaired = 0
        self.unrepaired = 0

    @property
    def wrong(self):
        return bool(self.corrupt or self.dangling or self.stray or self.strange)

    def as_dict(self):
        return {"checked_buffers": self.checked,
                "corrupt": [{"path": p, "problem": why} for p, why in self.corrupt],
                "dangling_results": [{"transformation": tf, "result": r, "missing": m} for tf, r, m in self.dangling],
                "stray_records": [{"transformation": tf, "result": r} for tf, r in self.stray],
                "not_buffers": self.strange,
                "orphan_buffers": len(self.orphans), "orphan_bytes": self.orphan_bytes,
                "repaired": self.repaired, "unrepaired": self.unrepaired}


def verify(store, db, repair=False, progress=None) -> Findings:
    """Re-hash every stored buffer; find rows whose buffers are gone, records without their
    row, and buffers no row reaches. `repair` removes corrupt files, then the rows that
    needed them and stray records."""
    findings = Findings()
    with exclusive(store.directory) if repair else _nothing():
        contents = Contents(store, db)
        for cs, buf in contents.buffers.items():
            findings.checked += 1
            for path in buf.paths:
                problem = _check_file(path, cs)
                if problem:
                    findings.corrupt.append((path, problem))
            if progress:
                progress(findings.checked, len(contents.buffers))
        corrupt = {path for path, _ in findings.corrupt}
        bad = {cs for cs, buf in contents.buffers.items() if all(p in corrupt for p in _forms(buf))}
        findings.strange = list(contents.strange)
        for row in contents.dangling + contents.rows:
            missing = sorted(cs for cs in row.needs if cs not in contents.buffers or cs in bad)
            if missing:
                findings.dangling.append((*row.key, missing))
        findings.stray = [tuple(r) for r in db.stray_records()]
        reached = set(contents.inputs)
        for row in contents.rows + contents.dangling:
            reached |= row.needs | row.holds
        findings.orphans = sorted(cs for cs, buf in contents.buffers.items() if cs not in reached and not buf.kept)
        findings.orphan_bytes = sum(contents.buffers[cs].bytes for cs in findings.orphans)
        if repair:
            _repair(store, db, findings)
    return findings


def _forms(buf):
    return [p for p in buf.paths if not p.endswith(inventory.SIDECARS)]


@contextmanager
def _nothing():
    yield


def _check_file(path, cs):
    """Why the file does not hold buffer cs (None if it does)."""
    import hashlib

    if path.endswith(inventory.SIDECARS):
        return None
    encoding = "gzip" if path.endswith(".gz") else "zstd" if path.endswith(".zst") else None
    h = hashlib.sha256()
    try:
        with open_decoded(path, encoding) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except FileNotFoundError:
        return None  # removed meanwhile: not corrupt
    except decode_errors() as exc:
        return f"does not decompress: {exc}"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if h.hexdigest() != cs:
        return "does not hash to its name"
    return None


def _repair(store, db, findings):
    findings.unrepaired += len(findings.strange)  # someone else's directory: for them to remove
    for path, _ in findings.corrupt:
        try:
            os.unlink(path)
            findings.repaired += 1
        except FileNotFoundError:
            findings.repaired += 1
        except OSError:
            findings.unrepaired += 1
    rows = [(tf, result) for tf, result, _ in findings.dangling] + findings.stray
    if rows:
        def keep(candidates):  # rows whose missing buffers were written again meanwhile stay
            return [(tf, r) for tf, r, missing in findings.dangling if all(store.stored(cs) for cs in missing)]

        gone = db.forget(rows, keep)
        findings.repaired += len(gone)
        findings.unrepaired += len(rows) - len(gone)
