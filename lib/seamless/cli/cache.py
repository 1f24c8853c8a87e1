"""seamless-cache: see, bound and check the cache in force.

    seamless-cache stats [--json]
    seamless-cache ls [--since T] [--command GLOB] [--json]
    seamless-cache show CHECKSUM [--json]
    seamless-cache gc [--max-size SIZE] [--older-than T] [--dry-run] [--json]
    seamless-cache verify [--repair] [--json]

The cache in force is the one seamless-run would use: $SEAMLESS_CACHE, the zero-config
cache, or a configuration's storage on this machine (--project, --stage).
Exit codes: 0 ok, 1 error (verify: something is wrong), 2 usage.
"""

import argparse
import fnmatch
import json
import os
import re
import sys
import time

from seamless.cli import UserError, add_version, selection, set_debug

PROG = "seamless-cache"
MAX_READ = 16 << 20  # transformations and code bigger than this are not described


def parser():
    p = argparse.ArgumentParser(prog=PROG, allow_abbrev=False, description="See, bound and check the cache in force.")
    add_version(p)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON (one object; ls: one per line)")
    common.add_argument("-v", "--verbose", action="store_true", help="tracebacks on errors")
    common.add_argument("--project", metavar="P[:SUB]", help="project (and subproject) whose storage to use")
    common.add_argument("--stage", metavar="S[:SUB]", help="stage (and substage) whose storage to use")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    verbs.add_parser("stats", parents=[common], help="buffers, bytes, results, hits and misses")
    ls = verbs.add_parser("ls", parents=[common], help="what was computed, newest first")
    ls.add_argument("--since", metavar="T", help="only what finished since T (2026-11-30, 2026-11-30T12:00, or 3h / 2d ago)")
    ls.add_argument("--command", metavar="GLOB", help="only commands (or Python function names) matching GLOB")
    show = verbs.add_parser("show", parents=[common], help="one result: its execution record and transformation")
    show.add_argument("checksum", metavar="CHECKSUM", help="transformation or result checksum (a unique prefix will do)")
    gc = verbs.add_parser("gc", parents=[common], help="evict least recently used buffers and their results")
    gc.add_argument("--max-size", metavar="SIZE", help="evict until the cache holds at most SIZE (5G, 500MB); "
                    "default: the configured max_size")
    gc.add_argument("--older-than", metavar="T", help="evict everything unused for T (30d, 12h, 90m, 45s)")
    gc.add_argument("--dry-run", "-n", action="store_true", help="say what would be evicted; evict nothing")
    gc.add_argument("--kept", action="store_true", help="evict kept buffers too (what seamless-upload stored)")
    verify = verbs.add_parser("verify", parents=[common], help="re-hash every buffer; find dangling results")
    verify.add_argument("--repair", action="store_true", help="remove corrupt buffers and dangling results")
    return p


# --- the cache in force --------------------------------------------------------------------

class Local:
    """The buffer directory and database file seamless-run would use, on this machine."""

    def __init__(self, args):
        from seamless.session import env_clients, max_size, resolve_config, stores_for
        from seamless.store.directory import DirectoryStore
        from seamless.store.sqlitedb import ResultDB

        if env_clients() is not None:
            raise UserError("SEAMLESS_REMOTE_CLIENTS names servers: run seamless-cache on the host of their "
                            "buffer directory and database, with SEAMLESS_CACHE or its configuration")
        try:
            resolved = resolve_config(**selection(args))
            where = resolved.store_in or resolved
            stores = stores_for(resolved) if where.local else _served_here(where)
            self.max_size = max_size(resolved)
        except ValueError as exc:  # a configuration error
            raise UserError(str(exc)) from None
        self.store = next(s for s in stores.buffer_write if isinstance(s, DirectoryStore))
        self.db = next(d for d in stores.db_write if isinstance(d, ResultDB))


def _served_here(resolved):
    """The directory and database file behind a cluster's hashserver and seamless-db,
    when they run on this host (their servers may be running: both are opened as they are)."""
    from seamless.config import storage
    from seamless.launch.executor import LOCAL_HOSTS
    from seamless.store.clients import StoreSet

    for service in ("hashserver", "database"):
        frontend = storage.frontend_for(resolved, service) or {}
        if frontend.get("ssh_hostname") or frontend.get("hostname", "localhost") not in LOCAL_HOSTS:
            host = frontend.get("ssh_hostname") or frontend.get("hostname") or "?"
            raise UserError(f"the storage of cluster '{resolved.cluster}' is on its frontend {host}, not here: "
                            "run seamless-cache there")
    buffers, database = storage.bufferdir(resolved), storage.database_file(resolved)
    if buffers is None or database is None:
        raise UserError(f"cluster '{resolved.cluster}' has no hashserver (bufferdir) and database (database_dir)")
    return StoreSet.local_store(storage.local_path(buffers), storage.local_path(database))


# --- verbs ------------------------------------------------------------------------------------

def stats(args, cache):
    from seamless.store import inventory

    buffers, size = inventory.totals(cache.store.directory)
    counts = cache.db.counts()
    info = {"buffer_directory": cache.store.directory, "database": cache.db.path, "buffers": buffers,
            "bytes": size, "max_size": cache.max_size, **cache.db.table_sizes(),
            "hits": int(counts.get("hits", 0)), "misses": int(counts.get("misses", 0))}
    if args.json:
        print(json.dumps(info))
        return 0
    from seamless.sizes import human

    asked = info["hits"] + info["misses"]
    limit = f"{human(cache.max_size)} ({100 * size / cache.max_size:.0f}% used)" if cache.max_size else \
        "none (set SEAMLESS_CACHE_MAX_SIZE" + (")" if os.environ.get("SEAMLESS_CACHE") else
                                               " or `- max_size: 5G` in seamless.yaml)")
    lines = [("buffers", f"{buffers} in {info['buffer_directory']}"), ("size", human(size)), ("max size", limit),
             ("results", f"{info['results']} in {info['database']}"), ("execution records", info["records"]),
             ("hits", info["hits"]), ("misses", info["misses"]),
             ("hit rate", f"{100 * info['hits'] / asked:.1f}%" if asked else "-")]
    for name, value in lines:
        print(f"{name + ':':<19}{value}")
    return 0


def describe(read, tf):
    """(language, what it runs) of a transformation: a command line, or a Python function's name."""
    tfdict = _json(read(tf))
    if not isinstance(tfdict, dict):
        return "?", "(transformation not stored)"
    return _describe(read, tfdict)


def _deep(tfdict) -> bool:
    """Is the result an index of files (a command's result targets)?"""
    from seamless.store.gc import DEEP

    output = tfdict.get("__output__") if isinstance(tfdict, dict) else None
    return isinstance(output, list) and len(output) > 1 and output[1] in DEEP


def _describe(read, tfdict):
    language = tfdict.get("__language__", "?")
    code = tfdict.get("code")
    text = read(code[2]) if isinstance(code, list) and len(code) == 3 and isinstance(code[2], str) else None
    if text is None:
        return language, "(code not stored)"
    text = text.decode(errors="replace")
    if language == "bash":
        return language, _command(text)
    m = re.search(r"^\s*(?:async\s+)?def\s+(\w+)", text, re.M)
    return language, (m.group(1) + "()" if m else text.strip().splitlines()[0][:60] if text.strip() else "?")


_BOILERPLATE = re.compile(r'^(\(|\) > (RESULT|STDOUT)|export PATH=\./:\$PATH|chmod \+x .*|export \w+="\$\{META__\w+\}"'
                          r"|mkdir -p RESULT.*|mv .* RESULT/.*)$")


def _command(code):
    """The user's command inside seamless-run's generated bash code."""
    lines = [line for line in code.splitlines() if not _BOILERPLATE.match(line)]
    return "; ".join(lines) or code.strip()


def _json(data):
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _reader(cache):
    """read(cs) -> bytes or None, verified, without counting as use (memoized: code is shared)."""
    from seamless.checksum import calculate_checksum

    memo = {}

    def read(cs):
        if cs not in memo:
            data = None
            for base in cache.store.plain_places(cs):
                try:
                    with open(base, "rb") as f:
                        if os.fstat(f.fileno()).st_size > MAX_READ:
                            break
                        data = f.read()
                except OSError:
                    continue
                if calculate_checksum(data) != cs:
                    data = None
                break
            memo[cs] = data
        return memo[cs]

    return read


def listing(cache):
    """Every cached result as a dict, newest first."""
    from seamless.store import inventory

    rows = cache.db.records()
    sizes = inventory.scan(cache.store.directory)
    read = _reader(cache)
    out = []
    for tf, result, record in rows:
        record = _json(record) if record else None
        record = record if isinstance(record, dict) else {}
        tfdict = _json(read(tf))
        language, what = _describe(read, tfdict) if isinstance(tfdict, dict) else ("?", "(transformation not stored)")
        out.append({"transformation": tf, "result": result, "language": language, "command": what,
                    "result_bytes": _result_size(read, sizes, result, _deep(tfdict)),
                    "finished_at": record.get("finished_at"),
                    "wall_time_seconds": record.get("wall_time_seconds"),
                    "cpu_time_seconds": _cpu(record), "memory_peak_bytes": record.get("memory_peak_bytes"),
                    "execution_mode": record.get("execution_mode")})
    out.sort(key=lambda e: e["finished_at"] or "", reverse=True)
    return out


def _result_size(read, sizes, result, deep):
    """The result's length; for a command's result files, theirs together (None: gone)."""
    buf = sizes.get(result)
    if buf is None or not deep:
        return buf.size if buf else None
    index = _json(read(result))
    entries = [sizes.get(cs) for cs in index.values()] if isinstance(index, dict) else [None]
    return None if None in entries else sum(entry.size for entry in entries)


def _cpu(record):
    user, system = record.get("cpu_time_user_seconds"), record.get("cpu_time_system_seconds")
    return None if user is None and system is None else round((user or 0) + (system or 0), 3)


def ls(args, cache):
    since = _since(args.since) if args.since else None
    entries = listing(cache)
    if since is not None:
        entries = [e for e in entries if e["finished_at"] and e["finished_at"] >= since]
    if args.command:
        entries = [e for e in entries if fnmatch.fnmatchcase(e["command"], args.command)]
    if args.json:
        for e in entries:
            print(json.dumps(e))
        return 0
    from seamless.sizes import human

    print(f"{'FINISHED':<20}  {'WALL':>7}  {'CPU':>7}  {'MEMORY':>10}  {'RESULT':>10}  {'TRANSFORMATION':<12}  COMMAND")
    for e in entries:
        print(f"{(e['finished_at'] or '-'):<20}  {_seconds(e['wall_time_seconds']):>7}  {_seconds(e['cpu_time_seconds']):>7}"
              f"  {human(e['memory_peak_bytes']) if e['memory_peak_bytes'] else '-':>10}"
              f"  {human(e['result_bytes']) if e['result_bytes'] is not None else 'gone':>10}"
              f"  {e['transformation'][:12]}  {e['command']}")
    return 0


def _seconds(value):
    return "-" if value is None else f"{value:.2f}s" if value < 100 else f"{value:.0f}s"


def show(args, cache):
    wanted = args.checksum.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,64}", wanted):
        raise UserError(f"{args.checksum!r} is not a checksum (or a prefix of one, 4 to 64 hex digits)")
    rows = cache.db.records()
    hits = [r for r in rows if r[0].startswith(wanted)] or [r for r in rows if r[1].startswith(wanted)]
    if not hits:
        raise UserError(f"no cached result has transformation or result checksum {wanted}...: "
                        "see `seamless-cache ls`")
    if len({r[0] for r in hits}) > 1 and len(wanted) < 64:
        raise UserError(f"{wanted} is the start of {len(hits)} checksums: give more digits")
    read = _reader(cache)
    shown = []
    for tf, result, record in hits:
        language, what = describe(read, tf)
        shown.append({"transformation": tf, "result": result, "language": language, "command": what,
                      "result_stored": cache.store.stored(result), "transformation_dict": _json(read(tf)),
                      "execution_record": _json(record) if record else None})
    if args.json:
        print(json.dumps(shown[0] if len(shown) == 1 else shown, indent=2))
        return 0
    for item in shown:
        print(f"transformation: {item['transformation']}")
        print(f"result:         {item['result']}{'' if item['result_stored'] else ' (bytes gone)'}")
        print(f"{item['language'] + ':':<16}{item['command']}")
        print("execution record:")
        print(_indent(item["execution_record"]) if item["execution_record"] else "  (none)")
        print("transformation dict:")
        print(_indent(item["transformation_dict"]) if item["transformation_dict"] else "  (not stored)")
    return 0


def _indent(value):
    return "\n".join("  " + line for line in json.dumps(value, indent=2, sort_keys=True).splitlines())


def gc(args, cache):
    from seamless.store.gc import Busy, collect_garbage
    from seamless.sizes import human, parse_size

    try:
        max_size = parse_size(args.max_size) if args.max_size is not None else None
    except ValueError as exc:
        raise UserError(f"--max-size: {exc}") from None
    older = _duration(args.older_than, "--older-than") if args.older_than is not None else None
    if max_size is None and older is None:
        max_size = cache.max_size
        if max_size is None:
            raise UserError("nothing to bound the cache by: give --max-size SIZE or --older-than T "
                            "(or set SEAMLESS_CACHE_MAX_SIZE / `- max_size: 5G` in seamless.yaml)")
    try:
        report = collect_garbage(cache.store, cache.db, max_size=max_size, older_than=older, dry_run=args.dry_run,
                                 kept=args.kept)
    except Busy as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, **report.as_dict()}))
        return 0
    verb = "would evict" if args.dry_run else "evicted"
    extra = f"; {report.dangling} results without their bytes dropped" if report.dangling else ""
    busy = f"; {report.kept_busy} kept (in use)" if report.kept_busy else ""
    if report.spared:
        busy += f"; {report.spared} left alone (used in the last 5 minutes, or reached by no result and used this week)"
    print(f"{verb} {report.buffers} buffers ({human(report.bytes)}) and {report.rows} results{extra}{busy}; "
          f"{human(report.before)} -> {human(report.after)}")
    return 0


def verify(args, cache):
    from seamless.store.gc import Busy, verify as check

    def progress(done, total):  # on a terminal: re-hashing a big cache takes a while
        if done % 1000 == 0 or done == total:
            sys.stderr.write(f"\r{PROG}: verified {done}/{total} buffers" + ("\n" if done == total else ""))

    try:
        findings = check(cache.store, cache.db, repair=args.repair,
                         progress=progress if sys.stderr.isatty() and not args.json else None)
    except Busy as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(findings.as_dict()))
    else:
        from seamless.sizes import human

        for path, problem in findings.corrupt:
            print(f"corrupt: {path} {problem}")
        for tf, result, missing in findings.dangling:
            print(f"dangling: result {result} of transformation {tf}: missing {', '.join(missing)}")
        for path in findings.strange:
            print(f"not a buffer: {path} is a directory where a buffer belongs (remove it yourself)")
        for tf, result in dict.fromkeys(findings.stray):  # a reverse row and a record: one line
            print(f"stray record: transformation {tf} (result {result}) has no result row")
        print(f"{findings.checked} buffers checked: {len(findings.corrupt)} corrupt, {len(findings.dangling)} "
              f"dangling results, {len(findings.stray)} stray records; {len(findings.orphans)} buffers "
              f"({human(findings.orphan_bytes)}) no result needs (gc evicts them first)")
        if args.repair and findings.wrong:
            print(f"repaired {findings.repaired}" + (f", could not repair {findings.unrepaired}"
                                                     if findings.unrepaired else ""))
    if not findings.wrong:
        return 0
    return 1 if not args.repair or findings.unrepaired else 0


# --- times ------------------------------------------------------------------------------------

def _duration(text, option) -> float:
    from seamless.dask.parameters import parse_duration  # pure: no dask import

    seconds = parse_duration(text)
    if seconds is None or seconds < 0:
        raise UserError(f"{option}: {text!r} is not a duration (use e.g. 30d, 12h, 90m, 45s)")
    return seconds


def _since(text) -> str:
    """T as the ISO-8601 UTC text records carry: a date, a date and time, or a duration ago."""
    if re.fullmatch(r"\s*\d+(\.\d+)?\s*[a-z]+\s*", text):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - _duration(text, "--since")))
    for form in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            local = time.mktime(time.strptime(text.strip().rstrip("Z"), form))
        except ValueError:
            continue
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(local))
    raise UserError(f"--since: {text!r} is not a time (use 2026-11-30, 2026-11-30T12:00, or 3h / 2d for ago)")


VERBS = {"stats": stats, "ls": ls, "show": show, "gc": gc, "verify": verify}


def main(argv):
    args = parser().parse_args(argv)
    set_debug(args.verbose)
    return VERBS[args.verb](args, Local(args))


def entry():
    from seamless.cli import run

    run(main, PROG)


if __name__ == "__main__":
    entry()
