"""Messages between the parent and its spawned workers: a JSON header plus raw buffers.

    frame = <u32 header length> <u32 buffer count> header-JSON
            then per buffer: <u64 length> bytes          (small buffers, in the stream)
                         or: <u64 0xFFFF...> <u32 n> path (large ones, a file in shared memory)

Buffers are never pickled. Large ones go through a file in /dev/shm (or the temp
directory), which the receiver reads and unlinks: a copy through RAM, not the pipe.
"""

import json
import os
import socket
import struct
import tempfile
import threading

LARGE = 1 << 20
_BY_FILE = 0xFFFFFFFFFFFFFFFF


def shared_dir():
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="seamless-pool-", dir=base)


class Channel:
    """One end of a worker connection; send() may be called from any thread."""

    def __init__(self, sock: socket.socket, spill_dir: str):
        self.sock = sock
        self.reader = sock.makefile("rb", buffering=1 << 16)
        self.spill_dir = spill_dir
        self._lock = threading.Lock()

    def send(self, header: dict, buffers=()):
        data = json.dumps(header, separators=(",", ":")).encode()
        parts = [struct.pack("<II", len(data), len(buffers)), data]
        for buf in buffers:
            path = self._spill(buf) if len(buf) >= LARGE else None
            if path is not None:
                name = os.fsencode(path)
                parts += [struct.pack("<QI", _BY_FILE, len(name)), name]
            else:
                parts += [struct.pack("<Q", len(buf)), buf]
        with self._lock:
            self.sock.sendall(b"".join(parts))

    def _spill(self, buf):
        """A file holding buf, or None (shared memory full or gone: the buffer goes in the stream)."""
        path = None
        try:
            fd, path = tempfile.mkstemp(dir=self.spill_dir)
            with os.fdopen(fd, "wb") as f:
                f.write(buf)
            return path
        except OSError:
            if path is not None:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            return None

    def receive(self):
        """(header, [buffers]), or None when the other side has gone."""
        try:
            head = self._exactly(8)
            if head is None:
                return None
            size, count = struct.unpack("<II", head)
            header = json.loads(self._exactly(size))
            buffers = []
            for _ in range(count):
                (length,) = struct.unpack("<Q", self._exactly(8))
                if length == _BY_FILE:
                    (n,) = struct.unpack("<I", self._exactly(4))
                    path = os.fsdecode(self._exactly(n))
                    with open(path, "rb") as f:
                        buffers.append(f.read())
                    os.unlink(path)
                else:
                    buffers.append(self._exactly(length))
            return header, buffers
        except (OSError, ValueError, struct.error, TypeError):
            return None

    def _exactly(self, n):
        data = self.reader.read(n)
        if len(data) != n:
            if not data:
                return None
            raise ValueError("truncated message")
        return data

    def close(self):
        for thing in (self.reader, self.sock):
            try:
                thing.close()
            except OSError:
                pass
