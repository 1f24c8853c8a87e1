"""Delivering results: stdout printing, files and directories with sidecars, .FUTURE markers."""

import json
import os
import sys
import threading

from seamless.checksum import calculate_checksum, serialize
from seamless.files import atomic_write
from seamless.run.argtyping import strip_compression

FUTURE_REFRESH = 30.0


class ResultError(Exception):
    pass


def printable(data: bytes) -> bytes:
    """Upstream's stdout rules: leading newlines dropped, trailing newlines collapsed to one."""
    data = data.lstrip(b"\n")
    if data.endswith(b"\n"):
        data = data.rstrip(b"\n") + b"\n"
    return data


def print_result(data: bytes):
    out = sys.stdout.buffer
    out.write(printable(data))  # raw bytes, UTF-8 or not
    out.flush()


def deliver(stores, index, targets, download=True):
    """Write each target (file or directory) from the result index, with sidecars.

    index: {path in RESULT: checksum}. A file target gets LOCAL.CHECKSUM; a directory
    target gets LOCAL.INDEX (its sub-index, plain JSON) and LOCAL.CHECKSUM (of that).
    With download, the bytes are written too (atomically; directories file by file).
    """
    missing = []
    for target in targets:
        local = target.local
        parent = os.path.dirname(os.path.abspath(local))
        os.makedirs(parent, exist_ok=True)
        if target.server in index:
            cs = index[target.server]
            if download and not stores.get_to_file(cs, local):
                missing.append(target.server)
                continue
            atomic_write(strip_compression(local) + ".CHECKSUM", cs + "\n")
            continue
        prefix = target.server + "/"
        sub = {k[len(prefix):]: v for k, v in index.items() if k.startswith(prefix)}
        if not sub:
            raise ResultError(f"no result for {target.server!r}: the command did not create it")
        if download:
            if os.path.isfile(local):
                os.unlink(local)
            for rel, cs in sorted(sub.items()):
                dest = os.path.join(local, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if not stores.get_to_file(cs, dest):
                    missing.append(f"{target.server}/{rel}")
        buffer = serialize(sub, "plain")
        atomic_write(local + ".INDEX", buffer)
        atomic_write(local + ".CHECKSUM", calculate_checksum(buffer) + "\n")
    return missing


class Futures:
    """LOCAL.FUTURE markers for every target while the job runs; refreshed, then removed."""

    def __init__(self, targets, tf_checksum):
        self.paths = {}
        for target in targets:
            self.paths[target.local + ".FUTURE"] = f"{tf_checksum}.{target.server}\n"
        self._stop = threading.Event()

    def __enter__(self):
        for path, text in self.paths.items():
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        if self.paths:
            threading.Thread(target=self._refresh, daemon=True).start()
        return self

    def _refresh(self):
        while not self._stop.wait(FUTURE_REFRESH):
            for path in self.paths:
                try:
                    os.utime(path)
                except OSError:
                    pass

    def __exit__(self, *exc):
        self._stop.set()
        for path in self.paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return False


def read_index(stores, cs):
    data = stores.get_buffer(cs)
    return None if data is None else json.loads(data)
