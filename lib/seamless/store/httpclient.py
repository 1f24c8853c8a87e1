"""A keep-alive HTTP/1.1 client for seamless servers (stdlib http.client).

One connection per thread and server, reused across requests. Connection errors are
retried (a dropped keep-alive connection at once, then with exponential backoff), and so
is 503 (a busy server), a few times, after its Retry-After (bounded); any other HTTP
error status never is: a 4xx will not change by asking again.
Timeouts follow upstream's environment variables SEAMLESS_REMOTE_CONNECT_TIMEOUT
(default 10 s) and SEAMLESS_REMOTE_READ_TIMEOUT (default 1200 s).
"""

import errno
import http.client
import os
import socket
import threading
import time
from urllib.parse import urlsplit

from seamless.store import StoreError

ATTEMPTS = 5
BACKOFF = 0.1  # seconds before the second retry; doubles each time
BUSY_RETRIES = 4  # more tries after a 503, each after Retry-After seconds (or a backoff)
BUSY_BACKOFF = 0.5  # seconds, doubling, when a 503 has no Retry-After in seconds
MAX_RETRY_AFTER = 5.0  # a longer Retry-After is cut to this
BLOCKSIZE = 1 << 20
NETWORK_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}


def _retriable(exc) -> bool:
    """A network failure (worth another try), not a local or protocol error."""
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, http.client.HTTPException)):
        return True
    return isinstance(exc, OSError) and exc.errno in NETWORK_ERRNOS


def _retry_after(value, default) -> float:
    """Seconds to wait before asking a busy server again: its Retry-After when that is a
    number of seconds, else `default`; at most MAX_RETRY_AFTER either way."""
    value = (value or "").strip()
    return min(float(value) if value.isdigit() else default, MAX_RETRY_AFTER)


class ServerUnreachable(ConnectionError):
    """All attempts to talk to a server failed."""


def _timeout(name, default):
    value = os.environ.get(name, "")
    if value.lower() in ("none", "off", "false"):
        return None
    try:
        seconds = float(value) if value else default
    except ValueError:
        return default
    return seconds if seconds > 0 else None


def read_token_file(path, named_by, fix):
    """The token in the file at `path`; a clear error says who named the file."""
    try:
        with open(os.path.expanduser(path)) as f:
            return f.read().strip() or None
    except OSError as exc:
        raise StoreError(f"cannot read the token file {path} named by {named_by}: {exc.strerror or exc} ({fix})") from None


class HttpClient:
    def __init__(self, url, token=None, token_file=None):
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http URL: {url}")
        self.url = url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = parts.path
        if not token and token_file:
            token = read_token_file(token_file, f"the token_file of the client entry for {self.url}",
                                    "correct or remove that token_file")
        elif not token and os.environ.get("SEAMLESS_TOKEN_FILE"):
            token = read_token_file(os.environ["SEAMLESS_TOKEN_FILE"], "SEAMLESS_TOKEN_FILE",
                                    "correct the variable, or unset it")
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.connect_timeout = _timeout("SEAMLESS_REMOTE_CONNECT_TIMEOUT", 10.0)
        self.read_timeout = _timeout("SEAMLESS_REMOTE_READ_TIMEOUT", 1200.0)
        self.keepalive = False  # TCP keepalive: a long wait notices a server host that is gone
        self._local = threading.local()

    def __repr__(self):
        return f"HttpClient({self.url!r})"

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        fresh = conn is None
        if fresh:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.host, self.port, timeout=self.connect_timeout, blocksize=BLOCKSIZE)
            conn.connect()
            conn.sock.settimeout(self.read_timeout)
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.keepalive:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
                    if hasattr(socket, option):
                        conn.sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
            self._local.conn = conn
        return conn, fresh

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @staticmethod
    def _send(conn, method, url, body, headers):
        try:
            conn.request(method, url, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # the server may have answered early (401, 413...) and closed: read its answer
            try:
                return conn.getresponse()
            except (OSError, http.client.HTTPException):
                raise exc from None
        return conn.getresponse()

    def call(self, method, path, body=None, headers=None, handle=None):
        """Send a request; return handle(response), or (status, headers, bytes) by default.

        `body` is bytes or a seekable binary file. `handle` must consume the response
        and be safe to call again (a retry after a dropped connection calls it anew).
        """
        hdrs = {**self.auth, **(headers or {})}
        if body is None:
            body = b""
        if hasattr(body, "seek"):
            start = body.tell()
            hdrs.setdefault("Content-Length", str(os.fstat(body.fileno()).st_size - start))
        delay, busy_delay = BACKOFF, BUSY_BACKOFF
        failures = busy = 0
        last = None
        while failures < ATTEMPTS:
            reused = False
            try:
                conn, fresh = self._connection()
                reused = not fresh
                if hasattr(body, "seek"):
                    body.seek(start)
                response = self._send(conn, method, self.base + path, body, hdrs)
                if response.status == 503 and busy < BUSY_RETRIES:  # busy: ask again shortly
                    wait = _retry_after(response.getheader("Retry-After"), busy_delay)
                    response.read()
                    if response.will_close:
                        self.close()
                    busy += 1
                    busy_delay *= 2
                    time.sleep(wait)
                    continue
                if handle is None:
                    result = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
                else:
                    result = handle(response)
                    response.read()  # leave the connection clean for the next request
                if response.will_close:
                    self.close()
                return result
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if not _retriable(exc):
                    raise
                last = exc
                failures += 1
                if reused and failures == 1:
                    continue  # the server closed an idle keep-alive connection: retry at once
                if failures < ATTEMPTS:
                    time.sleep(delay)
                    delay *= 2
            except BaseException:
                self.close()
                raise
        raise ServerUnreachable(f"cannot reach {self.url}: {last or 'connection failed'}")

    def healthcheck(self) -> bool:
        try:
            status, _, _ = self.call("GET", "/healthcheck")
        except ConnectionError:
            return False
        return 200 <= status < 300
