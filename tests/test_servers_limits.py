"""Issue 10: what a stranger can make a server hold before it knows who they are.

Header bytes per request and concurrent connections are bounded (both servers share the
HTTP layer); the bearer scheme word is case-insensitive; /healthcheck needs no token.
"""

import http.client
import socket
import time

import pytest


def raw(port, payload, timeout=10):
    """Send bytes, return the status of the answer (None if the server said nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except OSError:
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if b"\r\n\r\n" in data:
                    break
        except OSError:
            pass
    return int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else None


def get(port, path="/healthcheck", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def headers_of(total, line=1000):
    """Header lines of `line` bytes each, `total` bytes in all (each line well under any
    per-line limit, so only a bound on the whole header block refuses them)."""
    return b"".join(b"X-%04d: %s\r\n" % (i, b"a" * (line - 9)) for i in range(total // line))


@pytest.mark.parametrize("kind", ["hashserver", "dbserver"])
def test_total_header_size_is_bounded(request, kind):
    server = request.getfixturevalue(kind)
    small = b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n" + headers_of(14000) + b"\r\n"
    assert raw(server.port, small) == 200
    big = b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n" + headers_of(20000) + b"\r\n"
    assert raw(server.port, big) == 431
    assert raw(server.port, b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\n\r\n") == 414
    assert get(server.port)[0] == 200


def test_headers_of_many_connections_cost_little_memory(start_service, bufferdir, tmp_path):
    """60 connections sending 100 header lines of 64 KiB grew a --token-file server by
    380 MB, all before the token was checked."""
    token = tmp_path / "token"
    token.write_text("s3cret")
    server = start_service("seamless-hashserver", bufferdir, "--token-file", token)
    before = rss_kib(server.proc.pid)
    lines = b"".join(b"X-Big-%d: %s\r\n" % (i, b"a" * 60000) for i in range(90))
    socks = []
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            socks.append(sock)
            try:
                sock.sendall(b"GET /healthcheck HTTP/1.1\r\n" + lines)  # 5.4 MB, never ended
            except OSError:
                pass  # refused early: what we want
        time.sleep(1)
        grown = rss_kib(server.proc.pid) - before
    finally:
        for sock in socks:
            sock.close()
    assert grown < 60 * 1024, f"the server grew by {grown} KiB"
    assert get(server.port, headers={"Authorization": "Bearer s3cret"})[0] == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
@pytest.mark.parametrize("name", ["seamless-hashserver", "seamless-db"])
def test_bearer_scheme_is_case_insensitive(start_service, tmp_path, name, scheme):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    target = tmp_path / ("buffers" if name == "seamless-hashserver" else "seamless.db")
    if name == "seamless-hashserver":
        target.mkdir()
    server = start_service(name, target, "--writable", "--token-file", token)
    path = "/" + "ab" * 32
    assert get(server.port, path, {"Authorization": f"{scheme} s3cret"})[0] != 401
    assert get(server.port, path, {"Authorization": f"{scheme} wrong"})[0] == 401
    assert get(server.port, path, {"Authorization": f"{scheme}s3cret"})[0] == 401
    assert get(server.port, path, {"Authorization": "Basic s3cret"})[0] == 401


@pytest.mark.parametrize("name", ["seamless-hashserver", "seamless-db"])
def test_healthcheck_needs_no_token(start_service, tmp_path, name):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    target = tmp_path / ("buffers" if name == "seamless-hashserver" else "seamless.db")
    if name == "seamless-hashserver":
        target.mkdir()
    server = start_service(name, target, "--writable", "--token-file", token)
    assert get(server.port) == (200, b"OK")
    assert get(server.port, "/" + "ab" * 32)[0] == 401
    assert get(server.port, "/healthcheck?x=1")[0] == 200


def _busy_connections(port, n):
    """n connections in the middle of a request (a PUT whose body never comes)."""
    socks = []
    for i in range(n):  # distinct checksums: uploads of one checksum wait for each other
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"PUT /" + b"%02x" % i * 32 + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        socks.append(sock)
    time.sleep(0.5)  # their heads are read: they are busy
    return socks


@pytest.mark.parametrize("name", ["seamless-hashserver", "seamless-db"])
def test_connections_over_the_limit_get_503(start_service, tmp_path, name):
    """When every connection is busy; idle ones make room instead (test_http_connections)."""
    target = tmp_path / ("buffers" if name == "seamless-hashserver" else "seamless.db")
    if name == "seamless-hashserver":
        target.mkdir()
    server = start_service(name, target, "--writable", "--max-connections", "4")
    held = _busy_connections(server.port, 4)
    try:
        status, body = get(server.port)
        assert status == 503 and b"--max-connections" in body
    finally:
        held.pop().close()
    deadline = time.monotonic() + 20  # the server notices the closed one
    while get(server.port)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for sock in held:
        sock.close()


def test_default_connection_limit_holds_threads_down(hashserver):
    """Without --max-connections, at most 256 connections are served at once; more are
    refused from the accepting thread, so a flood does not spawn a thread each. Stalled
    heads do not keep others out: a late one is closed to make room."""
    socks = []
    try:
        for _ in range(400):
            sock = socket.create_connection(("127.0.0.1", hashserver.port), timeout=30)
            sock.sendall(b"GET /healthcheck HTTP/1.1\r\nX-Slow: ")  # a request that never ends
            socks.append(sock)
        time.sleep(1.5)
        threads = rss_kib(hashserver.proc.pid, "Threads")
        assert threads <= 256 + 10, threads
        assert get(hashserver.port)[0] == 200
    finally:
        for sock in socks:
            sock.close()
