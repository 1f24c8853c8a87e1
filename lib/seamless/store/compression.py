"""Compressed stored forms (gzip, zstd): what a name asks for, decoding in bounded
pieces, hashing a possibly compressed stream. zstd comes from the standard library
(Python >= 3.14) or backports.zstd; without either a .zst buffer is a clear error.
"""

import hashlib
import zlib

from seamless.checksum import CHUNK
from seamless.store import StoreError

# stored form suffix -> HTTP content-coding
ENCODINGS = {"": None, ".gz": "gzip", ".zst": "zstd"}
SUFFIXES = {enc: suffix for suffix, enc in ENCODINGS.items()}


def zstd_module():
    """The zstd codec: compression.zstd (stdlib, Python >= 3.14), else backports.zstd if
    installed (the same module for older Pythons); else a clear error."""
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found]
        except ImportError:
            raise StoreError(
                "this buffer is zstd-compressed (.zst), and reading zstd needs Python >= 3.14 "
                "(or the backports.zstd package); decompress it with `zstd -d` or store it uncompressed"
            ) from None
    return zstd


def encoding_of(path):
    """The content coding a file name asks for (x.gz: gzip, x.zst: zstd), else None."""
    for suffix, encoding in ENCODINGS.items():
        if suffix and path.endswith(suffix):
            return encoding
    return None


def write_encoded(source, dest, encoding):
    """Compress the file `source` into `dest` in constant memory."""
    if encoding == "gzip":
        import gzip

        target = gzip.open(dest, "wb")
    else:
        target = zstd_module().open(dest, "wb")
    with open(source, "rb") as src, target:
        while chunk := src.read(CHUNK):
            target.write(chunk)


def decode_errors():
    """Exceptions that mean "this compressed data is damaged" (not an I/O failure)."""
    import gzip

    errors = (EOFError, zlib.error, gzip.BadGzipFile)
    try:
        return errors + (zstd_module().ZstdError,)
    except StoreError:
        return errors


class Decoder:
    """Decode one gzip member or zstd frame in pieces of at most CHUNK bytes.

    Output is bounded whatever the input (a small "zip bomb" cannot exhaust memory),
    and data after the end of the stream is refused: every stored byte gets hashed.
    """

    def __init__(self, encoding):
        if encoding not in ("gzip", "zstd"):
            raise StoreError(f"unsupported content encoding {encoding!r} (use gzip, zstd or none)")
        self.encoding = encoding
        self._d = zlib.decompressobj(wbits=31) if encoding == "gzip" else zstd_module().ZstdDecompressor()

    def feed(self, data):
        """Yield the decoded pieces of `data`."""
        d = self._d
        if d.eof:
            if data:
                raise self._trailing()
            return
        more = True
        while more:
            if self.encoding == "gzip":
                out = d.decompress(data, CHUNK)
                data = d.unconsumed_tail
                more = bool(data) or len(out) == CHUNK
            else:
                out = d.decompress(data, CHUNK)
                data = b""
                more = not d.needs_input
            if out:
                yield out
            if d.eof:
                if d.unused_data or data:
                    raise self._trailing()
                return

    def finish(self):
        if not self._d.eof:
            raise StoreError(f"invalid {self.encoding} payload: the stream is truncated")

    def _trailing(self):
        return StoreError(f"invalid {self.encoding} payload: data after the end of the stream "
                          "(concatenated streams are not accepted)")


def open_decoded(path, encoding):
    """Open a stored form for reading its uncompressed bytes."""
    if encoding is None:
        return open(path, "rb")
    if encoding == "gzip":
        import gzip

        return gzip.open(path, "rb")
    return zstd_module().open(path, "rb")


def digest_stream(stream, encoding=None, length=None, sink=None):
    """(sha-256, length) of the uncompressed bytes of a stream, possibly gzip/zstd-encoded,
    read to its end or for `length` bytes in constant memory; sink(chunk) gets the bytes
    as read. A short, failing or undecodable stream is a StoreError."""
    dec = Decoder(encoding) if encoding is not None else None
    h = hashlib.sha256()
    total = 0
    view = memoryview(bytearray(CHUNK if length is None else max(1, min(CHUNK, length))))
    remaining = length
    try:
        while remaining is None or remaining > 0:
            want = len(view) if remaining is None else min(len(view), remaining)
            try:
                n = stream.readinto(view[:want])
            except OSError as exc:
                raise StoreError(f"upload interrupted: {exc}") from None
            if not n:
                if remaining:
                    raise StoreError(f"upload ended after {length - remaining} of {length} bytes")
                break
            chunk = view[:n]
            if sink is not None:
                sink(chunk)
            for plain in dec.feed(chunk) if dec is not None else (chunk,):
                h.update(plain)
                total += len(plain)
            if remaining is not None:
                remaining -= n
        if dec is not None:
            dec.finish()
    except decode_errors() as exc:
        raise StoreError(f"invalid {encoding} payload: {exc}") from None
    return h.hexdigest(), total
