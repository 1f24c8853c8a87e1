"""Checksums of input files and directories, and putting them into the store.

A file is identified by its exact bytes, a compressed one (x.gz, x.zst) too: unlike
upstream, which hashes the uncompressed bytes, so that two .gz files with the same
contents but other bytes (another compression level, a BGZF file and its index) could
share a cached result that depends on the bytes. A directory is identified by its deep
index {relative path: checksum} (hidden files included; symlinks followed), serialized
as plain. Hashing streams in constant memory.
"""

import os

from seamless.checksum import calculate_checksum, checksum_file, serialize
from seamless.files import UnsafePath, check_index
from seamless.run.argtyping import ArgtypeError


MAX_DIRECTORY_VISITS = 64


def directory_files(root):
    """{relative key: absolute path} of every file below root (keys as in the index).

    Symlinks are followed, as upstream, except back into a directory they are inside
    (a cycle, such as a link to "."), which is refused; so is a directory reached
    through more than MAX_DIRECTORY_VISITS symlinked paths (links that fan out
    level after level would otherwise give an astronomical number of paths).
    """
    found = {}
    visits = {}

    def walk(path, rel, ancestors):
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            raise ArgtypeError(f"cannot read directory {path!r}: {exc.strerror}") from None
        for entry in entries:
            key = rel + entry.name
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                continue
            if is_dir:
                st = os.stat(entry.path)
                real = (st.st_dev, st.st_ino)
                if real in ancestors:
                    raise ArgtypeError(f"directory {root!r}: {key!r} is a symlink back into a directory that "
                                       "contains it (a cycle); remove or replace the link")
                visits[real] = visits.get(real, 0) + 1
                if visits[real] > MAX_DIRECTORY_VISITS:
                    raise ArgtypeError(f"directory {root!r}: {os.path.realpath(entry.path)!r} is reached through more "
                                       f"than {MAX_DIRECTORY_VISITS} symlinked paths; remove some of the links")
                walk(entry.path, key + "/", ancestors | {real})
            elif os.path.isfile(entry.path):  # not a dangling symlink, socket...
                found[key] = entry.path
    st = os.stat(root)
    walk(root, "", frozenset([(st.st_dev, st.st_ino)]))
    return found


def index_checksum(index: dict) -> str:
    return calculate_checksum(serialize(index, "plain"))


def resolve(item):
    """Fill in item.checksum (and item.index for directories), checking sidecars."""
    if item.kind == "file":
        if os.path.isfile(item.source):
            actual = checksum_file(item.source)
            if item.checksum is not None and item.checksum != actual:
                raise ArgtypeError(f"{item.source!r} and its .CHECKSUM sidecar disagree: the file changed "
                                   "after the sidecar was written (delete or refresh the sidecar)")
            item.checksum = actual
        return
    if os.path.isdir(item.source):
        files = directory_files(item.source)
        index = {key: checksum_file(path) for key, path in sorted(files.items())}
        if item.checksum is not None and index_checksum(index) != item.checksum:
            raise ArgtypeError(f"directory {item.source!r} and its .CHECKSUM/.INDEX sidecars disagree: "
                               "it changed after they were written (delete or refresh them)")
        item.index = index
        item.files = files
        item.checksum = index_checksum(index)
    elif item.index is not None and index_checksum(item.index) != item.checksum:
        item.index = None  # a .INDEX that does not match .CHECKSUM: the store has the real one
    elif item.index is not None:
        try:
            check_index(item.index, f"directory index {item.source}.INDEX")
        except UnsafePath as exc:
            raise ArgtypeError(str(exc)) from None


def store_input(stores, item):
    """Put an input's buffers (and a directory's index) in the writable stores."""
    if item.kind == "file":
        if os.path.isfile(item.source):
            stores.put_file(item.source, item.checksum)
        return
    for key, path in item.files.items():
        stores.put_file(path, item.index[key])
    if item.index is not None:
        stores.put_buffer(serialize(item.index, "plain"), item.checksum)

