"""Which buffer stores and result databases are active, in upstream's client shape.

The shape is that of upstream's SEAMLESS_REMOTE_CLIENTS environment variable:

    {"buffer":   [{"url": "http://h:5510", "directory": "/buf", "readonly": false}, ...],
     "database": [{"url": "http://h:5520", "readonly": false}, ...]}

Entry keys: url, directory, readonly (default true), remote_url, remote_directory
(preferred inside workers: `in_remote=True`), and our token_file (a bearer token for
servers started with --token-file; SEAMLESS_TOKEN_FILE is the default). A buffer
entry with a directory reads it directly; with a url it talks to that hashserver;
with both, it reads the directory and writes through the server (as upstream). A
directory-only entry with readonly false is written directly (our extension, for
workers that share a filesystem). Reads try stores in order; writes go to every
writable one.
"""

import os
import sys

from seamless.store import CorruptBuffer, StoreError
from seamless.store.compression import decode_errors, open_decoded
from seamless.store.directory import DirectoryStore

ENV = "SEAMLESS_REMOTE_CLIENTS"
FLUSH = 30.0  # seconds between writes of the hit/miss counters of a long-running process


class ClientsError(ValueError):
    pass


def _entry_fields(entry, where, in_remote):
    if not isinstance(entry, dict):
        raise ClientsError(f"{where}: each entry must be a JSON object, got {type(entry).__name__}")
    for key in ("url", "directory", "remote_url", "remote_directory", "token_file", "remote_token_file"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ClientsError(f"{where}: '{key}' must be a string")
    readonly = entry.get("readonly", True)
    if not isinstance(readonly, bool):
        raise ClientsError(f"{where}: 'readonly' must be true or false")
    url = directory = None
    if in_remote:
        url = entry.get("remote_url")
        directory = entry.get("remote_directory")
        if directory:
            directory = os.path.expanduser(directory)
    url = url or entry.get("url")
    directory = directory or entry.get("directory")
    token_file = (entry.get("remote_token_file") if in_remote else None) or entry.get("token_file")
    return url, directory, readonly, token_file


class StoreSet:
    """The active stores: ordered read lists and the write lists."""

    def __init__(self, buffer_read=(), buffer_write=(), db_read=(), db_write=(), entries=None):
        self.buffer_read = list(buffer_read)
        self.buffer_write = list(buffer_write)
        self.db_read = list(db_read)
        self.db_write = list(db_write)
        self.entries = entries  # the JSON shape this set was built from, to pass on
        self.corrupt = {}  # checksum -> why a stored copy was refused (kept from this process's reads)
        self.warn_corrupt = True  # a tool that reports corrupt copies itself turns the warning off
        self.max_size = None  # bytes a local cache may hold: a new result beyond it trims it (gc)
        self._counts = {}
        self._flushed = None

    @classmethod
    def from_clients(cls, clients, in_remote=False):
        """Build from the SEAMLESS_REMOTE_CLIENTS shape (a dict or its JSON text)."""
        from seamless.store.httpdb import HttpResultDB
        from seamless.store.httpstore import HttpBufferStore

        import json

        if isinstance(clients, str):
            try:
                clients = json.loads(clients)
            except ValueError as exc:
                raise ClientsError(f"{ENV} is not valid JSON: {exc}") from None
        if not isinstance(clients, dict):
            raise ClientsError(f'{ENV} must be a JSON object like {{"buffer": [...], "database": [...]}}')
        unknown = set(clients) - {"buffer", "database"}
        if unknown:
            raise ClientsError(f"{ENV}: unknown section(s) {', '.join(sorted(unknown))} (use 'buffer' and 'database')")
        self = cls(entries=clients)
        for i, entry in enumerate(_as_list(clients.get("buffer"), "buffer")):
            where = f"{ENV} buffer entry {i}"
            url, directory, readonly, token_file = _entry_fields(entry, where, in_remote)
            if not url and not directory:
                raise ClientsError(f"{where}: needs a 'url' (hashserver) or a 'directory'")
            if directory:
                try:
                    store = DirectoryStore(directory, writable=not readonly and not url)
                except StoreError as exc:
                    raise ClientsError(f"{where}: {exc}") from None
                self.buffer_read.append(store)
                if store.writable:
                    self.buffer_write.append(store)
            if url:
                server = HttpBufferStore(url, writable=not readonly, token_file=token_file)
                self.buffer_read.append(server)
                if not readonly:
                    self.buffer_write.append(server)
        for i, entry in enumerate(_as_list(clients.get("database"), "database")):
            where = f"{ENV} database entry {i}"
            url, _, readonly, token_file = _entry_fields(entry, where, in_remote)
            if not url:
                raise ClientsError(f"{where}: needs a 'url' (seamless-db server)")
            db = HttpResultDB(url, writable=not readonly, token_file=token_file)
            self.db_read.append(db)
            if not readonly:
                self.db_write.append(db)
        # directories first: reading a file beats a round trip
        self.buffer_read.sort(key=lambda s: not isinstance(s, DirectoryStore))
        return self

    @classmethod
    def local_store(cls, buffer_dir, db_file):
        """A buffer directory and a seamless.db on this machine, used directly.

        `root` is where seamless-run keeps its job directories and locks: inside the
        buffer directory (hidden), so inputs can be hard-linked into jobs.
        """
        from seamless.store.sqlitedb import ResultDB

        store = DirectoryStore(buffer_dir, writable=True, layout="prefix", create=True)
        os.makedirs(os.path.dirname(db_file), exist_ok=True)
        db = ResultDB(db_file, writable=True)
        self = cls([store], [store], [db], [db], entries={"buffer": [{"directory": buffer_dir, "readonly": False}]})
        self.root = os.path.join(buffer_dir, ".seamless-run")
        return self

    def keepalive(self, interval=None):
        """Ping every server now and then (every 30 s, or $SEAMLESS_KEEPALIVE seconds), so
        idle timeouts do not stop them while this process still uses them. Returns a
        function that stops the pinging."""
        import threading

        if interval is None:
            try:
                interval = float(os.environ.get("SEAMLESS_KEEPALIVE") or 30)
            except ValueError:
                interval = 30.0

        servers = [s for s in [*self.buffer_read, *self.db_read] if hasattr(s, "healthcheck")]
        done = threading.Event()

        def ping():
            while not done.wait(interval):
                for server in servers:
                    server.healthcheck()

        if servers:
            threading.Thread(target=ping, daemon=True, name="seamless-keepalive").start()
        return done.set

    def describe(self) -> str:
        """Where buffers and results live, in one line (for -v)."""

        def where(store):
            return getattr(store, "directory", None) or getattr(store, "url", None) or getattr(store, "path", "?")

        buffers = ", ".join(dict.fromkeys(where(s) for s in self.buffer_read)) or "none"
        results = ", ".join(dict.fromkeys(where(d) for d in self.db_read)) or "none"
        return f"buffers in {buffers}; results in {results}"

    def to_json(self) -> str:
        import json

        return json.dumps(self.entries or {"buffer": [], "database": []})

    # --- buffers ------------------------------------------------------------------------

    def get_buffer(self, cs):
        """The verified bytes, or None. A corrupt stored copy counts as absent: it is
        removed (where this process may write) and said on stderr, so that the caller
        recomputes or fetches it again instead of failing forever."""
        for store in self.buffer_read:
            try:
                data = store.get(cs)
            except CorruptBuffer as exc:
                self._discard(store, exc, cs)
                continue
            if data is not None:
                return data
        return None

    def has_buffer(self, cs) -> bool:
        return any(store.has(cs) for store in self.buffer_read)

    def put_buffer(self, data, checksum=None) -> str:
        cs = None
        for store in self._writers():
            cs = store.put(data, checksum)
        return cs

    def put_file(self, path, checksum=None) -> str:
        """Store a file's bytes (streamed) in every writable store; returns the checksum."""
        cs = checksum
        for store in self._writers():
            cs = store.put_file(path, cs)
        return cs

    def mark_kept(self, checksums):
        """Mark buffers to be kept by gc (what a user uploads is data, not cache), in the
        buffer directories written directly; a server cannot be told."""
        for store in self.buffer_write:
            if isinstance(store, DirectoryStore):
                for cs in checksums:
                    store.mark_kept(cs)

    def _writers(self):
        if not self.buffer_write:
            raise StoreError("no writable buffer store is configured")
        return self.buffer_write

    def _discard(self, store, exc, cs=None):
        """A stored copy of cs failed verification: remove it if we may, and say so."""
        path = getattr(exc, "path", None)
        removed = False
        if path and getattr(store, "writable", False) and hasattr(store, "remove"):
            try:
                store.remove(path)
                removed = True
            except (OSError, StoreError):
                pass
        if cs is not None:
            self.corrupt[cs] = str(exc)
        if self.warn_corrupt:
            warn(f"corrupt stored buffer: {exc}; {'removed it, ' if removed else ''}"
                 "using another copy or computing it again")

    def stored_everywhere(self, cs) -> bool:
        """Does every writable store hold a verified copy? (A directory checks the stamp of
        this process's own write, else hashes; a server is read back, since upstream's
        accepts a PUT over a corrupt file.)"""
        return all(store.has_verified(cs) for store in self._writers())

    def verified_local(self, cs):
        """(path, stat) of a local uncompressed file known to hold buffer cs, or None.

        The file is hashed unless this process has already verified it unchanged (the
        store's stamp: inode, size, mtime and ctime), so a corrupt or tampered stored
        file is never handed out; a corrupt one is discarded as in get_buffer.
        """
        for store in self.buffer_read:
            if not isinstance(store, DirectoryStore):
                continue
            try:
                found = store.verified(cs, (None,))
            except CorruptBuffer as exc:
                self._discard(store, exc, cs)
                continue
            if found is not None:
                return found[0], found[2]
        return None

    def open_verified(self, cs):
        """A binary file object with the buffer's bytes, verified before the first byte is
        read (so a consumer such as a terminal never sees a wrong one), in constant memory;
        None when no store has a good copy. The caller closes it."""
        for store in self.buffer_read:
            try:
                f = _open_local(store, cs) if isinstance(store, DirectoryStore) else _open_fetched(store, cs)
            except CorruptBuffer as exc:
                self._discard(store, exc, cs)
                continue
            if f is not None:
                return f
        return None

    def get_to_file(self, cs, dest, encoding=None) -> bool:
        """Write the buffer to `dest` atomically, verified on the way; False if no store has it.

        The bytes are written exactly as stored, whatever dest is called; `encoding`
        ("gzip", "zstd") asks for them compressed (a compressed input of a job).
        """
        if encoding is None:
            return self._get_plain_to_file(cs, dest)
        import tempfile

        from seamless.store.compression import write_encoded

        fd, plain = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dest)), prefix=".plain-")
        os.close(fd)
        try:
            if not self._get_plain_to_file(cs, plain):
                return False
            write_encoded(plain, plain + ".enc", encoding)
            os.replace(plain + ".enc", dest)
            return True
        finally:
            for leftover in (plain, plain + ".enc"):
                if os.path.exists(leftover):
                    os.unlink(leftover)

    def _get_plain_to_file(self, cs, dest) -> bool:
        for store in self.buffer_read:
            try:
                if isinstance(store, DirectoryStore):
                    if _copy_verified(store, cs, dest):
                        return True
                elif store.get_to_file(cs, dest):
                    return True
            except CorruptBuffer as exc:
                self._discard(store, exc, cs)
        return False

    # --- results ------------------------------------------------------------------------

    def get_transformation(self, tf):
        for db in self.db_read:
            result = db.get_transformation(tf)
            if result is not None:
                return result
        return None

    def set_transformation(self, tf, result):
        for db in self._db_writers():
            db.set_transformation(tf, result)

    def set_metadata(self, tf, result, record):
        for db in self._db_writers():
            db.set_metadata(tf, result, record)

    def get_rev_transformations(self, result):
        found = []
        for db in self.db_read:
            for tf in db.get_rev_transformations(result) or []:
                if tf not in found:
                    found.append(tf)
        return found

    def keep_index(self, index):
        """Note in every writable database that each entry {path: file checksum} of the
        result index `index` (in the stores) is that file: expression rows, what a
        fingertip of one result file follows back to its index. A database file writes
        them in one transaction; a server gets one request per entry."""
        import json

        from seamless.store.sqlitedb import INDEX_ENTRY, Malformed

        # a database file takes them all at once; a client without the request, none
        writers = [db for db in self._db_writers() if hasattr(db, "set_index_expressions") or
                   hasattr(db, "set_expression")]
        if not writers:
            return
        data = self.get_buffer(index)
        try:
            entries = json.loads(data) if data is not None else None
        except ValueError:
            return
        if not isinstance(entries, dict):
            return
        for db in writers:
            if hasattr(db, "set_index_expressions"):
                db.set_index_expressions(index, entries)
                continue
            for path, cs in entries.items():
                try:
                    db.set_expression(index, [path], *INDEX_ENTRY, cs)
                except Malformed:  # a path upstream's columns cannot hold
                    continue

    def get_rev_expression(self, result):
        """The expression rows (dicts as upstream's rev_expression) whose result is `result`,
        from every database."""
        found = []
        for db in self.db_read:
            get = getattr(db, "get_rev_expression", None)
            for row in (get(result) if get is not None else None) or []:
                if row not in found:
                    found.append(row)
        return found

    def producers(self, result):
        """(checksum, transformation dict or None if it is not stored) of each transformation
        known to have produced buffer `result`: what a fingertip can re-run."""
        import json

        for tf in self.get_rev_transformations(result):
            data = self.get_buffer(tf)
            yield tf, (json.loads(data) if data is not None else None)

    # --- use: hit/miss counters, and the size bound ------------------------------------

    def note(self, hit: bool):
        """Count a lookup answered from the cache (hit) or by running it (miss). The counts
        reach the database files at exit (or every FLUSH seconds), so a hit costs nothing;
        a miss may trim the cache to its max_size."""
        import time

        name = "hits" if hit else "misses"
        self._counts[name] = self._counts.get(name, 0) + 1
        if self._flushed is None:
            import atexit

            self._flushed = time.monotonic()
            atexit.register(self.flush_counts)
        elif time.monotonic() - self._flushed > FLUSH:
            self.flush_counts()
        if not hit and self.max_size is not None:
            self.trim()

    def flush_counts(self):
        import time

        counts, self._counts = self._counts, {}
        self._flushed = time.monotonic()
        if not counts:
            return
        for db in self.db_write:
            if hasattr(db, "add_counts"):  # a database file; a server keeps no counters
                try:
                    db.add_counts(counts)
                except Exception:  # statistics only: never fail a run over them
                    pass

    def trim(self):
        """Bring a local cache over max_size back to 90% of it (gc, least recently used
        first); tried at most once a minute, so a cache full of fresh results (which gc
        leaves alone) does not make every run scan it."""
        from seamless.store import gc, inventory

        db = next((d for d in self.db_write if hasattr(d, "forget")), None)
        for store in self.buffer_write:
            if db is None or not isinstance(store, DirectoryStore):
                continue
            try:
                if inventory.totals(store.directory)[1] <= self.max_size or gc.tried_recently(store.directory):
                    continue
                gc.collect_garbage(store, db, max_size=int(self.max_size * 0.9))
            except gc.Busy:
                pass
            except Exception as exc:  # the result stands; the cache is just not trimmed
                warn(f"could not trim the cache in {store.directory} to its max_size: {exc}")

    def _db_writers(self):
        if not self.db_write:
            raise StoreError("no writable result database is configured")
        return self.db_write


def _as_list(value, name):
    if value is None:
        return []
    if not isinstance(value, list):
        raise ClientsError(f"{ENV}: '{name}' must be a list of entries")
    return value


def warn(message):
    """One warning line on stderr, named after the running tool."""
    prog = os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "")
    prog = prog if prog.startswith("seamless") else "seamless"
    sys.stderr.write(f"{prog}: warning: {message}\n")
    sys.stderr.flush()


def _open_local(store, cs):
    """Open a directory store's verified copy; the open file must be the verified inode."""
    for _ in range(3):
        found = store.verified(cs)
        if found is None:
            return None
        path, encoding, st, _ = found
        try:
            f = open_decoded(path, encoding)
        except FileNotFoundError:
            continue
        raw = f if encoding is None else getattr(f, "fileobj", None) or getattr(f, "_fp", None)
        if raw is None:
            return f
        now = os.fstat(raw.fileno())
        if _same_file(now, st):
            return f
        if encoding is None and (now.st_ino, now.st_size) == (st.st_ino, st.st_size):
            # only its times moved: another process used it (DirectoryStore.find touches);
            # the bytes this file object reads are checked instead
            from seamless.checksum import checksum_stream

            if checksum_stream(f)[0] == cs:
                f.seek(0)
                return f
        f.close()  # replaced or rewritten since it was verified: verify again
    return None


def _same_file(a, b) -> bool:
    return (a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def _open_fetched(store, cs):
    """Fetch a server's buffer (verified) into an anonymous temp file and open it."""
    import shutil
    import tempfile

    tmpdir = tempfile.mkdtemp(prefix="seamless-get-")
    try:
        path = os.path.join(tmpdir, cs)
        if not store.get_to_file(cs, path):
            return None
        return open(path, "rb")  # still readable once its name is gone
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _copy_verified(store, cs, dest) -> bool:
    """Copy a directory store's buffer to dest while hashing it; rename into place only
    when it hashes to cs (one read, constant memory). Raises CorruptBuffer otherwise."""
    import hashlib
    import tempfile

    from seamless.checksum import CHUNK

    found = store.find(cs)
    if found is None:
        return False
    path, encoding = found
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dest)), prefix=".download-")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with open_decoded(path, encoding) as src:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
            except FileNotFoundError:
                return False
            except decode_errors() as exc:
                raise CorruptBuffer(f"{path}: cannot decompress: {exc}", path) from None
        if h.hexdigest() != cs:
            raise CorruptBuffer(f"{path} does not have the correct sha-256 checksum", path)
        os.chmod(tmp, 0o644)  # as atomic_write: mkstemp's 0600 would hide results from others
        os.replace(tmp, dest)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

