"""seamless-db: the transformation-result database over HTTP, wire-compatible with upstream.

Every request is GET (read) or PUT (write) on any path with a JSON object body whose
"type" names the request; GET /healthcheck answers OK. The logic lives in ResultDB;
this module maps requests to its methods and its errors to status codes.
"""

import argparse
import json
import os

from seamless.cli import UserError, set_debug
from seamless.servers.http import Handler, add_server_arguments, make_server
from seamless.servers.service import serve
from seamless.store.sqlitedb import (METADATA_CONFLICT, PROTOCOL, Conflict, DBError, Malformed, NoSpace, NotFound,
                                     ReadOnly, ResultDB)

# the answer to each database error (any other: 500)
STATUS = {Malformed: 400, Conflict: 409, NotFound: 404, ReadOnly: 405, NoSpace: 507}

MAX_BODY = 64 << 20


def _get(rq, key):
    if key not in rq:
        raise Malformed(f"ERROR: Malformed request: missing '{key}'")
    return rq[key]


def _celltypes(rq):
    return _get(rq, "celltype"), _get(rq, "subcelltype")


def _expression(rq):
    return _get(rq, "checksum"), _get(rq, "path"), _get(rq, "celltype"), _get(rq, "target_celltype")


READS = {
    "protocol": lambda db, rq: PROTOCOL,
    "transformation": lambda db, rq: db.get_transformation(_get(rq, "checksum")),
    "rev_transformations": lambda db, rq: db.get_rev_transformations(_get(rq, "checksum")),
    "metadata": lambda db, rq: db.get_metadata(_get(rq, "checksum")),
    "irreproducible": lambda db, rq: db.get_irreproducible(_get(rq, "checksum"), rq.get("result")),
    "bucket_probe": lambda db, rq: db.get_bucket_probe(rq.get("bucket_kind"), rq.get("label")),
    "buffer_info": lambda db, rq: db.get_buffer_info(_get(rq, "checksum")),
    "semantic_to_syntactic": lambda db, rq: db.get_semantic_to_syntactic(_get(rq, "checksum"), *_celltypes(rq)),
    "syntactic_to_semantic": lambda db, rq: db.get_syntactic_to_semantic(_get(rq, "checksum"), *_celltypes(rq)),
    "expression": lambda db, rq: db.get_expression(*_expression(rq)),
    "rev_expression": lambda db, rq: db.get_rev_expression(_get(rq, "checksum")),
}

def _put_metadata(db, rq):
    if not db.set_metadata(_get(rq, "checksum"), _get(rq, "result"), _get(rq, "value")):
        raise Conflict("ERROR: " + METADATA_CONFLICT)  # upstream clients match this text


WRITES = {
    "transformation": lambda db, rq: db.set_transformation(_get(rq, "checksum"), _get(rq, "value")),
    "metadata": _put_metadata,
    "irreproducible": lambda db, rq: db.set_irreproducible(_get(rq, "checksum"), rq.get("result")),
    "bucket_probe": lambda db, rq: db.set_bucket_probe(
        rq.get("bucket_kind"), rq.get("label"), rq.get("bucket_checksum"), rq.get("captured_at"),
        rq.get("freshness_tokens")),
    "buffer_info": lambda db, rq: db.set_buffer_info(_get(rq, "checksum"), _get(rq, "value")),
    "semantic_to_syntactic": lambda db, rq: db.set_semantic_to_syntactic(
        _get(rq, "checksum"), *_celltypes(rq), _get(rq, "value")),
    "expression": lambda db, rq: db.set_expression(*_expression(rq), _get(rq, "value")),
}


def answer(db: ResultDB, method: str, body: bytes):
    """(status, body text, content type) for one database request."""
    try:
        rq = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return 400, "ERROR: Malformed request: the body must be a JSON object", None
    if not isinstance(rq, dict):
        return 400, "ERROR: Malformed request: the body must be a JSON object", None
    kind = rq.get("type")
    table = READS if method in ("GET", "HEAD") else WRITES
    if not isinstance(kind, str) or kind not in table:
        known = ", ".join(sorted(table))
        return 400, f"ERROR: Malformed request: unknown {method} request type {kind!r} (known: {known})", None
    try:
        if table is WRITES and not db.writable:
            raise ReadOnly("ERROR: Database server is read-only")
        result = table[kind](db, rq)
    except DBError as exc:
        return next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500), exc.message, None
    except UnicodeEncodeError:  # a lone surrogate from JSON cannot be stored as text
        return 400, "ERROR: Malformed request: strings must be valid Unicode", None
    if table is WRITES:
        return 200, "OK", None
    if result is None:
        return 404, "ERROR: Unknown key", None
    if kind in ("transformation", "expression"):
        return 200, result, None  # bare hex, as upstream clients expect
    return 200, json.dumps(result), "application/json"


class DatabaseHandler(Handler):
    server_version = "seamless-db"

    def route(self, method, path):
        status, text, ctype = answer(self.server.db, method, self.body.read(MAX_BODY))
        self.respond(status, text, ctype or "text/plain; charset=utf-8")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="seamless-db",
        description="Serve a seamless.db transformation-result database over HTTP "
        "(protocol-compatible with upstream seamless-database).",
    )
    parser.add_argument("dbfile", help="the SQLite file (created with --writable if missing)")
    add_server_arguments(parser)
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    set_debug(args.verbose)
    args.dbfile = os.path.expanduser(args.dbfile)
    if not args.writable and not os.path.exists(args.dbfile):
        raise UserError(f"database file {args.dbfile} does not exist (start with --writable to create it)")
    server = make_server(DatabaseHandler, args)

    def start(parameters):
        try:
            server.db = ResultDB(args.dbfile, writable=args.writable)
        except DBError as exc:
            raise UserError(exc.message) from None

    mode = "writable" if args.writable else "read-only"
    return serve(server, args, f"serving database {args.dbfile} ({mode})", start)
