"""seamless-db and the seamless.db file: upstream protocol, schema and state machine."""

import hashlib
import http.client
import json
import multiprocessing
import sqlite3
import subprocess

import pytest

from seamless.store.httpdb import HttpResultDB
from seamless.store.sqlitedb import SCHEMA, Conflict, DBError, Malformed, ReadOnly, ResultDB


def h(text):
    return hashlib.sha256(text.encode()).hexdigest()


TF, RES, RES2 = h("tf"), h("result"), h("other result")


def record(tf=TF, result=RES, **extra):
    return {"schema_version": 1, "tf_checksum": tf, "result_checksum": result, **extra}


@pytest.fixture(params=["file", "http"])
def db(request, tmp_path):
    """The same interface, on the file directly and through seamless-db."""
    if request.param == "file":
        yield ResultDB(tmp_path / "seamless.db", writable=True)
    else:
        server = request.getfixturevalue("dbserver")
        yield HttpResultDB(server.url, writable=True)


def call(server, method, body):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, "/", body=body if isinstance(body, bytes) else json.dumps(body).encode())
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


# --- the interface, file and HTTP alike ------------------------------------------------


def test_transformation_roundtrip(db):
    assert db.get_transformation(TF) is None
    db.set_transformation(TF, RES)
    assert db.get_transformation(TF) == RES
    assert db.get_rev_transformations(RES) == [TF]


def test_no_duplicate_reverse_rows(db):
    for _ in range(3):
        db.set_transformation(TF, RES)
    assert db.get_rev_transformations(RES) == [TF]
    # overwrite (last writer wins, as upstream) leaves no stale reverse row
    db.set_transformation(TF, RES2)
    assert db.get_transformation(TF) == RES2
    assert db.get_rev_transformations(RES) is None
    assert db.get_rev_transformations(RES2) == [TF]


def test_metadata_write_once(db):
    assert db.get_metadata(TF) is None
    assert db.set_metadata(TF, RES, record(wall_time_seconds=1.5)) is True
    assert db.get_metadata(TF) == record(wall_time_seconds=1.5)
    assert db.get_transformation(TF) == RES  # the record creates the result row
    assert db.set_metadata(TF, RES, record(wall_time_seconds=1.5)) is True  # same body: fine
    assert db.set_metadata(TF, RES, record(wall_time_seconds=9.0)) is False  # different: refused


def test_metadata_conflicts(db):
    db.set_transformation(TF, RES2)
    with pytest.raises(Conflict, match="does not match"):
        db.set_metadata(TF, RES, record())
    with pytest.raises(Malformed):
        db.set_metadata(TF, RES, {"schema_version": "1", "tf_checksum": TF, "result_checksum": RES})
    with pytest.raises(Malformed):
        db.set_metadata(TF, RES, record(tf=h("elsewhere")))


def test_irreproducible(db):
    db.set_metadata(TF, RES, record())
    with pytest.raises(Conflict):
        db.set_irreproducible(TF, RES2)
    db.set_irreproducible(TF, RES)
    db.set_irreproducible(TF, RES)  # no duplicate row
    rows = db.get_irreproducible(TF)
    assert rows == [{"checksum": TF, "result": RES, "metadata": record()}]
    assert db.get_irreproducible(TF, RES2) is None
    assert db.get_transformation(TF) is None and db.get_metadata(TF) is None
    with pytest.raises(Conflict, match="irreproducible"):
        db.set_metadata(TF, RES, record())
    # a tf without any row can be marked too; metadata is then ""
    db.set_irreproducible(h("fresh"), RES)
    assert db.get_irreproducible(h("fresh"))[0]["metadata"] == ""


def test_bucket_probe(db):
    assert db.get_bucket_probe("node", "n1") is None
    db.set_bucket_probe("node", "n1", RES, "2026-11-21T10:00:00", {"kernel": "6.1"})
    db.set_bucket_probe("node", "n1", RES2, "2026-11-21T11:00:00", {})
    assert db.get_bucket_probe("node", "n1") == {
        "bucket_kind": "node", "label": "n1", "bucket_checksum": RES2,
        "captured_at": "2026-11-21T11:00:00", "freshness_tokens": {}}
    with pytest.raises(Malformed):
        db.set_bucket_probe("planet", "n1", RES, "now", {})
    with pytest.raises(Malformed):
        db.set_bucket_probe("node", "n1", RES, "", {})


def test_buffer_info_merges(db):
    db.set_buffer_info(RES, {"length": 5, "is_utf8": True})
    db.set_buffer_info(RES, {"is_json": False})
    assert db.get_buffer_info(RES) == {"length": 5, "is_utf8": True, "is_json": False}
    with pytest.raises(Malformed):
        db.set_buffer_info(RES, {"length": -1})


def test_invalid_checksums_are_malformed(db):
    for bad in ("abc", "z" * 64, 12):
        with pytest.raises(Malformed):
            db.get_transformation(bad)
        with pytest.raises(Malformed):
            db.set_transformation(TF, bad)


# --- the wire ------------------------------------------------------------------------------


def test_protocol_and_bare_hex(dbserver):
    assert call(dbserver, "GET", {"type": "protocol"}) == (200, '["seamless", "database", "2.2"]')
    assert call(dbserver, "PUT", {"type": "transformation", "checksum": TF, "value": RES}) == (200, "OK")
    assert call(dbserver, "GET", {"type": "transformation", "checksum": TF}) == (200, RES)
    assert call(dbserver, "GET", {"type": "transformation", "checksum": RES}) == (404, "ERROR: Unknown key")
    assert call(dbserver, "GET", {"type": "rev_transformations", "checksum": RES}) == (200, json.dumps([TF]))


def test_exact_conflict_text(dbserver):
    call(dbserver, "PUT", {"type": "metadata", "checksum": TF, "result": RES, "value": record()})
    status, text = call(dbserver, "PUT", {"type": "metadata", "checksum": TF, "result": RES,
                                          "value": json.dumps(record(extra=1))})
    assert (status, text) == (409, "ERROR: Execution record already exists with different metadata")


@pytest.mark.parametrize("method,body", [
    ("GET", b"not json"), ("PUT", b"not json"), ("GET", b"[1, 2]"), ("PUT", b'"text"'), ("GET", b""),
    ("GET", {"type": "nonsense"}), ("GET", {}), ("GET", {"type": "transformation"}),
    ("GET", {"type": "transformation", "checksum": "ab"}),
    ("GET", {"type": "transformation", "checksum": "ab" * 33}),
    ("PUT", {"type": "transformation", "checksum": TF, "value": "nope"}),
    ("PUT", {"type": "transformation", "checksum": TF}),
    ("PUT", {"type": "protocol"}),
    ("PUT", {"type": "metadata", "checksum": TF, "result": RES, "value": {"schema_version": 1}}),
    ("PUT", {"type": "metadata", "checksum": TF, "result": RES, "value": record(x=float("nan"))}),
    ("GET", {"type": "bucket_probe"}),
    ("GET", {"type": "expression", "checksum": TF, "path": ["x" * 200], "celltype": "plain",
             "target_celltype": "plain"}),
])
def test_malformed_requests_are_400(dbserver, method, body):
    if isinstance(body, dict):
        body = json.dumps(body, allow_nan=True).encode()
    status, text = call(dbserver, method, body)
    assert status == 400, text
    assert text.startswith("ERROR: Malformed")


def test_readonly_server_starts_and_reads(start_service, tmp_path):
    path = tmp_path / "ro.db"
    writer = ResultDB(path, writable=True)
    writer.set_transformation(TF, RES)
    writer.close()
    server = start_service("seamless-db", path)
    assert call(server, "GET", {"type": "transformation", "checksum": TF}) == (200, RES)
    assert call(server, "PUT", {"type": "transformation", "checksum": TF, "value": RES2}) == (
        405, "ERROR: Database server is read-only")
    with pytest.raises(ReadOnly):
        HttpResultDB(server.url, writable=True).set_transformation(TF, RES2)


def test_readonly_server_needs_the_file(tmp_path):
    from conftest import tool

    proc = subprocess.run([tool("seamless-db"), str(tmp_path / "missing.db"), "--port", "0"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "does not exist" in proc.stderr and proc.stderr.count("\n") == 1


def test_schema_is_upstreams(tmp_path):
    """The DDL text in sqlite_master is byte-identical to upstream seamless-database 2.1.0."""
    path = tmp_path / "s.db"
    ResultDB(path, writable=True).close()
    conn = sqlite3.connect(path)
    stored = [row[0] for row in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")]
    assert stored == SCHEMA
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_upstream_created_file_is_used(tmp_path):
    """A file made with upstream's DDL (journal DELETE, duplicate rev rows) works here."""
    path = tmp_path / "upstream.db"
    conn = sqlite3.connect(path)
    for sql in SCHEMA:
        conn.execute(sql)
    conn.execute('INSERT INTO "transformation" VALUES (?, ?)', (TF, RES))
    conn.execute('INSERT INTO "rev_transformation" (result, checksum) VALUES (?, ?)', (RES, TF))
    conn.execute('INSERT INTO "rev_transformation" (result, checksum) VALUES (?, ?)', (RES, TF))
    conn.execute('INSERT INTO "meta_data" VALUES (?, ?, ?)', (TF, RES, json.dumps(record())))
    conn.commit()
    conn.close()
    db = ResultDB(path)
    assert db.get_transformation(TF) == RES
    assert db.get_rev_transformations(RES) == [TF]
    assert db.get_metadata(TF) == record()


def test_legacy_meta_data_table(tmp_path):
    path = tmp_path / "legacy.db"
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE "meta_data" ("checksum" CHAR(64) NOT NULL PRIMARY KEY, "metadata" TEXT NOT NULL)')
    conn.commit()
    conn.close()
    ResultDB(path, writable=True)  # empty legacy table: dropped and recreated
    conn = sqlite3.connect(path)
    conn.execute('INSERT INTO "meta_data" VALUES (?, ?, ?)', (TF, RES, "{}"))
    conn.commit()
    conn.execute('DROP TABLE "meta_data"')
    conn.execute('CREATE TABLE "meta_data" ("checksum" CHAR(64) NOT NULL PRIMARY KEY, "metadata" TEXT NOT NULL)')
    conn.execute('INSERT INTO "meta_data" VALUES (?, ?)', (TF, "{}"))
    conn.commit()
    conn.close()
    with pytest.raises(DBError, match="legacy"):
        ResultDB(path, writable=True)


def test_not_a_database(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DBError, match="not a seamless database|cannot open"):
        ResultDB(path, writable=True)


# --- many writers at once ---------------------------------------------------------------


def _writer(target, worker, n, queue):
    """Write and read back n rows through a db file path or a server URL."""
    try:
        if str(target).startswith("http"):
            db = HttpResultDB(target, writable=True)
        else:
            db = ResultDB(target, writable=True)
        for i in range(n):
            tf = h(f"{target} {worker} {i}")
            db.set_transformation(tf, h(f"res {i}"))
            assert db.get_transformation(tf) == h(f"res {i}")
        queue.put(None)
    except Exception as exc:  # report, do not hang
        queue.put(repr(exc))


def test_server_and_direct_users_write_together(dbserver, tmp_path):
    path = tmp_path / "seamless.db"
    queue = multiprocessing.Queue()
    n = 150
    procs = [multiprocessing.Process(target=_writer, args=(target, w, n, queue))
             for target in (path, dbserver.url) for w in range(4)]
    for p in procs:
        p.start()
    errors = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    assert errors == [None] * len(procs)
    conn = sqlite3.connect(path)
    assert conn.execute('SELECT COUNT(*) FROM "transformation"').fetchone()[0] == 8 * n
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("body", [
    b"[" * 200000,
    b'{"type": "bucket_probe", "bucket_kind": "node", "label": "\\ud800"}',
    b'{"type": "semantic_to_syntactic", "checksum": "' + b"ab" * 32 + b'", "celltype": "\\ud800", "subcelltype": "x"}',
], ids=["deep-nesting", "surrogate-label", "surrogate-celltype"])
def test_hostile_json_is_400(dbserver, body):
    status, text = call(dbserver, "GET", body)
    assert status == 400, text
    assert call(dbserver, "GET", {"type": "protocol"})[0] == 200


def test_readonly_never_reads_a_crashed_writers_journal(tmp_path):
    """A hot rollback journal means uncommitted data in the file: no immutable fallback."""
    path = tmp_path / "rollback.db"
    conn = sqlite3.connect(path)
    for sql in SCHEMA:
        conn.execute(sql)
    conn.commit()
    conn.close()
    (tmp_path / "rollback.db-journal").write_bytes(b"\0" * 512)
    db = ResultDB.__new__(ResultDB)
    db.path = str(path)
    assert db._quiescent_wal() is False
    ResultDB(path, writable=True).close()  # now WAL, no journal
    (tmp_path / "rollback.db-journal").unlink(missing_ok=True)  # recovery removed it
    assert db._quiescent_wal() is True


# --- expression rows: a result file's entry in its result index ------------------------


def test_expression_rows(db):
    index, entry = h("index"), h("one\n")
    assert db.get_expression(index, ["out.txt"], "plain", "bytes") is None
    assert db.get_rev_expression(entry) is None
    db.set_expression(index, ["out.txt"], "plain", "bytes", entry)
    assert db.get_expression(index, ["out.txt"], "plain", "bytes") == entry
    assert db.get_expression(index, ["other.txt"], "plain", "bytes") is None
    assert db.get_rev_expression(entry) == [{"checksum": index, "path": ["out.txt"], "celltype": "plain",
                                             "target_celltype": "bytes", "result": entry}]
    with pytest.raises(Malformed, match="constraint violation"):  # upstream's column holds 100 characters
        db.set_expression(index, ["x" * 100], "plain", "bytes", entry)


def test_a_result_file_kept_through_a_database_server_is_fingertipped(dbserver, bufferdir, tmp_path):
    """seamless-run -cp writes the entry rows through the server; seamless-fingertip
    follows them back to the result index when the file's buffer is gone."""
    import os

    from conftest import tool

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env["SEAMLESS_REMOTE_CLIENTS"] = json.dumps({"buffer": [{"directory": str(bufferdir), "readonly": False}],
                                                 "database": [{"url": dbserver.url, "readonly": False}]})
    made = subprocess.run([tool("seamless-run"), "-cp", "out.txt", "echo one > out.txt"], cwd=work, env=env,
                          capture_output=True, timeout=120)
    assert made.returncode == 0, made.stderr
    cs = h("one\n")
    assert (work / "out.txt.CHECKSUM").read_text().strip() == cs
    rows = HttpResultDB(dbserver.url).get_rev_expression(cs)
    assert [(r["path"], r["celltype"], r["target_celltype"]) for r in rows] == [(["out.txt"], "plain", "bytes")]
    (buffer,) = [p for p in bufferdir.rglob(cs) if p.is_file()]
    buffer.chmod(0o644)
    buffer.unlink()
    again = subprocess.run([tool("seamless-fingertip"), "out.txt"], cwd=work, env=env, capture_output=True,
                           timeout=120)
    assert again.returncode == 0 and again.stdout == b"one\n", again.stderr
    assert [p for p in bufferdir.rglob(cs) if p.is_file()]  # stored again
