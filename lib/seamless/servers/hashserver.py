"""seamless-hashserver: a content-addressed buffer server, wire-compatible with upstream.

GET/HEAD/PUT /<checksum>, PUT /promise/<checksum>, GET /has, /has-now, /buffer-length
(JSON list bodies), GET /healthcheck. Buffers live in a DirectoryStore; extra
directories are searched read-only.

Waiting for a buffer someone is writing (an upload to this server, an external writer's
.LOCK file) is bounded by --lock-timeout: a stalled client cannot hold readers, or other
uploaders of the same buffer, for longer.
"""

import argparse
import collections
import json
import os
import threading
import time

from seamless.checksum import parse_checksum
from seamless.cli import UserError, set_debug
from seamless.servers.http import Handler, HTTPError, add_server_arguments, make_server
from seamless.servers.service import serve
from seamless.store import ChecksumMismatch, CorruptBuffer, NoSpace, StoreError, WriteFailed
from seamless.store.clients import warn
from seamless.store.compression import Decoder, decode_errors, digest_stream, open_decoded
from seamless.store.directory import DirectoryStore

PROMISE_TTL = 600.0
SMALL_FILE = 256 << 10  # served with read + write; larger files with sendfile
# a JSON list of this many checksums is plenty (about 66 bytes each)
MAX_LIST_BODY = 64 << 20


class BufferService:
    """The hashserver's state: stores, uploads in flight, promises."""

    def __init__(self, directory, *, writable, layout, extra_dirs=(), lock_timeout=120.0):
        self.store = DirectoryStore(directory, writable=writable, layout=layout)
        self.extras = [DirectoryStore(d) for d in extra_dirs]
        self.writable = writable
        self.lock_timeout = lock_timeout
        self.cond = threading.Condition()
        self.uploading = collections.Counter()  # checksum -> uploads in progress
        self.promises = {}  # checksum -> monotonic expiry

    def stores(self):
        return [self.store, *self.extras]

    def promised(self, cs) -> float:
        """Seconds left on an active promise (0 if none). Call with self.cond held."""
        expiry = self.promises.get(cs)
        if expiry is None:
            return 0.0
        left = expiry - time.monotonic()
        if left <= 0:
            del self.promises[cs]
            return 0.0
        return left

    def promise(self, cs):
        with self.cond:
            self.promises[cs] = time.monotonic() + PROMISE_TTL

    def present(self, cs, count_promises) -> bool:
        with self.cond:
            if cs in self.uploading or (count_promises and self.promised(cs)):
                return True
        return any(store.find(cs) is not None for store in self.stores())

    def await_uploads(self, cs, deadline) -> bool:
        """Wait until no upload of cs is in progress, or until `deadline` (monotonic);
        True if none is. Call with self.cond held."""
        while self.uploading[cs]:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.cond.wait(left)
        return True

    def length(self, cs):
        with self.cond:
            self.await_uploads(cs, time.monotonic() + self.lock_timeout)
        for store in self.stores():
            try:
                n = store.length(cs)
            except (StoreError, OSError, *decode_errors()) as exc:
                raise HTTPError(400, f"cannot tell the length of {cs}: {exc}") from None
            if n is not None:
                return n
        with self.cond:
            return True if self.promised(cs) else 0  # upstream reports `true` for promised

    def locate(self, cs, wait=True):
        """(store, path, encoding, stat, length) of a verified stored form, or None.

        With `wait`, a missing buffer is waited for while it is being uploaded (at most
        lock_timeout), while it is promised (until the promise expires), and while an
        external writer's lock file is young; then it counts as absent. A corrupt form
        does not hide a good one (another form, an extra directory); when it is all
        there is, CorruptBuffer is raised (removed first if this server may write).
        """
        deadline = time.monotonic() + self.lock_timeout
        last_look = False
        corrupt = None
        while True:
            for store in self.stores():
                found, bad = self._verified(store, cs)
                if found is not None:
                    return (store, *found)
                corrupt = corrupt or bad
            if not wait or last_look:
                if corrupt is not None:
                    raise corrupt
                return None
            with self.cond:
                if self.uploading[cs]:
                    if not self.await_uploads(cs, deadline):
                        last_look = True  # a stalled upload: answer with what is stored
                    continue
                left = self.promised(cs)
                if left:
                    self.cond.wait(left)
                    continue
            if time.monotonic() < deadline and self._locked(cs):
                time.sleep(1.0)
                continue
            last_look = True  # an upload may have landed between the look and the lock

    def _verified(self, store, cs):
        """(verified form or None, CorruptBuffer of a bad form or None) in one store.
        Each form is looked at in turn; a corrupt one in our own writable directory is
        removed, so that the next GET is a plain miss and a new upload repairs it."""
        corrupt = None
        for encoding in (None, "gzip", "zstd"):
            while True:
                try:
                    found = store.verified(cs, (encoding,))
                except CorruptBuffer as exc:
                    removed = store is self.store and self.writable and exc.path and store.remove(exc.path)
                    warn(f"{exc}: {'removed it' if removed else 'cannot remove it'}")
                    corrupt = corrupt or CorruptBuffer(f"{exc}{' (the server removed it)' if removed else ''}", exc.path)
                    if removed:
                        continue  # the same form may sit in the other layout too
                    break
                if found is not None:
                    return found, None
                break
        return None, corrupt

    def _locked(self, cs) -> bool:
        now = time.time()
        for store in self.stores():
            target = store.target_dir(cs)
            for lock in (os.path.join(target, ".LOCK"), os.path.join(target, cs) + ".LOCK"):
                try:
                    if now - os.stat(lock).st_mtime < self.lock_timeout:
                        return True
                except OSError:
                    pass
        return False

    def begin_upload(self, cs, encoding) -> bool:
        """Start an upload of cs; False if a verified copy (plain, or in this encoding) is
        stored already. An upload of cs in progress is waited for, at most lock_timeout:
        then both write, which the store makes harmless."""
        with self.cond:
            self.await_uploads(cs, time.monotonic() + self.lock_timeout)
            self.uploading[cs] += 1
        try:
            there = self.store.has_verified(cs, {None, encoding})  # a corrupt copy is removed
        except BaseException:
            self.end_upload(cs, False)
            raise
        if there:
            self.end_upload(cs, True)
        return not there

    def end_upload(self, cs, stored):
        with self.cond:
            self.uploading[cs] -= 1
            if self.uploading[cs] <= 0:
                del self.uploading[cs]
            if stored:
                self.promises.pop(cs, None)
            self.cond.notify_all()


def _accepts(header: str, coding: str) -> bool:
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() in (coding, "*", "x-" + coding):
            q = params.strip().replace(" ", "")
            return q not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class HashserverHandler(Handler):
    server_version = "seamless-hashserver"

    def route(self, method, path):
        service = self.server.service
        if method in ("GET", "HEAD") and path in ("/has", "/has-now", "/buffer-length"):
            return self.batch(service, path)
        if path.startswith("/promise/"):
            if method != "PUT":
                raise HTTPError(405, "Method Not Allowed")
            self.require_writable(service)
            cs = self.path_checksum(path[len("/promise/"):])
            service.promise(cs)
            return self.respond_json(202, {"checksum": cs, "expires_in": PROMISE_TTL})
        cs = self.path_checksum(path[1:])
        if method == "PUT":
            self.require_writable(service)
            return self.put(service, cs)
        return self.get(service, cs)

    @staticmethod
    def require_writable(service):
        if not service.writable:
            raise HTTPError(405, "Method Not Allowed: this hashserver is read-only (start it with --writable)")

    @staticmethod
    def path_checksum(text):
        try:
            return parse_checksum(text)
        except ValueError as exc:
            if "/" in text or not text:
                raise HTTPError(404, "Not found") from None
            raise HTTPError(400, f"Invalid checksum: {exc}") from None

    def batch(self, service, path):
        try:
            items = json.loads(self.body.read(MAX_LIST_BODY) or b"null")
        except (ValueError, RecursionError):
            raise HTTPError(400, "body must be a JSON list of checksums") from None
        if not isinstance(items, list):
            raise HTTPError(400, "body must be a JSON list of checksums")
        try:
            checksums = [parse_checksum(item) for item in items]
        except ValueError as exc:
            raise HTTPError(400, f"Invalid checksum in list: {exc}") from None
        if path == "/buffer-length":
            result = [service.length(cs) for cs in checksums]
        else:
            promises = path == "/has"
            result = [service.present(cs, promises) for cs in checksums]
        self.respond_json(200, result)

    def get(self, service, cs):
        """GET and HEAD of a buffer (HEAD does not wait for uploads or promises)."""
        try:
            found = service.locate(cs, wait=self.command != "HEAD")
        except CorruptBuffer as exc:
            raise HTTPError(400, f"File corruption: {exc}") from None
        except StoreError as exc:
            raise HTTPError(400, str(exc)) from None
        except OSError as exc:  # cannot read it now (permissions, out of descriptors)
            raise HTTPError(503, f"cannot read the buffer: {exc.strerror or exc}") from None
        if found is None:
            return self.respond(404, "Not found")
        store, path, encoding, st, length = found
        headers = [("ETag", f'"{cs}"')]
        if encoding is not None and not _accepts(self.req_headers.get("accept-encoding", ""), encoding):
            return self.send_decoded(path, encoding, length, headers)
        if encoding is not None:
            headers.append(("Content-Encoding", encoding))
        head = self.head_block(200, st.st_size, "application/octet-stream", headers)
        if self.command == "HEAD":
            return self.wfile.write(head)
        try:
            f = open(path, "rb")
        except FileNotFoundError:  # removed since it was verified
            return self.respond(404, "Not found")
        with f:
            if st.st_size <= SMALL_FILE:  # one write for header and body
                return self.wfile.write(head + f.read(st.st_size))
            self.wfile.write(head)
            sent = self.connection.sendfile(f, 0, st.st_size)
            if sent != st.st_size:  # the file shrank under us: the client sees a short body
                self.close_connection = True

    def send_decoded(self, path, encoding, length, headers):
        """Stream a compressed-only buffer, decompressed, to a client that does not accept
        its coding (the content and its length were verified just before)."""
        head = self.head_block(200, length, "application/octet-stream", headers)
        if self.command == "HEAD":
            return self.wfile.write(head)
        try:
            f = open_decoded(path, encoding)
        except FileNotFoundError:
            return self.respond(404, "Not found")
        with f:
            self.wfile.write(head)
            sent = 0
            try:
                while sent < length and (chunk := f.read(min(SMALL_FILE, length - sent))):
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except (OSError, *decode_errors()):
                pass
            if sent != length:  # headers are out: a short body and a closed connection tell
                self.close_connection = True

    def put(self, service, cs):
        encoding = self.req_headers.get("content-encoding", "identity").strip().lower() or "identity"
        encoding = {"identity": None, "gzip": "gzip", "x-gzip": "gzip", "zstd": "zstd"}.get(encoding, encoding)
        if encoding not in (None, "gzip", "zstd"):
            raise HTTPError(400, f"unsupported Content-Encoding {encoding!r} (use gzip, zstd or none)")
        if encoding is not None:
            try:
                Decoder(encoding)  # is the codec available here?
            except StoreError as exc:
                raise HTTPError(400, str(exc)) from None
        size = None if self.body.chunked else self.body.remaining
        if not service.begin_upload(cs, encoding):
            if self.body.withheld:  # no bytes sent (Expect: 100-continue): none to refuse
                return self.respond(201)
            # a good copy is stored, but the bytes sent must still be the right ones
            try:
                matches = digest_stream(self.body, encoding, size)[0] == cs
            except StoreError as exc:
                raise HTTPError(400, str(exc), close=True) from None
            if not matches:
                raise HTTPError(400, "Incorrect checksum")
            return self.respond(201)
        stored = False
        try:
            service.store.put_stream(self.body, cs, encoding, size)
            stored = True
        except ChecksumMismatch:
            raise HTTPError(400, "Incorrect checksum") from None
        except NoSpace as exc:
            raise HTTPError(507, str(exc)) from None
        except WriteFailed as exc:  # our directory's fault, not the client's
            raise HTTPError(500, str(exc)) from None
        except StoreError as exc:
            raise HTTPError(400, str(exc), close=True) from None
        finally:
            service.end_upload(cs, stored)
        self.respond(200, "OK")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="seamless-hashserver",
        description="Serve a directory of content-addressed buffers over HTTP "
        "(protocol-compatible with upstream Seamless hashserver).",
    )
    parser.add_argument("directory", help="buffer directory (must exist)")
    add_server_arguments(parser)
    parser.add_argument("--layout", choices=("prefix", "flat"), default="prefix",
                        help="where new buffers go: DIR/ab/abcd... (prefix, default) or DIR/abcd... (flat)")
    parser.add_argument("--extra-dirs", metavar="D1:D2",
                        help="more buffer directories to read from (':' or ';' separated)")
    parser.add_argument("--lock-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="wait for external writers' .LOCK files younger than this (default 120)")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    set_debug(args.verbose)
    args.directory = os.path.expanduser(args.directory)
    if not os.path.isdir(args.directory):
        raise UserError(f"buffer directory {args.directory} does not exist (create it first)")
    extra = [d for d in (args.extra_dirs or "").replace(";", ":").split(":") if d]
    for d in extra:
        if not os.path.isdir(d):
            raise UserError(f"extra directory {d} does not exist")
    server = make_server(HashserverHandler, args)

    def start(parameters):
        try:
            server.service = BufferService(args.directory, writable=args.writable, layout=args.layout,
                                           extra_dirs=extra, lock_timeout=args.lock_timeout)
        except StoreError as exc:
            raise UserError(str(exc)) from None
        if args.writable:  # uploads cut off by a kill leave temp files: clear old ones
            threading.Thread(target=server.service.store.sweep_temp, daemon=True).start()

    mode = "writable" if args.writable else "read-only"
    return serve(server, args, f"serving {args.directory} ({mode})", start)
