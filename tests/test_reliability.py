"""Real servers under load, under kill -9, and under garbage input."""

import hashlib
import http.client
import json
import os
import random
import socket
import sqlite3
import threading
import time

import pytest

from seamless.store.directory import DirectoryStore
from seamless.store.httpdb import HttpResultDB


def cs_of(data):
    return hashlib.sha256(data).hexdigest()


def test_16_threads_10000_mixed_requests(hashserver):
    rng = random.Random(1)
    buffers = [rng.randbytes(rng.choice([10, 4096, 70000, 300000])) for _ in range(200)]
    checksums = [cs_of(b) for b in buffers]
    errors = []
    per_thread = 10000 // 16 + 1

    def worker(seed):
        r = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", hashserver.port, timeout=60)
        try:
            for _ in range(per_thread):
                i = r.randrange(len(buffers))
                op = r.choice(("PUT", "GET", "GET", "has"))
                if op == "PUT":
                    conn.request("PUT", "/" + checksums[i], body=buffers[i])
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status not in (200, 201):
                        errors.append(("PUT", resp.status, body[:100]))
                elif op == "GET":
                    conn.request("GET", "/" + checksums[i])
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status == 200 and body != buffers[i]:
                        errors.append(("GET", "wrong bytes", i))
                    elif resp.status not in (200, 404):
                        errors.append(("GET", resp.status, body[:100]))
                else:
                    sample = r.sample(range(len(buffers)), 5)
                    conn.request("GET", "/has", body=json.dumps([checksums[j] for j in sample]))
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200 or len(json.loads(body)) != 5:
                        errors.append(("has", resp.status, body[:100]))
        except Exception as exc:  # a dropped connection is an error too
            errors.append(("exception", repr(exc)))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_same_checksum_put_by_8_clients(hashserver, bufferdir):
    data = os.urandom(8 << 20)
    cs = cs_of(data)
    barrier = threading.Barrier(8)
    statuses = []

    def put():
        conn = http.client.HTTPConnection("127.0.0.1", hashserver.port, timeout=60)
        barrier.wait()
        conn.request("PUT", "/" + cs, body=data)
        statuses.append(conn.getresponse().status)
        conn.close()

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(statuses) == 8 and all(s in (200, 201) for s in statuses)
    assert statuses.count(200) >= 1
    assert os.listdir(bufferdir / cs[:2]) == [cs]
    assert (bufferdir / cs[:2] / cs).read_bytes() == data


def test_kill9_during_large_put(start_service, bufferdir):
    server = start_service("seamless-hashserver", bufferdir, "--writable")
    size = 200 << 20
    chunk = os.urandom(1 << 20)
    data_cs = hashlib.sha256(chunk * 200).hexdigest()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"PUT /{data_cs} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
    for _ in range(40):
        sock.sendall(chunk)
    server.kill9()
    sock.close()
    # a temp file may remain, but no buffer is visible
    assert not DirectoryStore(bufferdir).has(data_cs)
    leftovers = [f for _, _, fs in os.walk(bufferdir) for f in fs if f.startswith(data_cs)]
    again = start_service("seamless-hashserver", bufferdir, "--writable")
    conn = http.client.HTTPConnection("127.0.0.1", again.port, timeout=120)
    conn.request("GET", "/" + data_cs)
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (404, b"Not found")
    conn.request("PUT", "/" + data_cs, body=chunk * 200)
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"OK")
    conn.request("GET", "/" + data_cs)
    resp = conn.getresponse()
    assert resp.status == 200 and hashlib.sha256(resp.read()).hexdigest() == data_cs
    # the killed upload's temp file is swept once stale
    for name in leftovers:
        path = bufferdir / data_cs[:2] / name
        if path.exists():
            os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert DirectoryStore(bufferdir, writable=True).sweep_temp() == len(leftovers)
    assert os.listdir(bufferdir / data_cs[:2]) == [data_cs]


def test_kill9_db_during_writes(start_service, tmp_path):
    path = tmp_path / "seamless.db"
    server = start_service("seamless-db", path, "--writable")
    stop = threading.Event()
    written = []

    def writer(w):
        db = HttpResultDB(server.url, writable=True)
        i = 0
        while not stop.is_set():
            tf = cs_of(f"{w} {i}".encode())
            try:
                db.set_transformation(tf, cs_of(f"r {i}".encode()))
                written.append(tf)
            except ConnectionError:
                return
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert len(written) > 100
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {row[0] for row in conn.execute('SELECT checksum FROM "transformation"')}
    assert set(written) <= stored  # every acknowledged write survived the kill
    conn.close()
    again = start_service("seamless-db", path, "--writable")
    db = HttpResultDB(again.url, writable=True)
    db.set_transformation(cs_of(b"after"), cs_of(b"restart"))
    assert db.get_transformation(written[0]) is not None


# --- garbage in ---------------------------------------------------------------------------


def raw(port, payload: bytes, timeout=10):
    """Send raw bytes; return the status code of the first response (None if none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
    if not data.startswith(b"HTTP/1.1 "):
        return None
    return int(data[9:12])


def healthy(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthcheck")
    ok = conn.getresponse().status == 200
    conn.close()
    return ok


@pytest.mark.parametrize("payload,expected", [
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /healthcheck HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET /healthcheck HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", 431),
    (b"GET /healthcheck HTTP/2.0\r\n\r\n", 400),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /healthcheck HTTP/1.1\r\nbad header line\r\n\r\n", 400),
    (b"PUT /" + b"a" * 64 + b" HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    (b"PUT /" + b"a" * 64 + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"PUT /" + b"a" * 64 + b" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nxx\r\n0\r\n\r\n", 400),
    (b"PUT /" + b"a" * 64 + b" HTTP/1.1\r\nContent-Length: \xb2\r\n\r\nx", 400),
    (b"PUT /" + b"a" * 64 + b" HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400),
    (b"GET /has HTTP/1.1\r\nContent-Length: 200000\r\n\r\n" + b"[" * 200000, 400),
], ids=["long-request-line", "long-header", "too-many-headers", "http2", "garbage", "bad-header",
        "negative-length", "bad-chunk", "negative-chunk", "unicode-digit-length", "two-lengths", "deep-json"])
@pytest.mark.parametrize("kind", ["hashserver", "dbserver"])
def test_malformed_http(request, kind, payload, expected):
    server = request.getfixturevalue(kind)
    assert raw(server.port, payload) == expected
    assert healthy(server.port)


def _random_request(rng, kind):
    methods = ["GET", "PUT", "HEAD", "POST", "DELETE", "OPTIONS", "BREW", "get", "G\x00T"]
    checksum = "".join(rng.choice("0123456789abcdefABCDEFxyz") for _ in range(rng.choice([0, 3, 63, 64, 64, 65])))
    path = rng.choice([
        "/" + checksum, "/has", "/has-now", "/buffer-length", "/promise/" + checksum, "/healthcheck",
        "/", "//", "/../../etc/passwd", "/%00", "/" + checksum + "?x=1", "/a/b/c", "*",
    ])
    if kind == "dbserver":
        rq = {"type": rng.choice(["transformation", "metadata", "irreproducible", "bucket_probe", "protocol",
                                  "rev_transformations", "buffer_info", "expression", "nope", 5, None]),
              "checksum": rng.choice([checksum, 5, None, [], {}]),
              rng.choice(["value", "result", "label", "bucket_kind", "path"]): rng.choice(
                  [checksum, {"schema_version": 1}, [], "x" * 300, -1, 1e308, True])}
        bodies = [json.dumps(rq).encode(), b"{", b"[]", b"null", rng.randbytes(50), b"\xff\xfe"]
    else:
        bodies = [json.dumps([checksum] * rng.randrange(3)).encode(), b"[", b"{}", rng.randbytes(rng.randrange(2000)),
                  b"", json.dumps([1, None, "a" * 64]).encode()]
    body = rng.choice(bodies)
    headers = [f"Content-Length: {len(body)}"]
    if rng.random() < 0.2:
        headers.append(rng.choice(["Content-Encoding: gzip", "Content-Encoding: zstd", "Content-Encoding: br",
                                   "Accept-Encoding: *", "Content-Type: application/json", "Connection: close",
                                   "Transfer-Encoding: chunked", "Authorization: Bearer x"]))
    if rng.random() < 0.05:
        headers[0] = f"Content-Length: {len(body) + rng.randrange(1, 5)}"  # lies: the server must time out or cope
    return (f"{rng.choice(methods)} {path} HTTP/1.1\r\nHost: fuzz\r\n" + "\r\n".join(headers) + "\r\n\r\n").encode(
        "latin-1") + body


@pytest.mark.parametrize("kind", ["hashserver", "dbserver"])
def test_fuzz_1000_requests(request, kind):
    server = request.getfixturevalue(kind)
    rng = random.Random(f"fuzz-{kind}")
    statuses = {}
    for _ in range(1000):
        status = raw(server.port, _random_request(rng, kind), timeout=5)
        statuses[status] = statuses.get(status, 0) + 1
    assert not [s for s in statuses if s is not None and s >= 500], statuses
    assert healthy(server.port)
