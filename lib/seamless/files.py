"""Small file helpers: atomic replacement, so readers never see half a file."""

import os


def atomic_write(path, data: bytes | str, mode: int = 0o644) -> None:
    """Write `data` to `path` through a temp file in the same directory and a rename."""
    import tempfile

    if isinstance(data, str):
        data = data.encode()
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class UnsafePath(ValueError):
    """A relative path from data (an index key, a pin name) that would leave its target."""


def inside(root, relpath) -> str:
    """root/relpath, refusing any relpath that could land outside root: absolute paths,
    '..' parts, empty parts, NUL bytes. Index keys and pin names come from data that
    anyone may have written (a .INDEX file, a poisoned cache entry), so they are checked
    every time a file is placed by them."""
    parts = relpath.replace("\\", "/").split("/") if isinstance(relpath, str) else None
    names = [p for p in parts if p not in ("", ".")] if parts is not None else []
    if (not names or "\0" in relpath or relpath.startswith("/") or ".." in parts or "" in parts[:-1]):
        raise UnsafePath(f"{relpath!r} is not a relative path inside {root}")
    return os.path.join(root, *names)


def within(root, path) -> bool:
    """Does `path` (which may not exist yet) resolve to a place inside the directory root,
    symlinks in between included?"""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def check_index(index, where="directory index"):
    """A deep index {relative path: checksum} as found in data, checked: every key a path
    inside the directory, every value a checksum. Raises UnsafePath."""
    from seamless.checksum import parse_checksum

    if not isinstance(index, dict):
        raise UnsafePath(f"the {where} is not a JSON object")
    files = {}
    for key, cs in index.items():
        try:
            files[os.path.normpath(inside(".", key))] = key
            parse_checksum(cs)
        except (ValueError, TypeError):
            raise UnsafePath(f"refusing the {where}: entry {key!r} -> {cs!r} is not a relative path inside "
                             "the directory with a checksum") from None
    if len(files) < len(index):
        raise UnsafePath(f"refusing the {where}: two entries name the same file")
    for path, key in files.items():  # a file cannot also be a directory of other entries
        parent = os.path.dirname(path)
        while parent:
            if parent in files:
                raise UnsafePath(f"refusing the {where}: {files[parent]!r} is a file, yet {key!r} is inside it")
            parent = os.path.dirname(parent)
    return index
