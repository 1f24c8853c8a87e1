"""The result database on a seamless.db SQLite file, opened directly.

Tables, columns and DDL text are upstream seamless-database's, so one file moves between
the two systems both ways. Unlike upstream: WAL journal, synchronous=NORMAL (durable
against a killed process, consistent after power loss), a long busy timeout with
BEGIN IMMEDIATE writes (many processes at once without "database is locked"), no
duplicate reverse rows, and a read-only mode that works.

The same class is used by seamless-db (one connection per server thread) and by tools
that open the file directly. Its errors say what went wrong (Malformed, Conflict,
NotFound, ReadOnly, NoSpace); seamless-db maps them to HTTP statuses.
"""

import os
import sqlite3
import threading

from seamless.checksum import parse_checksum

PROTOCOL = ["seamless", "database", "2.2"]
BUSY_TIMEOUT = 60.0  # seconds a writer waits for another process's transaction

SCHEMA = [
    'CREATE TABLE "bucket_probe" ("bucket_kind" VARCHAR(20) NOT NULL, "label" TEXT NOT NULL, "bucket_checksum" CHAR(64) NOT NULL, "captured_at" TEXT NOT NULL, "freshness_tokens" TEXT NOT NULL, PRIMARY KEY ("bucket_kind", "label"))',
    'CREATE INDEX "bucket_probe_bucket_checksum" ON "bucket_probe" ("bucket_checksum")',
    'CREATE TABLE "buffer_info" ("checksum" CHAR(64) NOT NULL PRIMARY KEY, "buffer_info" TEXT NOT NULL)',
    'CREATE TABLE "expression" ("input_checksum" CHAR(64) NOT NULL, "path" VARCHAR(100) NOT NULL, "celltype" VARCHAR(20) NOT NULL, "target_celltype" VARCHAR(20) NOT NULL, "validator" CHAR(64), "validator_language" VARCHAR(20), "result" CHAR(64) NOT NULL, PRIMARY KEY ("input_checksum", "path", "celltype", "target_celltype"))',
    'CREATE INDEX "expression_result" ON "expression" ("result")',
    'CREATE TABLE "irreproducible_transformation" ("id" INTEGER NOT NULL PRIMARY KEY, "result" CHAR(64) NOT NULL, "checksum" CHAR(64) NOT NULL, "metadata" TEXT NOT NULL)',
    'CREATE INDEX "irreproducible_transformation_result" ON "irreproducible_transformation" ("result")',
    'CREATE INDEX "irreproducible_transformation_checksum" ON "irreproducible_transformation" ("checksum")',
    'CREATE TABLE "meta_data" ("checksum" CHAR(64) NOT NULL PRIMARY KEY, "result" CHAR(64) NOT NULL, "metadata" TEXT NOT NULL)',
    'CREATE INDEX "meta_data_result" ON "meta_data" ("result")',
    'CREATE TABLE "rev_transformation" ("id" INTEGER NOT NULL PRIMARY KEY, "result" CHAR(64) NOT NULL, "checksum" CHAR(64) NOT NULL)',
    'CREATE INDEX "rev_transformation_result" ON "rev_transformation" ("result")',
    'CREATE TABLE "syntactic_to_semantic" ("syntactic" CHAR(64) NOT NULL, "celltype" TEXT NOT NULL, "subcelltype" TEXT NOT NULL, "semantic" CHAR(64) NOT NULL, PRIMARY KEY ("syntactic", "celltype", "subcelltype", "semantic"))',
    'CREATE INDEX "syntactic_to_semantic_syntactic" ON "syntactic_to_semantic" ("syntactic")',
    'CREATE INDEX "syntactic_to_semantic_semantic" ON "syntactic_to_semantic" ("semantic")',
    'CREATE TABLE "transformation" ("checksum" CHAR(64) NOT NULL PRIMARY KEY, "result" CHAR(64) NOT NULL)',
    'CREATE INDEX "transformation_result" ON "transformation" ("result")',
]
BUCKET_KINDS = ("node", "environment", "node_env", "queue", "queue_node")
# An entry of a command's result index as an expression row, "path [P] of the deep cell
# INDEX is FILE": celltype plain, since upstream serializes a deepfolder as plain (and
# its database takes a non-empty path only for mixed, plain or binary); target celltype
# bytes, since an entry is the checksum of the file's exact bytes, as a deepfolder's are.
INDEX_ENTRY = ("plain", "bytes")
METADATA_CONFLICT = "Execution record already exists with different metadata"


class DBError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


class Malformed(DBError):
    pass


class Conflict(DBError):
    pass


class NotFound(DBError):
    pass


class ReadOnly(DBError):
    pass


class NoSpace(DBError):
    pass


class _LazyJson:
    """json, imported on first use: most opens of the file never need it."""

    def __getattr__(self, name):
        import json as module

        globals()["json"] = module
        return getattr(module, name)


json = _LazyJson()


def checksum_arg(value, what="checksum"):
    try:
        return parse_checksum(value)
    except ValueError as exc:
        raise Malformed(f"ERROR: Malformed request: {what}: {exc}") from None


def _json_text(value) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise Malformed(f"ERROR: Malformed request: value is not storable as JSON: {exc}") from None


class ResultDB:
    """transformation -> result, reverse lookups and execution records in a seamless.db."""

    def __init__(self, path, writable=False, timeout=BUSY_TIMEOUT):
        self.path = os.path.abspath(os.fspath(path))
        self.writable = writable
        self.timeout = timeout
        if not writable and not os.path.exists(self.path):
            raise DBError(f"database file {self.path} does not exist (create it with --writable)")
        self._local = threading.local()
        self._write_lock = threading.Lock()  # one writer per process; SQLite locks across processes
        self._check_schema(self.connection())

    # --- connections ------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self):
        try:
            return self._open()
        except sqlite3.Error as exc:
            raise self._failure(exc, f"cannot open database {self.path}: {exc}") from None

    def _failure(self, exc, message):
        """NoSpace if a failed SQLite call failed for a full disk (or quota), else DBError."""
        if _disk_full(exc):
            return _no_space(self.path)
        # a full disk while SQLite creates a file (the database, its -wal or -shm) is
        # "disk I/O error" or "unable to open database file": try writing to tell
        if self.writable and _code(exc) in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
            if _out_of_space(os.path.dirname(self.path)):
                return _no_space(self.path)
        return DBError(message)

    def _open(self):
        if self.writable:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                _to_wal(conn, self.timeout)
        else:
            conn = self._open_readonly("?mode=ro")
            try:
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
            except sqlite3.OperationalError:
                if not self._quiescent_wal():
                    raise
                # a WAL database in a directory we cannot write, with no -wal to share:
                # no writer is or was mid-transaction, so read it as an immutable snapshot
                conn.close()
                conn = self._open_readonly("?mode=ro&immutable=1")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-64000")
        return conn

    def _quiescent_wal(self) -> bool:
        """WAL mode in the file header, and no -wal or -journal beside it."""
        if os.path.exists(self.path + "-wal") or os.path.exists(self.path + "-journal"):
            return False
        try:
            with open(self.path, "rb") as f:
                header = f.read(20)
        except OSError:
            return False
        return header.startswith(b"SQLite format 3\x00") and header[18:20] == b"\x02\x02"

    def _open_readonly(self, query):
        return sqlite3.connect("file:" + _uri_path(self.path) + query, uri=True, timeout=self.timeout,
                               isolation_level=None, check_same_thread=False)

    def _check_schema(self, conn):
        try:
            rows = conn.execute("SELECT name, sql FROM sqlite_master").fetchall()
        except sqlite3.DatabaseError as exc:
            if _code(exc) in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                raise DBError(f"{self.path} is not a seamless database: {exc}") from None
            raise self._failure(exc, f"cannot read database {self.path}: {exc}") from None
        existing = {name: sql for name, sql in rows}
        old_meta = existing.get("meta_data")
        if old_meta is not None and '"result"' not in old_meta:
            # upstream's pre-2.0 two-column meta_data: dropped when empty, like upstream
            if conn.execute('SELECT COUNT(*) FROM "meta_data"').fetchone()[0]:
                raise DBError(f"{self.path} has a legacy, non-empty meta_data table; migrate it with upstream seamless-database first")
            if self.writable:
                with self.transaction() as c:
                    c.execute('DROP TABLE "meta_data"')
                del existing["meta_data"]
        missing = [sql for sql in SCHEMA if sql.split('"')[1] not in existing]
        if not missing:
            return
        if not self.writable:
            raise DBError(f"{self.path} is not a complete seamless database (open it with --writable to create the tables)")
        with self.transaction() as c:
            for sql in missing:
                name = sql.split('"')[1]
                if c.execute("SELECT 1 FROM sqlite_master WHERE name=?", (name,)).fetchone() is None:
                    c.execute(sql)

    def transaction(self):
        if not self.writable:
            raise ReadOnly("ERROR: Database server is read-only")
        return _Transaction(self)

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _one(self, sql, args):
        row = self.connection().execute(sql, args).fetchone()
        return None if row is None else row[0]

    # --- transformation -----------------------------------------------------------------

    def get_transformation(self, tf):
        return self._one('SELECT result FROM "transformation" WHERE checksum=?', (checksum_arg(tf),))

    def set_transformation(self, tf, result):
        tf = checksum_arg(tf)
        result = checksum_arg(result, "value must be a checksum")
        with self.transaction() as c:
            _set_transformation(c, tf, result)

    def get_rev_transformations(self, result):
        rows = self.connection().execute(
            'SELECT DISTINCT checksum FROM "rev_transformation" WHERE result=? ORDER BY id',
            (checksum_arg(result),)).fetchall()
        return [r[0] for r in rows] or None

    # --- execution records ------------------------------------------------------------

    def get_metadata(self, tf):
        text = self._one('SELECT metadata FROM "meta_data" WHERE checksum=?', (checksum_arg(tf),))
        return None if text is None else json.loads(text)

    def set_metadata(self, tf, result, value):
        """Write-once execution record. Returns False if a different record exists."""
        tf = checksum_arg(tf)
        result = checksum_arg(result, "result")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not (
            isinstance(value, dict)
            and type(value.get("schema_version")) is int
            and value.get("tf_checksum") == tf
            and value.get("result_checksum") == result
            and _valid_checksum_fields(value.get("checksum_fields"))
        ):
            raise Malformed("ERROR: Malformed PUT metadata request")
        text = _json_text(value)
        with self.transaction() as c:
            if c.execute('SELECT 1 FROM "irreproducible_transformation" WHERE checksum=?', (tf,)).fetchone():
                raise Conflict("ERROR: Transformation already has irreproducible records")
            row = c.execute('SELECT result FROM "transformation" WHERE checksum=?', (tf,)).fetchone()
            if row is not None and row[0] != result:
                raise Conflict("ERROR: Transformation result does not match execution record result")
            row = c.execute('SELECT result, metadata FROM "meta_data" WHERE checksum=?', (tf,)).fetchone()
            if row is not None:
                if row[0] != result:
                    raise Conflict("ERROR: Execution record result does not match stored metadata result")
                if json.loads(row[1]) != value:
                    return False
            else:
                c.execute('INSERT INTO "meta_data" (checksum, result, metadata) VALUES (?, ?, ?)',
                          (tf, result, text))
            _set_transformation(c, tf, result)
        return True

    def get_irreproducible(self, tf, result=None):
        sql = 'SELECT checksum, result, metadata FROM "irreproducible_transformation" WHERE checksum=?'
        args = [checksum_arg(tf)]
        if result is not None:
            sql += " AND result=?"
            args.append(checksum_arg(result, "result"))
        rows = self.connection().execute(sql + " ORDER BY id", args).fetchall()
        out = []
        for checksum, res, meta in rows:
            try:
                meta = json.loads(meta)
            except ValueError:
                pass
            out.append({"checksum": checksum, "result": res, "metadata": meta})
        return out or None

    def set_irreproducible(self, tf, result):
        """Record that tf gave `result` irreproducibly; forget its cached result."""
        tf = checksum_arg(tf)
        if result is None:
            raise Malformed("ERROR: Malformed 'irreproducible' request: 'result' is required")
        result = checksum_arg(result, "result")
        with self.transaction() as c:
            row = c.execute('SELECT result FROM "transformation" WHERE checksum=?', (tf,)).fetchone()
            if row is not None and row[0] != result:
                raise Conflict("ERROR: Transformation does not have the irreproducible result")
            meta = c.execute('SELECT result, metadata FROM "meta_data" WHERE checksum=?', (tf,)).fetchone()
            if meta is not None and meta[0] != result:
                raise Conflict("ERROR: Execution record result does not match the irreproducible result")
            text = meta[1] if meta is not None else '""'
            if not c.execute('SELECT 1 FROM "irreproducible_transformation" WHERE checksum=? AND result=?',
                             (tf, result)).fetchone():  # once per (tf, result); upstream repeats rows
                c.execute('INSERT INTO "irreproducible_transformation" (result, checksum, metadata) VALUES (?, ?, ?)',
                          (result, tf, text))
            c.execute('DELETE FROM "transformation" WHERE checksum=?', (tf,))
            c.execute('DELETE FROM "rev_transformation" WHERE checksum=? AND result=?', (tf, result))
            c.execute('DELETE FROM "meta_data" WHERE checksum=?', (tf,))

    # --- what the cache holds (seamless-cache) -------------------------------------------

    def result_rows(self):
        """[(transformation, result)] of every cached result."""
        return self.connection().execute('SELECT checksum, result FROM "transformation"').fetchall()

    def records(self):
        """[(transformation, result, execution record text or None)] of every cached result."""
        return self.connection().execute(
            'SELECT t.checksum, t.result, m.metadata FROM "transformation" t '
            'LEFT JOIN "meta_data" m ON m.checksum = t.checksum').fetchall()

    def table_sizes(self) -> dict:
        """Rows per table, for stats: results, execution records, irreproducible ones."""
        one = lambda table: self._one(f'SELECT COUNT(*) FROM "{table}"', ())  # noqa: E731
        return {"results": one("transformation"), "records": one("meta_data"),
                "irreproducible": one("irreproducible_transformation")}

    def stray_records(self):
        """Reverse rows and execution records whose transformation row is gone, and
        expression rows (input, result) whose input is no row's result: pairs that
        forget() removes."""
        conn = self.connection()
        rev = conn.execute('SELECT DISTINCT r.checksum, r.result FROM "rev_transformation" r WHERE NOT EXISTS '
                           '(SELECT 1 FROM "transformation" t WHERE t.checksum = r.checksum AND t.result = r.result)')
        meta = conn.execute('SELECT m.checksum, m.result FROM "meta_data" m WHERE NOT EXISTS '
                            '(SELECT 1 FROM "transformation" t WHERE t.checksum = m.checksum)')
        expression = conn.execute('SELECT DISTINCT e.input_checksum, e.result FROM "expression" e WHERE NOT EXISTS '
                                  '(SELECT 1 FROM "transformation" t WHERE t.result = e.input_checksum)')
        return rev.fetchall() + meta.fetchall() + expression.fetchall()

    def forget(self, rows, keep=None):
        """Delete result rows [(transformation, result)] with their reverse rows and
        execution records, in one transaction. `keep(rows)`, called inside it (no one
        can write meanwhile), returns those that must stay after all."""
        with self.transaction() as c:
            if keep is not None:
                kept = set(keep(rows))
                rows = [row for row in rows if row not in kept]
            forget_rows(c, rows)
        return rows

    def add_counts(self, counts):
        """Add to the hit/miss counters (kept in a table of ours; upstream ignores it)."""
        with self.transaction() as c:
            c.execute(COUNTERS)
            c.executemany('INSERT INTO "seamless_counter" (name, value) VALUES (?, ?) '
                          "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", list(counts.items()))

    def counts(self) -> dict:
        try:
            rows = self.connection().execute('SELECT name, value FROM "seamless_counter"').fetchall()
        except sqlite3.OperationalError:  # never counted
            return {}
        return dict(rows)

    # --- bucket probes ----------------------------------------------------------------

    def get_bucket_probe(self, kind, label):
        _check_bucket_key(kind, label)
        row = self.connection().execute(
            'SELECT bucket_checksum, captured_at, freshness_tokens FROM "bucket_probe" WHERE bucket_kind=? AND label=?',
            (kind, label)).fetchone()
        if row is None:
            return None
        return {"bucket_kind": kind, "label": label, "bucket_checksum": row[0],
                "captured_at": row[1], "freshness_tokens": json.loads(row[2])}

    def set_bucket_probe(self, kind, label, bucket_checksum, captured_at, freshness_tokens):
        _check_bucket_key(kind, label)
        try:
            bucket_checksum = parse_checksum(bucket_checksum)
        except ValueError:
            raise Malformed("ERROR: Malformed PUT bucket_probe request: bucket_checksum") from None
        if not isinstance(captured_at, str) or not captured_at or not isinstance(freshness_tokens, dict):
            raise Malformed("ERROR: Malformed PUT bucket_probe request: captured_at must be a non-empty string, freshness_tokens an object")
        with self.transaction() as c:
            c.execute('INSERT OR REPLACE INTO "bucket_probe" (bucket_kind, label, bucket_checksum, captured_at, freshness_tokens) '
                      "VALUES (?, ?, ?, ?, ?)", (kind, label, bucket_checksum, captured_at, _json_text(freshness_tokens)))

    # --- older request types (kept for upstream parity) ---------------------------------

    def get_buffer_info(self, cs):
        text = self._one('SELECT buffer_info FROM "buffer_info" WHERE checksum=?', (checksum_arg(cs),))
        return None if text is None else json.loads(text)

    def set_buffer_info(self, cs, value):
        cs = checksum_arg(cs)
        if not isinstance(value, dict):
            raise Malformed("ERROR: Malformed buffer_info request: value must be an object")
        for key, item in value.items():
            if key == "length" and (type(item) is not int or item < 0):
                raise Malformed("ERROR: Malformed buffer_info request: length must be an integer >= 0")
            if key.startswith("is_") and type(item) is not bool:
                raise Malformed(f"ERROR: Malformed buffer_info request: {key} must be a boolean")
        with self.transaction() as c:
            row = c.execute('SELECT buffer_info FROM "buffer_info" WHERE checksum=?', (cs,)).fetchone()
            merged = {**(json.loads(row[0]) if row else {}), **value}
            c.execute('INSERT OR REPLACE INTO "buffer_info" (checksum, buffer_info) VALUES (?, ?)',
                      (cs, json.dumps(merged, sort_keys=True, indent=2)))

    def get_semantic_to_syntactic(self, semantic, celltype, subcelltype):
        rows = self.connection().execute(
            'SELECT syntactic FROM "syntactic_to_semantic" WHERE semantic=? AND celltype=? AND subcelltype=?',
            (checksum_arg(semantic), str(celltype), str(subcelltype))).fetchall()
        return [r[0] for r in rows] or None

    def get_syntactic_to_semantic(self, syntactic, celltype, subcelltype):
        rows = self.connection().execute(
            'SELECT semantic FROM "syntactic_to_semantic" WHERE syntactic=? AND celltype=? AND subcelltype=?',
            (checksum_arg(syntactic), str(celltype), str(subcelltype))).fetchall()
        return [r[0] for r in rows] or None

    def set_semantic_to_syntactic(self, semantic, celltype, subcelltype, syntactics):
        semantic = checksum_arg(semantic)
        if not isinstance(syntactics, list):
            raise Malformed("ERROR: Malformed semantic_to_syntactic request: value must be a list of checksums")
        syntactics = [checksum_arg(s, "value") for s in syntactics]
        with self.transaction() as c:
            c.executemany('INSERT OR IGNORE INTO "syntactic_to_semantic" (syntactic, celltype, subcelltype, semantic) '
                          "VALUES (?, ?, ?, ?)", [(s, str(celltype), str(subcelltype), semantic) for s in syntactics])

    def get_expression(self, cs, path, celltype, target_celltype):
        key = _expression_key(cs, path, celltype, target_celltype)
        return self._one('SELECT result FROM "expression" WHERE input_checksum=? AND path=? AND celltype=? '
                         "AND target_celltype=?", key)

    def set_expression(self, cs, path, celltype, target_celltype, result):
        key = _expression_key(cs, path, celltype, target_celltype)
        result = checksum_arg(result, "value")
        with self.transaction() as c:
            c.execute('INSERT OR REPLACE INTO "expression" (input_checksum, path, celltype, target_celltype, result) '
                      "VALUES (?, ?, ?, ?, ?)", (*key, result))

    def set_index_expressions(self, index, entries):
        """One expression row per entry {path: file checksum} of result index `index`, in
        one transaction; entries upstream's columns cannot hold (a path over 100
        characters) are left out. Returns how many rows were written."""
        rows = []
        for path, cs in entries.items():
            try:
                rows.append((*_expression_key(index, [path], *INDEX_ENTRY), checksum_arg(cs, "value")))
            except Malformed:
                continue
        if rows:
            with self.transaction() as c:
                c.executemany('INSERT OR REPLACE INTO "expression" (input_checksum, path, celltype, target_celltype, '
                              "result) VALUES (?, ?, ?, ?, ?)", rows)
        return len(rows)

    def get_rev_expression(self, result):
        rows = self.connection().execute(
            'SELECT input_checksum, path, celltype, target_celltype, result FROM "expression" WHERE result=?',
            (checksum_arg(result),)).fetchall()
        return [{"checksum": r[0], "path": json.loads(r[1]), "celltype": r[2], "target_celltype": r[3],
                 "result": r[4]} for r in rows] or None


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT: take the write lock up front, so concurrent writers
    queue on the busy timeout instead of failing with "database is locked"."""

    def __init__(self, db):
        self.db = db
        self.conn = db.connection()

    def __enter__(self):
        self.db._write_lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self.db._write_lock.release()
            raise DBError(f"database {self.db.path} is busy: {exc}") from None
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                try:
                    self.conn.execute("COMMIT")
                    return False
                except sqlite3.Error as error:
                    exc = error
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolls back by itself after some errors (a full disk among them)
        finally:
            self.db._write_lock.release()
        if isinstance(exc, sqlite3.Error) and isinstance(failure := self.db._failure(exc, ""), NoSpace):
            raise failure from None
        if exc_type is None:
            raise exc
        return False


COUNTERS = 'CREATE TABLE IF NOT EXISTS "seamless_counter" ("name" TEXT NOT NULL PRIMARY KEY, "value" REAL NOT NULL)'


def forget_rows(c, rows):
    """Delete result rows and what hangs on them (reverse rows, execution records, and the
    expression rows of a result index that no other row has as its result, so that none
    points into a deleted index); given a stray pair (index, file), the stray rows of that
    index go too."""
    for tf, result in rows:
        c.execute('DELETE FROM "transformation" WHERE checksum=? AND result=?', (tf, result))
        c.execute('DELETE FROM "rev_transformation" WHERE checksum=? AND result=?', (tf, result))
        c.execute('DELETE FROM "meta_data" WHERE checksum=? AND result=?', (tf, result))
    inputs = {cs for row in rows for cs in row}  # a stray pair's index is in the first place
    c.executemany('DELETE FROM "expression" WHERE input_checksum=? AND NOT EXISTS '
                  '(SELECT 1 FROM "transformation" WHERE result=?)', ((cs, cs) for cs in inputs))


def _set_transformation(c, tf, result):
    row = c.execute('SELECT result FROM "transformation" WHERE checksum=?', (tf,)).fetchone()
    if row is None:
        c.execute('INSERT INTO "transformation" (checksum, result) VALUES (?, ?)', (tf, result))
    elif row[0] != result:  # last writer wins, as upstream; but no stale reverse row
        c.execute('UPDATE "transformation" SET result=? WHERE checksum=?', (result, tf))
        c.execute('DELETE FROM "rev_transformation" WHERE checksum=? AND result=?', (tf, row[0]))
    if not c.execute('SELECT 1 FROM "rev_transformation" WHERE result=? AND checksum=?', (result, tf)).fetchone():
        c.execute('INSERT INTO "rev_transformation" (result, checksum) VALUES (?, ?)', (result, tf))


def _to_wal(conn, timeout):
    """Switch a (new) database file to WAL. The switch needs the file to itself, and SQLite
    may answer "database is locked" at once instead of waiting (another process is
    creating the same file): wait for it here, up to the busy timeout."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _no_space(path):
    return NoSpace(f"no space left on the disk of database {path}: nothing was written (free some space and retry)")


# SQLite's messages for its primary result codes, for Pythons without sqlite_errorcode (< 3.11)
_MESSAGES = {"database or disk is full": sqlite3.SQLITE_FULL, "disk I/O error": sqlite3.SQLITE_IOERR,
             "unable to open database file": sqlite3.SQLITE_CANTOPEN,
             "file is not a database": sqlite3.SQLITE_NOTADB,
             "database disk image is malformed": sqlite3.SQLITE_CORRUPT}


def _code(exc):
    """SQLite's primary result code of an exception (None if it is not SQLite's)."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    return code & 0xFF if code is not None else _MESSAGES.get(str(exc))


def _disk_full(exc) -> bool:
    return _code(exc) == sqlite3.SQLITE_FULL


def _out_of_space(directory, probe=256 << 10) -> bool:
    """Can a file of `probe` bytes (about what a new database needs: pages, WAL, shared
    memory) not be written in `directory` for lack of space, inodes or quota? Asked only
    after SQLite failed, whose errors do not always say so."""
    import errno
    import tempfile

    full = (errno.ENOSPC, errno.EDQUOT)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".seamless-space-")
    except OSError as exc:
        return exc.errno in full
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(probe))  # random: a compressing filesystem must store it all
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return exc.errno in full
    finally:
        os.unlink(tmp)
    return False


def _valid_checksum_fields(fields):
    return fields is None or (isinstance(fields, list) and all(isinstance(f, str) and f for f in fields))


def _check_bucket_key(kind, label):
    if kind not in BUCKET_KINDS or not isinstance(label, str) or not label:
        raise Malformed(f"ERROR: Malformed bucket_probe request: bucket_kind must be one of {', '.join(BUCKET_KINDS)} "
                        "and label a non-empty string")


def _expression_key(cs, path, celltype, target_celltype):
    cs = checksum_arg(cs)
    path_text = json.dumps(path)
    ok = (isinstance(celltype, str) and isinstance(target_celltype, str) and len(path_text) <= 100
          and len(celltype) <= 20 and len(target_celltype) <= 20
          and (not path or celltype in ("mixed", "plain", "binary")))
    if not ok:
        raise Malformed("ERROR: Malformed expression request (constraint violation)")
    return cs, path_text, celltype, target_celltype


def _uri_path(path):
    from urllib.parse import quote

    return quote(path)
