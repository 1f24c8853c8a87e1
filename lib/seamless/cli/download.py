"""seamless-download: bring files and directories back from the buffer store.

An ITEM is a path with sidecars (ITEM.CHECKSUM, plus ITEM.INDEX for a directory), a
sidecar path itself, or a raw checksum. Files are verified and written atomically.
"""

import argparse
import os
import shutil
import sys

from seamless.checksum import is_checksum, parse_checksum
from seamless.cli import UserError, add_version, error_line, open_stores, selection
from seamless.run.argtyping import ArgtypeError, read_sidecar, strip_compression
from seamless.run.command import Target
from seamless.run.inputs import index_checksum
from seamless.run.results import ResultError, check_index, deliver, read_index
from seamless.transfer import Progress, add_confirm_arguments, confirm, remote

PROG = "seamless-download"


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False)
    add_version(p)
    p.add_argument("items", nargs="+", metavar="ITEM", help="path with sidecars, sidecar, or checksum")
    p.add_argument("-o", "--output", action="append", default=[], metavar="PATH",
                   help="where to write the item in the same position (repeatable)")
    p.add_argument("--stdout", action="store_true", help="write the (single, file) item to stdout")
    p.add_argument("--directory", action="store_true", help="raw checksums are directory indexes")
    p.add_argument("--index", dest="download", action="store_false",
                   help="only write sidecars (.CHECKSUM, .INDEX), not the contents")
    add_confirm_arguments(p, "large downloads")
    p.add_argument("--destination", metavar="DIR", help="read from this buffer directory only")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per item on stderr")
    p.add_argument("--project", metavar="P[:SUB]", help="project (and subproject) whose storage to use")
    p.add_argument("--stage", metavar="S[:SUB]", help="stage (and substage) whose storage to use, as seamless-run --stage")
    return p.parse_args(argv)


def what(item, directory_flag):
    """(kind, checksum, index or None, default destination, compress) for an ITEM.

    A sidecar of the item's own name (x.gz.CHECKSUM) is of its exact bytes. Failing
    that, the x.CHECKSUM of an x.gz (or x.zst) is of its uncompressed bytes, as
    upstream's seamless-upload writes it: compress says the file is compressed again.
    """
    if not os.path.exists(item) and is_checksum(item):
        return ("directory" if directory_flag else "file"), parse_checksum(item), None, item.lower(), False
    base = item.rstrip("/") or item
    for suffix in (".CHECKSUM", ".INDEX"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    found, compress = read_sidecar(base), False
    if found is None and strip_compression(base) != base:
        found = read_sidecar(strip_compression(base))
        compress = found is not None and found[0] == "file"
    if found is None:
        raise UserError(f"{item}: no {base}.CHECKSUM sidecar (upload it first, or give a checksum)")
    kind, cs, index = found
    if index is not None and index_checksum(index) != cs:
        index = None  # stale .INDEX: take the stored one
    return kind, cs, index, base, compress


def why_missing(stores, cs):
    """'CS is not in any store', or why its stored copy was refused, with the fix."""
    if cs in stores.corrupt:
        return (f"{cs}: the stored copy is corrupt ({stores.corrupt[cs]}); upload the file again "
                "(seamless-upload) to repair the store")
    return f"{cs} is not in any store"


def to_stdout(stores, cs) -> bool:
    """Write buffer `cs` to stdout, verified before its first byte (seamless-resolve's
    too); False when no store has a good copy."""
    f = stores.open_verified(cs)
    if f is None:
        return False
    with f:
        shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
    sys.stdout.flush()
    return True


def main(argv):
    args = parse_args(argv)
    if len(args.output) > len(args.items):
        raise UserError("more -o/--output paths than items")
    if args.stdout and (len(args.items) != 1 or args.output):
        raise UserError("--stdout takes exactly one item and no -o")
    stores = open_stores(args.destination, writable=False, **selection(args))
    stores.warn_corrupt = False  # said once, in the item's own error line (why_missing)
    plans = []
    for i, item in enumerate(args.items):
        try:
            kind, cs, index, dest, compress = what(item, args.directory)
            if kind == "directory" and index is None:
                index = read_index(stores, cs)
                if index is None:
                    raise UserError(f"{item}: the directory index {why_missing(stores, cs)}")
            elif index is not None:
                check_index(index, f"directory index {dest}.INDEX")
        except (ArgtypeError, ResultError) as exc:
            raise UserError(f"{item}: {exc}") from None
        if i < len(args.output):
            dest = args.output[i]
        plans.append((item, kind, cs, index, dest, compress))
    if args.stdout:
        item, kind, cs, _, _, _ = plans[0]
        if kind != "file":
            raise UserError(f"{item} is a directory: --stdout needs a file")
        if not to_stdout(stores, cs):
            raise UserError(f"{item}: buffer {why_missing(stores, cs)}")
        return 0
    count = sum(len(index) if kind == "directory" else 1 for _, kind, _, index, _, _ in plans)
    if remote(stores.buffer_read) and not confirm("download", count, 0, args.answer, PROG):
        raise UserError(f"download of {count} files not confirmed (-y to allow)")
    progress = Progress(count, "download", PROG)
    failed = False
    try:
        for item, kind, cs, index, dest, compress in plans:
            result = {"x": cs} if kind == "file" else {f"x/{rel}": c for rel, c in index.items()}
            try:
                missing = deliver(stores, result, [Target("x", dest)], download=args.download,
                                  compress_by_name=compress)
            except ResultError as exc:
                error_line(PROG, f"{item}: {exc}")
                failed = True
                continue
            if missing:
                names = {m: m[2:] or dest for m in missing}
                corrupt = [m for m in missing if result[m] in stores.corrupt]
                if corrupt:
                    error_line(PROG, f"{item}: {names[corrupt[0]]}: {why_missing(stores, result[corrupt[0]])}"
                               + (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""))
                else:
                    error_line(PROG, f"{item}: not in any store: {', '.join(names.values())}")
                failed = True
            elif args.verbose:
                sys.stderr.write(f"{PROG}: {item} -> {dest}\n")
            progress.advance(len(index) if kind == "directory" else 1)
    finally:
        progress.close()
    return 1 if failed else 0

