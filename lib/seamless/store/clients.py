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

from seamless.store import StoreError
from seamless.store.directory import DirectoryStore

ENV = "SEAMLESS_REMOTE_CLIENTS"


class ClientsError(ValueError):
    pass


def _entry_fields(entry, where, in_remote):
    if not isinstance(entry, dict):
        raise ClientsError(f"{where}: each entry must be a JSON object, got {type(entry).__name__}")
    for key in ("url", "directory", "remote_url", "remote_directory", "token_file"):
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
    return url, directory, readonly, entry.get("token_file")


class StoreSet:
    """The active stores: ordered read lists and the write lists."""

    def __init__(self, buffer_read=(), buffer_write=(), db_read=(), db_write=(), entries=None):
        self.buffer_read = list(buffer_read)
        self.buffer_write = list(buffer_write)
        self.db_read = list(db_read)
        self.db_write = list(db_write)
        self.entries = entries  # the JSON shape this set was built from, to pass on

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
    def from_env(cls, environ=None):
        """The stores named by SEAMLESS_REMOTE_CLIENTS, or None when it is unset."""
        text = (environ if environ is not None else os.environ).get(ENV)
        if not text:
            return None
        return cls.from_clients(text, in_remote=True)

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

    def to_json(self) -> str:
        import json

        return json.dumps(self.entries or {"buffer": [], "database": []})

    # --- buffers ------------------------------------------------------------------------

    def get_buffer(self, cs):
        for store in self.buffer_read:
            data = store.get(cs)
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

    def _writers(self):
        if not self.buffer_write:
            raise StoreError("no writable buffer store is configured")
        return self.buffer_write

    def local_path(self, cs):
        """A readable local file holding the buffer uncompressed (to link into jobs), or None."""
        for store in self.buffer_read:
            if isinstance(store, DirectoryStore):
                path = store.plain_path(cs)
                if path is not None:
                    return path
        return None

    def get_to_file(self, cs, dest) -> bool:
        """Write the buffer to `dest` (atomically, verified); False if no store has it.

        A dest named x.gz / x.zst gets the bytes compressed that way.
        """
        from seamless.store.directory import encoding_of, write_encoded

        encoding = encoding_of(dest)
        if encoding is not None:
            import tempfile

            fd, plain = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dest)), prefix=".plain-")
            os.close(fd)
            try:
                source = self.local_path(cs)
                if source is None:
                    if not self._get_plain_to_file(cs, plain):
                        return False
                    source = plain
                write_encoded(source, plain + ".enc", encoding)
                os.replace(plain + ".enc", dest)
                return True
            finally:
                for leftover in (plain, plain + ".enc"):
                    if os.path.exists(leftover):
                        os.unlink(leftover)
        return self._get_plain_to_file(cs, dest)

    def _get_plain_to_file(self, cs, dest) -> bool:
        for store in self.buffer_read:
            if isinstance(store, DirectoryStore):
                data = store.get(cs)
                if data is not None:
                    from seamless.files import atomic_write

                    atomic_write(dest, data)
                    return True
            elif store.get_to_file(cs, dest):
                return True
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

    def producers(self, result):
        """(checksum, transformation dict or None if it is not stored) of each transformation
        known to have produced buffer `result`: what a fingertip can re-run."""
        import json

        for tf in self.get_rev_transformations(result):
            data = self.get_buffer(tf)
            yield tf, (json.loads(data) if data is not None else None)

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
