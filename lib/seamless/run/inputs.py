"""Checksums of input files and directories, and putting them into the store.

A compressed input (x.gz, x.zst) is identified by its uncompressed bytes, as upstream.
A directory is identified by its deep index {relative path: checksum} (compression
suffixes stripped from the keys; hidden files included; symlinks followed), serialized
as plain. Hashing streams in constant memory.
"""

import os

from seamless.checksum import calculate_checksum, checksum_stream, serialize
from seamless.files import UnsafePath, check_index
from seamless.run.argtyping import ArgtypeError, strip_compression
from seamless.store.directory import encoding_of, open_decoded


def open_content(path):
    """The uncompressed bytes of an input file, as a stream."""
    return open_decoded(path, encoding_of(path))


def file_checksum(path) -> str:
    with open_content(path) as f:
        return checksum_stream(f)[0]


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
                                       "contains it (a cycle); remove the link, or name the inputs you need with -i")
                visits[real] = visits.get(real, 0) + 1
                if visits[real] > MAX_DIRECTORY_VISITS:
                    raise ArgtypeError(f"directory {root!r}: {os.path.realpath(entry.path)!r} is reached through more "
                                       f"than {MAX_DIRECTORY_VISITS} symlinked paths; remove some of the links")
                walk(entry.path, key + "/", ancestors | {real})
            elif os.path.isfile(entry.path):  # not a dangling symlink, socket...
                found[strip_compression(key)] = entry.path
    st = os.stat(root)
    walk(root, "", frozenset([(st.st_dev, st.st_ino)]))
    return found


def index_checksum(index: dict) -> str:
    return calculate_checksum(serialize(index, "plain"))


def resolve(item):
    """Fill in item.checksum (and item.index for directories), checking sidecars."""
    if item.kind == "file":
        if os.path.isfile(item.source):
            actual = file_checksum(item.source)
            if item.checksum is not None and item.checksum != actual:
                raise ArgtypeError(f"{item.source!r} and its .CHECKSUM sidecar disagree: the file changed "
                                   "after the sidecar was written (delete or refresh the sidecar)")
            item.checksum = actual
        return
    if os.path.isdir(item.source):
        files = directory_files(item.source)
        index = {key: file_checksum(path) for key, path in sorted(files.items())}
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
            _store_file(stores, item.source, item.checksum)
        return
    for key, path in item.files.items():
        _store_file(stores, path, item.index[key])
    if item.index is not None:
        stores.put_buffer(serialize(item.index, "plain"), item.checksum)


def _store_file(stores, path, checksum):
    if encoding_of(path) is None:
        stores.put_file(path, checksum)
        return
    import tempfile

    with open_content(path) as src, tempfile.NamedTemporaryFile() as tmp:
        while chunk := src.read(1 << 20):
            tmp.write(chunk)
        tmp.flush()
        stores.put_file(tmp.name, checksum)
