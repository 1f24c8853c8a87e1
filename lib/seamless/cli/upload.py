"""seamless-upload: put files and directories in the buffer store, leaving sidecars.

Each FILE gets FILE.CHECKSUM (the checksum of its exact bytes, x.gz.CHECKSUM for x.gz);
each DIR gets DIR.INDEX and DIR.CHECKSUM. seamless-run then accepts the sidecar
in place of the file, and seamless-download brings the contents back.
"""

import argparse
import os
import shutil
import sys

from seamless.checksum import serialize
from seamless.cli import UserError, add_version, error_line, open_stores, selection
from seamless.files import atomic_write
from seamless.run.argtyping import ArgtypeError, Input
from seamless.run.inputs import resolve, store_input
from seamless.transfer import Progress, add_confirm_arguments, confirm, human, remote

PROG = "seamless-upload"


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False)
    add_version(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files and directories to upload")
    p.add_argument("-m", "-mv", "--move", action="store_true",
                   help="delete each file or directory once it is stored (its sidecars stay)")
    p.add_argument("--destination", metavar="DIR",
                   help="store into this buffer directory instead of the configured stores")
    add_confirm_arguments(p, "large uploads")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per item on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="nothing on stderr but errors")
    p.add_argument("--project", metavar="P[:SUB]", help="project (and subproject) whose storage to use")
    p.add_argument("--stage", metavar="S[:SUB]", help="stage (and substage) whose storage to use, as seamless-run --stage")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    items = []
    failed = False
    for path in args.paths:
        if path.endswith((".CHECKSUM", ".INDEX")):
            continue  # sidecars are never uploaded themselves
        full = os.path.abspath(path)
        if os.path.isdir(full):
            items.append((path, Input(full, "directory")))
        elif os.path.isfile(full):
            items.append((path, Input(full, "file")))
        else:
            error_line(PROG, f"{path}: no such file or directory")
            failed = True
    stores = open_stores(args.destination, **selection(args))
    for _, item in items:
        try:
            resolve(item)
        except ArgtypeError as exc:
            raise UserError(str(exc)) from None
    sizes = [_size(item) for _, item in items]
    files = sum(len(item.files) if item.kind == "directory" else 1 for _, item in items)
    if remote(stores.buffer_write) and not confirm("upload", files, sum(sizes), args.answer, PROG):
        raise UserError(f"upload of {files} files ({human(sum(sizes))}) not confirmed (-y to allow)")
    progress = Progress(sum(sizes), "upload", PROG, enabled=not args.quiet)
    try:
        for (path, item), size in zip(items, sizes, strict=True):
            store_input(stores, item)
            stores.mark_kept(_checksums(item))  # what the user stored is data: gc leaves it
            if item.kind == "directory":
                base = path.rstrip("/")
                atomic_write(base + ".INDEX", serialize(item.index, "plain"))
            else:
                base = path
            atomic_write(base + ".CHECKSUM", item.checksum + "\n")
            if args.move:
                _remove_stored(stores, item)
            progress.advance(size)
            if args.verbose and not args.quiet:
                sys.stderr.write(f"{PROG}: {path}: {item.checksum}\n")
    finally:
        progress.close()
    return 1 if failed else 0


def _checksums(item):
    return list(item.index.values()) + [item.checksum] if item.kind == "directory" else [item.checksum]


def _remove_stored(stores, item):
    """--move: delete the original only once every store holds a verified copy of it."""
    bad = [cs for cs in _checksums(item) if not stores.stored_everywhere(cs)]
    if bad:
        raise UserError(f"{item.source}: kept, not deleted: the stored copy of {bad[0]} could not be verified")
    shutil.rmtree(item.source) if item.kind == "directory" else os.unlink(item.source)


def _size(item):
    if item.kind == "file":
        return os.path.getsize(item.source)
    return sum(os.path.getsize(p) for p in item.files.values())
