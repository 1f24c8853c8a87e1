"""A buffer store behind a hashserver (ours or upstream's), over HTTP."""

import hashlib
import json
import os
import tempfile

from seamless.checksum import CHUNK, calculate_checksum, checksum_file, parse_checksum
from seamless.store import ChecksumMismatch, CorruptBuffer, ReadOnlyStore, StoreError
from seamless.store.compression import Decoder, decode_errors
from seamless.store.httpclient import HttpClient

CORRUPTION = "File corruption"  # how a hashserver's 400 for a corrupt stored file begins


class HttpBufferStore:
    def __init__(self, url, writable=False, token=None, token_file=None):
        self.client = HttpClient(url, token=token, token_file=token_file)
        self.url = self.client.url
        self.writable = writable

    def __repr__(self):
        return f"HttpBufferStore({self.url!r}, writable={self.writable})"

    def _fail(self, status, body, what, cs=None):
        """The error for an answer that is not a success (CorruptBuffer for a bad stored copy)."""
        text = body.decode(errors="replace").strip()[:300] if isinstance(body, bytes) else str(body)
        if status == 401:
            return StoreError(f"{self.url} refused {what}: unauthorized (set SEAMLESS_TOKEN_FILE or the entry's token_file)")
        if status == 405:
            return ReadOnlyStore(f"{self.url} refused {what}: the hashserver is read-only")
        message = _message(text)
        if status == 400 and cs is not None and message.startswith(CORRUPTION):
            # ours: text; upstream's: {"message": "File corruption: file at path ..."}
            return CorruptBuffer(f"{self.url}/{cs}: {message[len(CORRUPTION):].lstrip(': ')}")
        return StoreError(f"{self.url} answered {status} to {what}: {message}")

    def healthcheck(self) -> bool:
        return self.client.healthcheck()

    def has_many(self, checksums, now=False) -> list:
        checksums = [parse_checksum(cs) for cs in checksums]
        if not checksums:
            return []
        body = json.dumps(checksums).encode()
        status, _, data = self.client.call("GET", "/has-now" if now else "/has", body,
                                           {"Content-Type": "application/json"})
        if status != 200:
            raise self._fail(status, data, "a /has query")
        result = json.loads(data)
        if not isinstance(result, list) or len(result) != len(checksums):
            raise StoreError(f"{self.url} gave a malformed /has answer")
        return [bool(x) for x in result]

    def has(self, cs) -> bool:
        return self.has_many([cs])[0]

    def length(self, cs):
        cs = parse_checksum(cs)
        status, _, data = self.client.call("GET", "/buffer-length", json.dumps([cs]).encode(),
                                           {"Content-Type": "application/json"})
        if status != 200:
            raise self._fail(status, data, "a /buffer-length query")
        n = json.loads(data)[0]
        if n is True or (n == 0 and not self.has(cs)):
            return None  # absent (or only promised)
        return int(n)

    def get(self, cs):
        """The verified bytes, or None when the server does not have them."""
        cs = parse_checksum(cs)
        for _ in range(2):  # one more try if the bytes come back wrong
            status, headers, data = self.client.call("GET", "/" + cs, headers={"Accept-Encoding": "gzip"})
            if status == 404:
                return None
            if status != 200:
                raise self._fail(status, data, f"GET {cs}", cs)
            encoding = headers.get("content-encoding")
            if encoding and encoding != "identity":
                data = _decode(data, encoding)
            if calculate_checksum(data) == cs:
                return data
        raise CorruptBuffer(f"{self.url} sent bytes for {cs} that do not match the checksum")

    def _fetch(self, cs, open_sink):
        """GET cs, streaming the decoded bytes into open_sink() (opened anew on a retry):
        (200, their sha-256) or (status, body)."""

        def handle(response):
            if response.status != 200:
                return response.status, response.read()
            encoding = response.getheader("Content-Encoding")
            dec = Decoder(encoding) if encoding and encoding != "identity" else None
            h = hashlib.sha256()
            with open_sink() as f:
                try:
                    while chunk := response.read(CHUNK):
                        for piece in dec.feed(chunk) if dec is not None else (chunk,):
                            h.update(piece)
                            f.write(piece)
                    if dec is not None:
                        dec.finish()
                except (StoreError, *decode_errors()) as exc:
                    raise CorruptBuffer(f"{self.url} sent {encoding} data for {cs} that does not decode: {exc}") from None
            return 200, h.hexdigest()

        return self.client.call("GET", "/" + cs, headers={"Accept-Encoding": "gzip"}, handle=handle)

    def has_verified(self, cs) -> bool:
        """True if the server sends bytes that hash to cs. Reads the whole buffer: it is
        for making sure of a copy (before deleting the original), not for lookups."""
        cs = parse_checksum(cs)
        try:
            status, result = self._fetch(cs, lambda: open(os.devnull, "wb"))
            if status == 404:
                return False
            if status != 200:
                raise self._fail(status, result, f"GET {cs}", cs)
        except CorruptBuffer:
            return False
        return result == cs

    def get_to_file(self, cs, path) -> bool:
        """Stream a buffer into `path` (atomically, verified); False when absent."""
        cs = parse_checksum(cs)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=directory)
        os.close(fd)
        try:
            status, result = self._fetch(cs, lambda: open(tmp, "wb"))
            if status == 404:
                return False
            if status != 200:
                raise self._fail(status, result, f"GET {cs}", cs)
            if result != cs:
                raise CorruptBuffer(f"{self.url} sent bytes for {cs} that do not match the checksum")
            os.chmod(tmp, 0o644)  # a download is the user's file, not mkstemp's private 0600 one
            os.replace(tmp, path)
            return True
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _check_writable(self):
        if not self.writable:
            raise ReadOnlyStore(f"hashserver {self.url} is configured read-only")

    def _put(self, cs, body):
        status, _, data = self.client.call("PUT", "/" + cs, body, {"Content-Type": "application/octet-stream"})
        if status in (200, 201, 202):
            return cs
        if status == 400 and b"Incorrect checksum" in data:
            raise ChecksumMismatch(f"{self.url} rejected the buffer: it does not hash to {cs}")
        raise self._fail(status, data, f"PUT {cs}")

    def put(self, data, checksum=None) -> str:
        self._check_writable()
        cs = calculate_checksum(data)
        if checksum is not None and parse_checksum(checksum) != cs:
            raise ChecksumMismatch(f"buffer hashes to {cs}, not {checksum}")
        return self._put(cs, bytes(data))

    def put_file(self, path, checksum=None) -> str:
        """Upload a file in constant memory; returns its checksum."""
        self._check_writable()
        cs = checksum_file(path) if checksum is None else parse_checksum(checksum)
        with open(path, "rb") as f:
            return self._put(cs, f)

    def promise(self, cs):
        self._check_writable()
        status, _, data = self.client.call("PUT", "/promise/" + parse_checksum(cs))
        if status != 202:
            raise self._fail(status, data, "a promise")


def _message(text):
    """The message of an error body: upstream's JSON {"message": ...}, or our plain text."""
    if text.startswith("{"):
        try:
            message = json.loads(text).get("message")
        except (ValueError, AttributeError):
            message = None
        if isinstance(message, str):
            return message
    return text


def _decode(data, encoding):
    try:
        dec = Decoder(encoding)
        data = b"".join(dec.feed(data))
        dec.finish()
        return data
    except decode_errors() as exc:
        raise CorruptBuffer(f"cannot decompress a {encoding} buffer: {exc}") from None
