"""Drive upstream Seamless's real remote client (seamless-remote 0.4.0) against
a given hashserver + database, to check wire compatibility.

Run with the UPSTREAM virtualenv's python:
    /tmp/upstream/venv/bin/python upstream_client.py \
        --hashserver http://127.0.0.1:PORT --database http://127.0.0.1:PORT

Prints one JSON object {"ok", "checks", "errors", "info"}; exit 0 iff all checks pass.
"""

import argparse
import asyncio
import json
import os
import sys
import traceback

import seamless
import seamless_config
from seamless import Buffer, Checksum
from seamless_remote import buffer_remote, database_remote

checks: dict[str, bool] = {}
errors: list[str] = []
info: dict = {}


async def check(name, awaitable):
    """Await one check; record True/False, and the exception text if it raised."""
    try:
        ok = bool(await awaitable)
    except Exception as exc:  # noqa: BLE001 - everything is reported
        ok = False
        errors.append(f"{name}: {type(exc).__name__}: {exc}")
        if os.environ.get("DEBUG_UPSTREAM_CLIENT"):
            traceback.print_exc()
    else:
        if not ok:
            errors.append(f"{name}: check returned False")
    checks[name] = ok


async def equals(awaitable, expected, key=None):
    """True if the awaited value equals `expected`; optionally keep it in info."""
    value = await awaitable
    if key:
        info[key] = value
    return value == expected


async def succeeds(awaitable):
    """True if the call completes without raising (for calls returning None)."""
    await awaitable
    return True


async def content_of(awaitable):
    buf = await awaitable
    return None if buf is None else buf.content


async def contains(awaitable, item):
    value = await awaitable
    return value is not None and item in value


def rand_cs() -> Checksum:
    """A random checksum, so reruns against a persistent database never collide."""
    return Checksum(os.urandom(32).hex())


async def main_async():
    db = database_remote
    # --- buffers (hashserver) ----------------------------------------------
    bufs = [
        Buffer(b"hello upstream client " + os.urandom(8).hex().encode()),
        Buffer(json.dumps({"a": 1, "nonce": os.urandom(8).hex()}).encode()),
        Buffer(os.urandom(5 * 1024 * 1024)),  # ~5 MB
    ]
    css = [b.get_checksum() for b in bufs]
    missing = rand_cs()

    # Buffer.write() is how seamless itself uploads: PUT /promise/<cs>, then PUT /<cs>
    await check("buffer_write_via_Buffer.write", bufs[0].write())
    await check("buffer_write_small", buffer_remote.write_buffer(css[1], bufs[1]))
    await check("buffer_write_5MB", buffer_remote.write_buffer(css[2], bufs[2]))

    # GET /has with a JSON list body. Upstream's server answers booleans, which
    # the client passes through as "lengths" (True/False), so compare truthiness.
    async def lengths():
        res = await buffer_remote.get_buffer_lengths(css + [missing])
        info["buffer_lengths_raw"] = res
        return [bool(x) for x in res] == [True, True, True, False]

    await check("buffer_lengths", lengths())
    for name, cs, buf in zip(("small1", "small2", "5MB"), css, bufs, strict=True):
        await check(f"buffer_read_{name}", equals(content_of(buffer_remote.get_buffer(cs)), buf.content))
    await check("buffer_read_missing_is_None", equals(buffer_remote.get_buffer(missing), None))

    # --- transformation results (database) ---------------------------------
    tf1 = rand_cs()
    await check("transformation_set", succeeds(db.set_transformation_result(tf1, css[0])))
    await check("transformation_set_get", equals(db.get_transformation_result(tf1), css[0]))
    await check("transformation_missing_is_None", equals(db.get_transformation_result(rand_cs()), None))
    await check("rev_transformations", contains(db.get_rev_transformations(css[0]), tf1))
    await check("rev_transformations_missing_is_None", equals(db.get_rev_transformations(rand_cs()), None))

    # --- execution records (metadata), write-once ---------------------------
    tf2 = rand_cs()
    record = {
        "schema_version": 1,
        "tf_checksum": tf2.hex(),
        "result_checksum": css[1].hex(),
        "checksum_fields": ["tf_checksum", "result_checksum"],
        "note": "first",
    }
    other = dict(record, note="second")
    await check("execution_record_write", equals(db.set_execution_record(tf2, css[1], record), True))
    await check("execution_record_read", equals(db.get_execution_record(tf2), record))
    # identical record again: accepted; different record: 409 -> client returns False
    await check("execution_record_rewrite_identical",
                equals(db.set_execution_record(tf2, css[1], record), True))
    await check("execution_record_write_once", equals(db.set_execution_record(tf2, css[1], other), False))
    await check("execution_record_unchanged", equals(db.get_execution_record(tf2), record))
    # an execution record also records the transformation result (+ reverse entry)
    await check("execution_record_sets_transformation", equals(db.get_transformation_result(tf2), css[1]))
    await check("execution_record_sets_rev", contains(db.get_rev_transformations(css[1]), tf2))
    await check("execution_record_missing_is_None", equals(db.get_execution_record(rand_cs()), None))

    # --- irreproducible ------------------------------------------------------
    await check("irreproducible_mark", db.undo_transformation_result(tf2, css[1]))
    rows = [{"checksum": tf2.hex(), "result": css[1].hex(), "metadata": record}]
    await check("irreproducible_read", equals(db.get_irreproducible_records(tf2), rows, "irreproducible"))
    await check("irreproducible_read_by_result", equals(db.get_irreproducible_records(tf2, css[1]), rows))
    await check("irreproducible_other_result_is_None",
                equals(db.get_irreproducible_records(tf2, css[0]), None))
    # marking removes the result, the execution record and the reverse entry
    await check("irreproducible_clears_result", equals(db.get_transformation_result(tf2), None))
    await check("irreproducible_clears_record", equals(db.get_execution_record(tf2), None))

    async def rev_cleared():
        return tf2 not in (await db.get_rev_transformations(css[1]) or [])

    await check("irreproducible_clears_rev", rev_cleared())

    # --- bucket probe (exposed by DatabaseClient in 0.4.0) ------------------
    label = "compat-" + os.urandom(6).hex()
    tokens = {"mtime": 123, "host": "x"}
    probe = {"bucket_kind": "node", "label": label, "bucket_checksum": css[0].hex(),
             "captured_at": "2024-01-01T00:00:00Z", "freshness_tokens": tokens}
    await check("bucket_probe_set", db.set_bucket_probe("node", label, css[0], tokens, probe["captured_at"]))
    await check("bucket_probe_get", equals(db.get_bucket_probe("node", label), probe, "bucket_probe"))
    # a second write for the same (kind, label) replaces the row
    probe2 = dict(probe, bucket_checksum=css[1].hex(), captured_at="2024-01-02", freshness_tokens={})
    await check("bucket_probe_overwrite", db.set_bucket_probe("node", label, css[1], {}, "2024-01-02"))
    await check("bucket_probe_get_updated", equals(db.get_bucket_probe("node", label), probe2))
    await check("bucket_probe_missing_is_None", equals(db.get_bucket_probe("node", label + "-x"), None))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hashserver", required=True, help="hashserver URL")
    p.add_argument("--database", required=True, help="database URL")
    args = p.parse_args()

    # The supported way to point seamless at explicit servers: this defines
    # read/write "extern" clients in buffer_remote / database_remote and
    # activates them (no launched/"main" clients). SEAMLESS_REMOTE_CLIENTS is the
    # same call with in_remote=True ("remote_url" keys), meant for spawned workers.
    seamless_config.set_remote_clients(
        {
            "buffer": [{"url": args.hashserver, "readonly": False}],
            "database": [{"url": args.database, "readonly": False}],
        }
    )
    try:
        asyncio.run(main_async())
    except Exception as exc:  # should not happen: checks catch their own errors
        errors.append(f"fatal: {type(exc).__name__}: {exc}")
    ok = bool(checks) and all(checks.values()) and not errors
    print(json.dumps({"ok": ok, "checks": checks, "errors": errors, "info": info}, default=str))
    sys.stdout.flush()
    try:
        seamless.close()  # closes aiohttp sessions / keepalive thread
    except Exception:
        pass
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
