"""The HTTP layer that seamless-hashserver, seamless-db and later servers share (their
life as a service, with ports, status file, signals and idle timeout: service.py).

* ThreadingHTTPServer with HTTP/1.1 keep-alive; every response has Content-Length.
* A small request parser of our own (the stdlib's email-based header parsing is the
  slowest part of http.server, and its 501/505 replies would be 5xx for client errors).
* An optional bearer token.
* What a client can make us hold before its token is checked is bounded: 16 KiB of
  request line and headers per request, sent within --header-timeout seconds in all
  (not per byte), and --max-connections connections at once (one thread each).
* A connection is in one of three phases: "head" (from its accept, or from the first byte
  of its next request, until its headers are read), "busy" (a request being served) or
  "idle" (kept alive between requests, at most --keepalive-timeout seconds). At the
  limit, a new connection closes the longest idle one, else the oldest head that is
  late; only when every connection is busy (or just arrived) is it refused with 503.
"""

import argparse
import hmac
import io
import json
import re
import socket
import sys
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from seamless.cli import UserError, debug_enabled

MAX_LINE = 65536  # a line of chunked-body framing
MAX_HEADER_BYTES = 16 << 10  # request line + headers of one request (nginx, node: 8-16 KiB)
MAX_HEADERS = 100
MAX_CONNECTIONS = 256
# an unread request body up to this size is drained to keep the connection; larger closes
# it. PUT bodies are always drained: clients send the whole body before reading the
# answer, so closing early would turn a 201 or 4xx into a broken pipe on their side.
DRAIN_LIMIT = 1 << 20
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
IO_TIMEOUT = 60.0  # seconds one socket read or write may take while a request is served
HEADER_TIMEOUT = 20.0  # a request line and its headers must arrive within this, in all
KEEPALIVE_TIMEOUT = 60.0  # an idle kept-alive connection is closed after this
# at the limit, a head this late may be closed for a new connection (a client that
# means it sends its head at once)
HEAD_GRACE = 1.0
HEAD, BUSY, IDLE = "head", "busy", "idle"  # the phases of a connection


class HTTPError(Exception):
    """Ends a request with this status and a plain-text body."""

    def __init__(self, status: int, message: str = "", close: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class BodyReader:
    """The request body as a stream with readinto/read, bounded by Content-Length or chunked."""

    def __init__(self, rfile, length=None, chunked=False, continue_to=None):
        self.rfile = rfile
        self.remaining = length  # bytes left in the body (or current chunk, if chunked)
        self.chunked = chunked
        self.done = not chunked and not length
        # "Expect: 100-continue": the client waits for this before sending the body
        self.continue_to = None if self.done else continue_to

    @property
    def withheld(self) -> bool:
        """The client waits for "100 Continue" before it sends the body (none has come)."""
        return self.continue_to is not None

    def _go_ahead(self):
        if self.continue_to is not None:
            self.continue_to.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.continue_to = None

    def _next_chunk(self):
        line = self.rfile.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            raise HTTPError(400, "malformed chunked body", close=True)
        digits = line.split(b";", 1)[0].strip()
        if not _HEX.fullmatch(digits):
            raise HTTPError(400, "malformed chunk size", close=True)
        size = int(digits, 16)
        if size == 0:
            while self.rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            self.done = True
        self.remaining = size

    def readinto(self, view) -> int:
        if self.done:
            return 0
        self._go_ahead()
        if self.chunked and not self.remaining:
            if self.remaining == 0:
                self.rfile.readline(MAX_LINE)  # CRLF after the previous chunk
            self._next_chunk()
            if self.done:
                return 0
        want = min(len(view), self.remaining)
        n = self.rfile.readinto(view[:want])
        if not n:
            raise HTTPError(400, "request body ended early", close=True)
        self.remaining -= n
        if not self.chunked and self.remaining == 0:
            self.done = True
        return n

    def read(self, limit=None) -> bytes:
        """Read the whole body, refusing more than `limit` bytes."""
        if not self.chunked and self.remaining is not None:
            if limit is not None and self.remaining > limit:
                raise HTTPError(413, f"request body larger than {limit} bytes", close=True)
            if not self.done:
                self._go_ahead()
            data = self.rfile.read(self.remaining) if self.remaining else b""
            if len(data) < (self.remaining or 0):
                raise HTTPError(400, "request body ended early", close=True)
            self.remaining = 0
            self.done = True
            return data
        parts = []
        total = 0
        buf = memoryview(bytearray(65536))
        while n := self.readinto(buf):
            total += n
            if limit is not None and total > limit:
                raise HTTPError(413, f"request body larger than {limit} bytes", close=True)
            parts.append(bytes(buf[:n]))
        return b"".join(parts)

    def discard(self, limit=DRAIN_LIMIT) -> bool:
        """Skip what is left of the body; False if it is larger than `limit` (None: any)."""
        if self.done:
            return True
        if self.withheld:
            return False  # the client still waits for our go-ahead: it sends nothing more
        if limit is not None and not self.chunked and self.remaining > limit:
            return False
        buf = memoryview(bytearray(65536))
        total = 0
        try:
            while n := self.readinto(buf):
                total += n
                if limit is not None and total > limit:
                    return False
        except (HTTPError, OSError):
            return False
        return True


class DeadlineReader(socket.SocketIO):
    """A socket's raw reader whose reads fail with TimeoutError once `deadline`
    (monotonic) has passed: a bound on all of a request head, not on each byte of it.
    It keeps track of the socket's timeout so as to change it only when needed (a head
    that arrives in one piece, the usual case, costs no system call)."""

    deadline = None

    def __init__(self, sock, mode):
        super().__init__(sock, mode)
        self.timeout = sock.gettimeout()

    def set_timeout(self, seconds):
        """The socket's timeout for each operation (reads and writes)."""
        if seconds != self.timeout:
            self._sock.settimeout(seconds)
            self.timeout = seconds

    def readinto(self, b):
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed")
            if left < self.timeout:
                self.set_timeout(left)
        return super().readinto(b)


class Handler(BaseHTTPRequestHandler):
    """Parses requests and dispatches to route(method, path); subclasses define route."""

    protocol_version = "HTTP/1.1"
    server_version = "seamless"
    rbufsize = 1 << 16
    timeout = IO_TIMEOUT
    allowed_methods = ("GET", "PUT", "HEAD")

    def setup(self):
        super().setup()
        # responses go out as header + body writes: without this, Nagle's algorithm and
        # delayed ACKs stall every keep-alive request by ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile.close()  # read through a DeadlineReader instead
        self.reader = DeadlineReader(self.connection, "rb")
        self.reader.deadline = time.monotonic() + self.server.header_timeout  # from the accept
        self.rfile = io.BufferedReader(self.reader, self.rbufsize)
        self.kept_alive = False

    def handle_one_request(self):
        self.close_connection = True  # until the request line and headers are known good
        self.body = None
        self.command = None
        self.requestline = ""
        self.request_version = "HTTP/1.0"
        self.busy = False
        try:
            line = self._request_line()
            if line:
                self._handle(line)
        except HTTPError as exc:
            if self.reader.deadline is not None:  # a bad head: answer it at the usual pace
                self._end_head()
            if exc.close or self.body is None or not self.body.discard(self._drain_limit(exc.status)):
                self.close_connection = True
            self._try_error(exc.status, exc.message)
        except (BrokenPipeError, ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug: answer 500 and keep serving
            self.server.log_exception(exc)
            self.close_connection = True
            self._try_error(500, f"internal server error: {type(exc).__name__}")
        finally:
            if self.busy:
                self.server.activity_end(self.connection)  # idle from now on
                self.kept_alive = True

    def _request_line(self) -> bytes:
        """The next request line (b"" when the connection is done), read before the
        head's deadline; a kept-alive connection first waits for the next request."""
        server = self.server
        if self.kept_alive:
            self.reader.set_timeout(server.keepalive_timeout)  # one read: the whole wait
            try:
                if not self.rfile.peek(1):
                    return b""  # closed by the client, or by the server to make room
            except OSError:  # TimeoutError included: idle too long
                return b""
            if not server.set_phase(self.connection, HEAD):
                return b""
            self.reader.deadline = time.monotonic() + server.header_timeout
        try:
            return self.rfile.readline(MAX_HEADER_BYTES + 1)
        except TimeoutError:
            raise self._late_head() from None
        except ConnectionError:
            return b""

    def _late_head(self):
        return HTTPError(408, f"request line and headers not received within {self.server.header_timeout:g} s",
                         close=True)

    def _end_head(self):
        """Back to a per-operation timeout for the body and the response."""
        self.reader.deadline = None
        self.reader.set_timeout(self.timeout)

    def _try_error(self, status, message):
        try:
            self.respond(status, message)
        except OSError:
            self.close_connection = True

    def _handle(self, line: bytes):
        self.requestline = line[:200].decode("latin-1").rstrip("\r\n")
        if len(line) > MAX_HEADER_BYTES:
            raise HTTPError(414, f"request line longer than {MAX_HEADER_BYTES} bytes", close=True)
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HTTPError(400, "malformed request line", close=True)
        self.command, self.path, self.request_version = parts
        headers = {}
        budget = MAX_HEADER_BYTES - len(line)
        readline = self.rfile.readline
        while True:
            try:
                raw = readline(budget + 1)
            except TimeoutError:
                raise self._late_head() from None
            budget -= len(raw)
            if budget < 0:
                raise HTTPError(431, f"request headers larger than {MAX_HEADER_BYTES} bytes in all", close=True)
            if raw in (b"\r\n", b"\n"):
                break
            if not raw:
                raise HTTPError(400, "connection closed inside the headers", close=True)
            if len(headers) >= MAX_HEADERS:
                raise HTTPError(431, "too many request headers", close=True)
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep or not name or name != name.strip():
                raise HTTPError(400, "malformed request header", close=True)
            name, value = name.lower(), value.strip()
            if name == "content-length" and headers.get(name, value) != value:
                raise HTTPError(400, "conflicting Content-Length headers", close=True)
            headers[name] = value
        self._end_head()
        if not self.server.activity_begin(self.connection):
            raise ConnectionAbortedError("closed to make room")
        self.busy = True
        self.req_headers = headers
        connection = headers.get("connection", "").lower()
        if self.request_version == "HTTP/1.0":
            self.close_connection = connection != "keep-alive"
        else:
            self.close_connection = connection == "close"
        self.body = self._body_reader(headers)
        path, _, self.query = self.path.partition("?")
        if path == "/healthcheck" and self.command in ("GET", "HEAD"):
            self.respond(200, "OK")  # no token needed: it reveals nothing, and launchers poll it
        else:
            self.server.check_auth(headers.get("authorization"))
            if self.command not in self.allowed_methods:
                raise HTTPError(405, "Method Not Allowed")
            self.route(self.command, path)
        if self.body is not None and not self.body.discard(self._drain_limit()):
            self.close_connection = True

    def _drain_limit(self, status=200):
        # a stranger's upload is not worth reading in full: drain a little, then close
        return None if self.command == "PUT" and status != 401 else DRAIN_LIMIT

    def _body_reader(self, headers):
        expect = headers.get("expect", "").lower() == "100-continue"
        go_ahead = self.wfile if expect else None
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return BodyReader(self.rfile, chunked=True, continue_to=go_ahead)
        length = headers.get("content-length")
        if length is None:
            return BodyReader(self.rfile, 0)
        if not (length.isascii() and length.isdigit()):
            raise HTTPError(400, "invalid Content-Length", close=True)
        return BodyReader(self.rfile, int(length), continue_to=go_ahead)

    def route(self, method, path):  # pragma: no cover - subclasses define it
        raise HTTPError(404, "Not found")

    # --- responses ----------------------------------------------------------------

    def head_block(self, status, length, content_type, headers=()) -> bytes:
        if self.server.verbose:
            self.log_request(status, length)
        reason = _REASONS.get(status, "Unknown")
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {_http_date()}",
            f"Content-Length: {length}",
        ]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.extend(f"{k}: {v}" for k, v in headers)
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        if status == 401:
            lines.append('WWW-Authenticate: Bearer realm="seamless"')
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def respond(self, status, body=b"", content_type="text/plain; charset=utf-8", headers=()):
        if isinstance(body, str):
            body = body.encode()
        head = self.head_block(status, len(body), content_type if body or status >= 400 else None, headers)
        if self.command == "HEAD":
            body = b""
        self.wfile.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.wfile.write(body)

    def respond_json(self, status, obj):
        self.respond(status, json.dumps(obj), "application/json")

    def log_message(self, format, *args):
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")


_REASONS = {s.value: s.phrase for s in HTTPStatus}
_date_cache = [0, ""]


def _http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True)]
    return _date_cache[1]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, handler, *, token=None, verbose=False, max_connections=MAX_CONNECTIONS,
                 header_timeout=HEADER_TIMEOUT, keepalive_timeout=KEEPALIVE_TIMEOUT):
        super().__init__(("127.0.0.1", 0), handler, bind_and_activate=False)
        self.token = None if token is None else token.encode()
        self.verbose = verbose
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.phases = {}  # connection socket -> [phase, monotonic time it began]
        self._lock = threading.Lock()
        self.active = 0
        self.last_activity = time.monotonic()
        body = (f"server busy: all {max_connections} connections (the limit, see --max-connections) "
                "are serving requests; retry later\n").encode()
        self._busy = (f"HTTP/1.1 503 Service Unavailable\r\nServer: {handler.server_version}\r\n"
                      f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                      "Retry-After: 1\r\nConnection: close\r\n\r\n").encode() + body

    def process_request(self, request, client_address):
        with self._lock:
            if len(self.phases) >= self.max_connections:
                self._make_room()
            busy = len(self.phases) >= self.max_connections
            if not busy:
                self.phases[request] = [HEAD, time.monotonic()]
        if busy:
            return self._refuse(request)
        try:
            super().process_request(request, client_address)  # a thread for this connection
        except BaseException:
            self._connection_closed(request)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connection_closed(request)

    def _connection_closed(self, request):
        with self._lock:
            self.phases.pop(request, None)

    def _make_room(self):
        """Close the connection idle longest, else the one whose head is latest (if it is
        late), so that a new one can be served. Call with the lock held."""
        now = time.monotonic()
        choices = [(phase != IDLE, since, request) for request, (phase, since) in self.phases.items()
                   if phase == IDLE or (phase == HEAD and now - since >= HEAD_GRACE)]
        if not choices:
            return
        victim = min(choices, key=lambda c: c[:2])[2]
        del self.phases[victim]  # its thread sees the connection end, and stops
        try:
            victim.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def set_phase(self, request, phase) -> bool:
        """Record the phase a connection is in; False if it was closed to make room."""
        with self._lock:
            entry = self.phases.get(request)
            if entry is None:
                return False
            entry[:] = phase, time.monotonic()
            return True

    def _refuse(self, request):
        """503 and close, in the accepting thread (no thread per refused connection, and
        no waiting on the client: the few bytes fit in a fresh socket's send buffer)."""
        try:
            request.setblocking(False)
            request.send(self._busy)
            request.recv(1 << 16)  # what has arrived: closing on unread data would reset the connection
        except OSError:
            pass
        self.shutdown_request(request)

    def server_bind(self):
        # skip HTTPServer.server_bind: its getfqdn() can hang on machines without DNS
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = self.server_address[:2]

    def activity_begin(self, request) -> bool:
        """A request's head is read: the connection is busy (False if it was closed)."""
        with self._lock:
            entry = self.phases.get(request)
            if entry is None:
                return False
            self.active += 1
            self.last_activity = entry[1] = time.monotonic()
            entry[0] = BUSY
            return True

    def activity_end(self, request):
        """A request is answered: the connection is idle until the next one."""
        with self._lock:
            self.active -= 1
            self.last_activity = time.monotonic()
            entry = self.phases.get(request)
            if entry is not None:
                entry[:] = IDLE, self.last_activity

    def idle_seconds(self) -> float:
        with self._lock:
            return 0.0 if self.active else time.monotonic() - self.last_activity

    def check_auth(self, header):
        if self.token is None:
            return
        scheme, _, credentials = (header or "").strip().partition(" ")
        # the scheme word is case-insensitive (RFC 9110 11.1); latin-1 gives back the bytes sent
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode("latin-1"), self.token):
            raise HTTPError(401, "Unauthorized: send 'Authorization: Bearer <token>' (see --token-file)")

    def log_exception(self, exc):
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc}\n")
        if self.verbose or debug_enabled():
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__)

    def bind_port(self, host, port=None, port_range=None):
        """Bind to host:port, or to a random free port of port_range (by binding it)."""
        from seamless.servers.service import pick_port

        try:
            family, _, _, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        except socket.gaierror as exc:
            raise UserError(f"cannot listen on host {host!r}: {exc.strerror} (check --host)") from None
        if family != self.socket.family:
            self.socket.close()
            self.address_family = family
            self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def bind(candidate):
            self.server_address = (address[0], candidate, *address[2:])
            self.server_bind()

        pick_port(host, port, port_range, bind)
        self.server_activate()
        return self.server_address[1]

    # the service lifecycle (servers/service.py) runs it through these
    def serve(self):
        self.serve_forever(poll_interval=0.5)

    def stop(self):
        self.shutdown()

    def close(self):
        self.server_close()


def add_server_arguments(parser: argparse.ArgumentParser, writable=True):
    """The options every seamless HTTP server takes (launcher-compatible); --writable
    for those that store."""
    from seamless.servers.service import add_service_arguments, count, seconds

    add_service_arguments(parser)
    if writable:
        parser.add_argument("--writable", action="store_true", help="accept PUT requests")
    parser.add_argument("--token-file", metavar="FILE",
                        help="require 'Authorization: Bearer <token>' with the token in FILE")
    parser.add_argument("--max-connections", type=count, default=MAX_CONNECTIONS, metavar="N",
                        help=f"serve at most N connections at once (default {MAX_CONNECTIONS}); at the limit, "
                        "close an idle one for a new one, or refuse it with 503 when all are busy")
    parser.add_argument("--header-timeout", type=seconds, default=HEADER_TIMEOUT, metavar="SECONDS",
                        help=f"a request line and its headers must arrive within SECONDS in all, else 408 "
                        f"(default {HEADER_TIMEOUT:g})")
    parser.add_argument("--keepalive-timeout", type=seconds, default=KEEPALIVE_TIMEOUT, metavar="SECONDS",
                        help=f"close a connection idle this long between requests (default {KEEPALIVE_TIMEOUT:g})")


def make_server(handler, args) -> Server:
    """A Server for `handler` with the options of add_server_arguments."""
    return Server(handler, token=read_token(args.token_file), verbose=args.verbose,
                  max_connections=args.max_connections, header_timeout=args.header_timeout,
                  keepalive_timeout=args.keepalive_timeout)


def read_token(path):
    if path is None:
        return None
    try:
        with open(path) as f:
            token = f.read().strip()
    except OSError as exc:
        raise UserError(f"cannot read token file {path}: {exc.strerror}") from None
    if not token:
        raise UserError(f"token file {path} is empty")
    return token
