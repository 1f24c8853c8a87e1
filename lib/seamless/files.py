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
