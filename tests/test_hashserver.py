"""seamless-hashserver: the upstream protocol, plus HEAD, tokens, handshake, idle exit."""

import gzip
import hashlib
import http.client
import json
import os
import socket
import threading
import time

import pytest

from seamless.store import ChecksumMismatch, CorruptBuffer, ReadOnlyStore, StoreError
from seamless.store.httpstore import HttpBufferStore


def cs_of(data):
    return hashlib.sha256(data).hexdigest()


def request(service, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_healthcheck(hashserver):
    status, headers, body = request(hashserver, "GET", "/healthcheck")
    assert (status, body) == (200, b"OK")
    assert headers["content-length"] == "2"


def test_put_get_status_codes(hashserver, bufferdir):
    data = b"hello"
    cs = cs_of(data)
    assert request(hashserver, "GET", "/" + cs)[0] == 404
    assert request(hashserver, "PUT", "/" + cs, data)[:3:2] == (200, b"OK")
    assert request(hashserver, "PUT", "/" + cs, data)[0] == 201
    status, headers, body = request(hashserver, "GET", "/" + cs)
    assert (status, body) == (200, data)
    assert headers["content-type"] == "application/octet-stream"
    assert (bufferdir / cs[:2] / cs).read_bytes() == data
    # uppercase checksums are normalized
    assert request(hashserver, "GET", "/" + cs.upper())[2] == data


def test_head(hashserver):
    data = b"head me"
    cs = cs_of(data)
    assert request(hashserver, "HEAD", "/" + cs)[0] == 404
    request(hashserver, "PUT", "/" + cs, data)
    status, headers, body = request(hashserver, "HEAD", "/" + cs)
    assert (status, body, headers["content-length"]) == (200, b"", str(len(data)))


def test_wrong_checksum_stores_nothing(hashserver, bufferdir):
    status, _, body = request(hashserver, "PUT", "/" + "ab" * 32, b"not matching")
    assert (status, body) == (400, b"Incorrect checksum")
    assert [f for _, _, fs in os.walk(bufferdir) for f in fs] == [".HASHSERVER_PREFIX"]


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_wrong_bytes_for_a_stored_checksum_are_400_too(hashserver, bufferdir, encoding):
    """Issue 10 review: wrong bytes answered 201 when the checksum was already stored."""
    data = b"stored first " * 100
    cs = cs_of(data)
    assert request(hashserver, "PUT", "/" + cs, data)[0] == 200
    wrong = b"something else entirely"
    headers = {"Content-Encoding": encoding} if encoding else {}
    for body in (wrong, wrong * 5000):  # small, and larger than one read
        sent = gzip.compress(body) if encoding else body
        status, _, answer = request(hashserver, "PUT", "/" + cs, sent, headers)
        assert (status, answer) == (400, b"Incorrect checksum")
    if encoding:
        status, _, answer = request(hashserver, "PUT", "/" + cs, b"\x1f\x8b not gzip", headers)
        assert status == 400 and b"gzip" in answer
    right = gzip.compress(data) if encoding else data
    assert request(hashserver, "PUT", "/" + cs, right, headers)[0] == 201  # the right bytes: stored already
    assert request(hashserver, "GET", "/" + cs)[2] == data
    store = HttpBufferStore(hashserver.url, writable=True)
    with pytest.raises(ChecksumMismatch):
        store._put(cs, wrong)  # what our client says

@pytest.mark.parametrize("path", ["/abcd", "/" + "z" * 64, "/" + "a" * 65])
def test_invalid_checksum_is_400(hashserver, path):
    assert request(hashserver, "GET", path)[0] == 400
    assert request(hashserver, "PUT", path, b"x")[0] == 400


def test_methods_not_allowed(hashserver):
    for method in ("POST", "DELETE", "PATCH", "FOO"):
        assert request(hashserver, method, "/" + "a" * 64)[0] == 405


@pytest.mark.parametrize("content_type", [None, "application/json"])
def test_has_and_buffer_length(hashserver, content_type):
    data = b"present"
    request(hashserver, "PUT", "/" + cs_of(data), data)
    absent = "cd" * 32
    body = json.dumps([cs_of(data), absent]).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/has", "/has-now"):
        status, headers_, answer = request(hashserver, "GET", path, body, headers)
        assert status == 200 and json.loads(answer) == [True, False]
    status, _, answer = request(hashserver, "GET", "/buffer-length", body, headers)
    assert json.loads(answer) == [len(data), 0]
    assert json.loads(request(hashserver, "GET", "/has", b"[]")[2]) == []


@pytest.mark.parametrize("body", [b"", b"not json", b'{"a": 1}', b'["abc"]', b"[1, 2]"])
def test_has_malformed(hashserver, body):
    assert request(hashserver, "GET", "/has", body)[0] == 400


def test_promise_makes_has_true_and_get_wait(hashserver):
    data = b"promised buffer"
    cs = cs_of(data)
    status, _, body = request(hashserver, "PUT", "/promise/" + cs)
    assert status == 202
    assert json.loads(body) == {"checksum": cs, "expires_in": 600.0}
    has = lambda path: json.loads(request(hashserver, "GET", path, json.dumps([cs]).encode())[2])[0]  # noqa: E731
    assert has("/has") is True
    assert has("/has-now") is False
    assert json.loads(request(hashserver, "GET", "/buffer-length", json.dumps([cs]).encode())[2]) == [True]
    got = {}
    reader = threading.Thread(target=lambda: got.update(r=request(hashserver, "GET", "/" + cs)))
    reader.start()
    time.sleep(0.5)
    assert reader.is_alive()  # waiting for the promised upload
    request(hashserver, "PUT", "/" + cs, data)
    reader.join(10)
    assert got["r"][0] == 200 and got["r"][2] == data


def test_gzip_put_and_get(hashserver, bufferdir):
    data = b"zipped " * 5000
    cs = cs_of(data)
    status, _, _ = request(hashserver, "PUT", "/" + cs, gzip.compress(data), {"Content-Encoding": "gzip"})
    assert status == 200
    assert (bufferdir / cs[:2] / (cs + ".gz")).exists()
    status, headers, body = request(hashserver, "GET", "/" + cs, headers={"Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip" and gzip.decompress(body) == data
    # a client that does not accept gzip gets the plain bytes
    status, headers, body = request(hashserver, "GET", "/" + cs)
    assert "content-encoding" not in headers and body == data
    assert json.loads(request(hashserver, "GET", "/buffer-length", json.dumps([cs]).encode())[2]) == [len(data)]


def test_chunked_put(hashserver):
    data = os.urandom(300000)
    cs = cs_of(data)
    conn = http.client.HTTPConnection("127.0.0.1", hashserver.port)
    conn.request("PUT", "/" + cs, body=iter([data[:1000], data[1000:]]), encode_chunked=True)
    assert conn.getresponse().status == 200
    assert request(hashserver, "GET", "/" + cs)[2] == data


def test_corrupt_file_is_never_served(hashserver, bufferdir):
    data = b"A" * 100000
    cs = cs_of(data)
    request(hashserver, "PUT", "/" + cs, data)
    assert request(hashserver, "GET", "/" + cs)[2] == data  # stamped as verified
    path = bufferdir / cs[:2] / cs
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"B")  # silent corruption, same size
    status, _, body = request(hashserver, "GET", "/" + cs)
    assert status == 400 and b"corruption" in body.lower()
    # the corrupt file was removed (writable server), so it can be uploaded again
    assert request(hashserver, "GET", "/" + cs)[0] == 404
    assert request(hashserver, "PUT", "/" + cs, data)[0] == 200
    assert request(hashserver, "GET", "/" + cs)[2] == data


def test_corruption_after_restart_is_detected(start_service, bufferdir):
    """Stamps live in memory: a new server re-hashes each file once before serving it."""
    data = b"C" * 5000
    cs = cs_of(data)
    (bufferdir / cs[:2]).mkdir()
    (bufferdir / cs[:2] / cs).write_bytes(b"D" * 5000)
    server = start_service("seamless-hashserver", bufferdir)
    assert request(server, "GET", "/" + cs)[0] == 400


def test_readonly_server(start_service, bufferdir):
    data = b"ro"
    (bufferdir / cs_of(data)).write_bytes(data)  # a flat file, found as well
    server = start_service("seamless-hashserver", bufferdir)
    assert request(server, "GET", "/" + cs_of(data))[2] == data
    assert request(server, "PUT", "/" + cs_of(b"x"), b"x")[0] == 405
    assert request(server, "PUT", "/promise/" + cs_of(b"x"))[0] == 405


def test_extra_dirs(start_service, tmp_path, bufferdir):
    extra1, extra2 = tmp_path / "e1", tmp_path / "e2"
    extra1.mkdir()
    extra2.mkdir()
    a, b = b"in extra one", b"in extra two"
    (extra1 / cs_of(a)).write_bytes(a)  # flat
    (extra2 / ".HASHSERVER_PREFIX").write_text("1\n")
    (extra2 / cs_of(b)[:2]).mkdir()
    (extra2 / cs_of(b)[:2] / cs_of(b)).write_bytes(b)  # prefix: upstream's /has misses these
    server = start_service("seamless-hashserver", bufferdir, "--extra-dirs", f"{extra1}:{extra2}")
    for data in (a, b):
        assert request(server, "GET", "/" + cs_of(data))[2] == data
    body = json.dumps([cs_of(a), cs_of(b)]).encode()
    assert json.loads(request(server, "GET", "/has", body)[2]) == [True, True]


def test_flat_layout(start_service, bufferdir):
    server = start_service("seamless-hashserver", bufferdir, "--writable", "--layout", "flat")
    request(server, "PUT", "/" + cs_of(b"f"), b"f")
    assert (bufferdir / cs_of(b"f")).exists()


def test_token(start_service, bufferdir, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    server = start_service("seamless-hashserver", bufferdir, "--writable", "--token-file", token_file)
    path = "/" + cs_of(b"x")
    assert request(server, "GET", path)[0] == 401
    assert request(server, "GET", path, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert request(server, "GET", path, headers={"Authorization": "Bearer s3cret"})[0] == 404
    assert request(server, "GET", "/healthcheck")[0] == 200  # needs no token
    with pytest.raises(StoreError, match="unauthorized"):
        HttpBufferStore(server.url, writable=True).put(b"x")
    store = HttpBufferStore(server.url, writable=True, token_file=str(token_file))
    cs = store.put(b"with token")
    assert store.get(cs) == b"with token"


def test_status_file_handshake(start_service, bufferdir):
    server = start_service("seamless-hashserver", bufferdir)
    status = json.loads(open(server.status_file).read())
    assert status["status"] == "running" and status["purpose"] == "test"
    assert status["port"] == server.port
    assert oct(os.stat(server.status_file).st_mode & 0o777) == "0o600"


def test_status_file_failed(tmp_path):
    import subprocess

    from conftest import tool

    status = tmp_path / "status.json"
    status.write_text("{}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        proc = subprocess.run([tool("seamless-hashserver"), str(tmp_path), "--port", str(busy),
                               "--status-file", str(status)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert json.loads(status.read_text())["status"] == "failed"
    assert proc.stderr.count("\n") == 1 and "error:" in proc.stderr


def test_port_range(start_service, bufferdir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
    server = start_service("seamless-hashserver", bufferdir, "--port-range", base, base)
    assert server.port == base


def test_idle_timeout(tmp_path, bufferdir):
    import subprocess

    from conftest import tool

    proc = subprocess.Popen([tool("seamless-hashserver"), str(bufferdir), "--port", "0", "--timeout", "1.5"],
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    port = int(url.rsplit(":", 1)[1])
    start = time.monotonic()
    for _ in range(3):  # requests keep it alive
        time.sleep(0.7)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", "/healthcheck")
        assert conn.getresponse().status == 200
        conn.close()
    assert proc.poll() is None
    assert proc.wait(10) == 0
    assert time.monotonic() - start >= 2.1 + 1.4


def test_http_store_client(hashserver):
    store = HttpBufferStore(hashserver.url, writable=True)
    cs = store.put(b"client data")
    assert store.has(cs) and not store.has("00" * 32)
    assert store.has_many([cs, "00" * 32]) == [True, False]
    assert store.get(cs) == b"client data"
    assert store.get("00" * 32) is None
    assert store.length(cs) == len(b"client data")
    with pytest.raises(ChecksumMismatch):
        store.put(b"x", "00" * 32)
    with pytest.raises(ReadOnlyStore):
        HttpBufferStore(hashserver.url).put(b"x")


def test_http_store_large_streaming(hashserver, tmp_path):
    store = HttpBufferStore(hashserver.url, writable=True)
    src = tmp_path / "big"
    data = os.urandom(20 << 20)
    src.write_bytes(data)
    cs = store.put_file(src)
    dest = tmp_path / "back"
    assert store.get_to_file(cs, dest)
    assert dest.read_bytes() == data
    assert oct(dest.stat().st_mode & 0o777) == "0o644"  # a user's file, not a private temporary one
    assert not store.get_to_file("00" * 32, tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_http_store_detects_bad_bytes(tmp_path):
    """A server that sends wrong bytes is caught by the client's own hash."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Liar(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"bad")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(CorruptBuffer):
            HttpBufferStore(f"http://127.0.0.1:{server.server_address[1]}").get("ab" * 32)
    finally:
        server.shutdown()


def test_client_retries_connection_errors_only(hashserver):
    store = HttpBufferStore(hashserver.url, writable=True)
    # a 4xx is answered at once, not retried
    start = time.monotonic()
    with pytest.raises(ChecksumMismatch):
        store.put(b"y", "00" * 32)
    assert time.monotonic() - start < 0.5
    # a dead server is retried, then reported
    from seamless.store.httpclient import ServerUnreachable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ServerUnreachable):
        HttpBufferStore(f"http://127.0.0.1:{dead}").get("ab" * 32)
    assert time.monotonic() - start >= 0.1 + 0.2 + 0.4


def test_client_survives_server_closing_keepalive(start_service, bufferdir):
    server = start_service("seamless-hashserver", bufferdir, "--writable")
    store = HttpBufferStore(server.url, writable=True)
    cs = store.put(b"before restart")
    server.stop()
    again = start_service("seamless-hashserver", bufferdir, "--writable", "--port", server.port)
    assert again.port == server.port
    assert store.get(cs) == b"before restart"  # the stale connection is replaced transparently


def test_gzip_bomb_does_not_blow_up_the_server(hashserver):
    bomb = gzip.compress(bytes(1 << 30), compresslevel=9)  # 1 GiB of zeros in ~1 MB
    before = _peak_rss_kib(hashserver.proc.pid)
    status, _, _ = request(hashserver, "PUT", "/" + "ab" * 32, bomb, {"Content-Encoding": "gzip"})
    assert status == 400
    assert _peak_rss_kib(hashserver.proc.pid) - before < 100 * 1024


def _peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_concatenated_gzip_upload_is_refused(hashserver, bufferdir):
    data = b"first member"
    payload = gzip.compress(data) + gzip.compress(b"EVIL EXTRA MEMBER")
    status, _, body = request(hashserver, "PUT", "/" + cs_of(data), payload, {"Content-Encoding": "gzip"})
    assert status == 400 and b"after the end" in body
    assert request(hashserver, "GET", "/" + cs_of(data))[0] == 404


def test_head_matches_get_for_compressed_buffers(hashserver):
    data = b"x" * 1000
    cs = cs_of(data)
    request(hashserver, "PUT", "/" + cs, gzip.compress(data), {"Content-Encoding": "gzip"})
    for accept in ({}, {"Accept-Encoding": "gzip"}, {"Accept-Encoding": "identity"}):
        _, head_headers, head_body = request(hashserver, "HEAD", "/" + cs, headers=accept)
        _, get_headers, get_body = request(hashserver, "GET", "/" + cs, headers=accept)
        assert head_body == b""
        assert head_headers["content-length"] == get_headers["content-length"] == str(len(get_body))
        assert head_headers.get("content-encoding") == get_headers.get("content-encoding")


def test_corrupt_gz_is_removed_and_zst_sibling_served(hashserver, bufferdir):
    from seamless.store.compression import zstd_module

    data = b"two forms " * 100
    cs = cs_of(data)
    (bufferdir / cs[:2]).mkdir()
    (bufferdir / cs[:2] / (cs + ".gz")).write_bytes(gzip.compress(b"something else"))
    (bufferdir / cs[:2] / (cs + ".zst")).write_bytes(zstd_module().compress(data))
    assert request(hashserver, "GET", "/" + cs)[2] == data  # the good form, at once
    assert not (bufferdir / cs[:2] / (cs + ".gz")).exists()
    assert (bufferdir / cs[:2] / (cs + ".zst")).exists()
    assert request(hashserver, "GET", "/" + cs)[2] == data


def test_zstd_put_and_get(hashserver, bufferdir):
    from seamless.store.compression import zstd_module

    zstd = zstd_module()
    data = b"zstd upload " * 1000
    cs = cs_of(data)
    assert request(hashserver, "PUT", "/" + cs, zstd.compress(data), {"Content-Encoding": "zstd"})[0] == 200
    assert (bufferdir / cs[:2] / (cs + ".zst")).exists()
    _, headers, body = request(hashserver, "GET", "/" + cs, headers={"Accept-Encoding": "zstd"})
    assert headers["content-encoding"] == "zstd" and zstd.decompress(body) == data
    assert request(hashserver, "GET", "/" + cs)[2] == data


def test_buffer_length_of_a_corrupt_gz_is_400(hashserver, bufferdir):
    cs = cs_of(b"whatever")
    (bufferdir / cs[:2]).mkdir()
    (bufferdir / cs[:2] / (cs + ".gz")).write_bytes(b"\x1f\x8b not really gzip")
    status, _, body = request(hashserver, "GET", "/buffer-length", json.dumps([cs]).encode())
    assert status == 400 and cs.encode() in body


def test_expect_100_continue(hashserver):
    data = os.urandom(2 << 20)
    cs = cs_of(data)
    with socket.create_connection(("127.0.0.1", hashserver.port), timeout=10) as sock:
        sock.sendall(f"PUT /{cs} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        sock.settimeout(0.5)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.settimeout(10)
        sock.sendall(data)
        assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")
    # already stored: the final answer comes at once, without asking for the body
    with socket.create_connection(("127.0.0.1", hashserver.port), timeout=10) as sock:
        sock.sendall(f"PUT /{cs} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 201 Created")


def test_unauthorized_large_upload_reports_unauthorized(start_service, bufferdir, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret")
    server = start_service("seamless-hashserver", bufferdir, "--writable", "--token-file", token_file)
    with pytest.raises(StoreError, match="unauthorized"):
        HttpBufferStore(server.url, writable=True).put(os.urandom(8 << 20))


@pytest.mark.parametrize("args,code,message", [
    (["--host", "nosuchhost.invalid"], 1, "cannot listen on host"),
    (["--port", "70000"], 2, "not in 0-65535"),
    (["--timeout", "-1"], 2, "positive number of seconds"),
])
def test_bad_server_options_fail_fast(bufferdir, args, code, message):
    import subprocess

    from conftest import tool

    start = time.monotonic()
    proc = subprocess.run([tool("seamless-hashserver"), str(bufferdir), *args], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == code and message in proc.stderr
    assert time.monotonic() - start < 10


def _corrupt_in_place(path, data):
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(data)  # silent corruption, same size


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_put_of_good_bytes_replaces_a_corrupt_file(hashserver, bufferdir, encoding):
    """Issue 10: a PUT of the right bytes over a corrupt stored file answered 201 and kept it."""
    data = b"the right bytes " * 500
    cs = cs_of(data)
    name = cs + (".gz" if encoding else "")
    body = gzip.compress(data) if encoding else data
    headers = {"Content-Encoding": encoding} if encoding else {}
    path = bufferdir / cs[:2] / name
    path.parent.mkdir()
    path.write_bytes(gzip.compress(b"X" * len(data)) if encoding else b"X" * len(data))
    assert request(hashserver, "PUT", "/" + cs, body, headers)[0] == 200
    assert path.read_bytes() == body
    assert request(hashserver, "GET", "/" + cs)[2] == data  # verified and stamped
    _corrupt_in_place(path, b"Y" * 12)  # corrupt again, after the server vouched for it
    assert request(hashserver, "PUT", "/" + cs, body, headers)[0] == 200
    assert path.read_bytes() == body
    assert request(hashserver, "PUT", "/" + cs, body, headers)[0] == 201  # a good copy is kept
    assert request(hashserver, "GET", "/" + cs)[2] == data


def _start_slow_upload(server, cs, total=1000):
    """A client that sends the headers and a few bytes of a PUT, then stalls."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.sendall(f"PUT /{cs} HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n".encode() + b"z" * 10)
    deadline = time.monotonic() + 20
    while not json.loads(request(server, "GET", "/has-now", json.dumps([cs]).encode())[2])[0]:
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.05)
    return sock


def test_get_waits_a_bounded_time_for_a_slow_upload(start_service, bufferdir):
    """Issue 10: a GET waited without limit while a slow client uploaded the same checksum."""
    server = start_service("seamless-hashserver", bufferdir, "--writable", "--lock-timeout", "1")
    data = b"d" * 1000
    cs = cs_of(data)
    sock = _start_slow_upload(server, cs)
    try:
        start = time.monotonic()
        assert request(server, "GET", "/" + cs)[0] == 404  # as if absent, after the bound
        length = json.loads(request(server, "GET", "/buffer-length", json.dumps([cs]).encode())[2])
        assert length == [0]
        # another client uploading the same buffer is not held up by the stalled one either
        assert request(server, "PUT", "/" + cs, data)[0] == 200
        assert time.monotonic() - start < 25  # generous: three bounded waits of 1 s
        assert request(server, "GET", "/" + cs)[2] == data  # what is verified is served at once
    finally:
        sock.close()
    assert request(server, "GET", "/" + cs)[2] == data  # the stalled upload's failure removes nothing


def test_removed_prefix_directory_is_recreated_by_the_server(hashserver, bufferdir):
    """Issue 10: after `rm -rf BUFDIR/ab`, every PUT to ab/ failed until a restart."""
    import shutil

    first = b"first in this prefix"
    cs = cs_of(first)
    assert request(hashserver, "PUT", "/" + cs, first)[0] == 200
    shutil.rmtree(bufferdir / cs[:2])
    i = 0
    while cs_of(b"mate %d" % i)[:2] != cs[:2]:
        i += 1
    mate = b"mate %d" % i
    assert request(hashserver, "PUT", "/" + cs_of(mate), mate)[0] == 200
    assert request(hashserver, "GET", "/" + cs_of(mate))[2] == mate
    assert request(hashserver, "PUT", "/" + cs, first)[0] == 200  # and the removed one again
    assert request(hashserver, "GET", "/" + cs)[2] == first


def test_http_store_has_verified(hashserver, bufferdir):
    """What seamless-upload --move asks before deleting the original, over HTTP."""
    store = HttpBufferStore(hashserver.url, writable=True)
    data = b"check me " * 1000
    cs = store.put(data)
    assert store.has_verified(cs)
    assert not store.has_verified(cs_of(b"absent"))
    _corrupt_in_place(bufferdir / cs[:2] / cs, b"Z")
    assert not store.has_verified(cs)
    gz = cs_of(b"gz form")
    store.client.call("PUT", "/" + gz, gzip.compress(b"gz form"), {"Content-Encoding": "gzip"})
    assert store.has_verified(gz)


def test_a_removed_buffer_directory_is_a_server_fault(hashserver, bufferdir):
    """Issue 10 review: with its directory gone, the server answered 400 (a client error).
    It answers 500 saying what is wrong; once the directory is back, uploads work again
    (without a restart) and the prefix sentinel is written again."""
    import shutil

    shutil.rmtree(bufferdir)
    data = b"nowhere to go"
    status, _, body = request(hashserver, "PUT", "/" + cs_of(data), data)
    assert status == 500, body
    assert str(bufferdir).encode() in body and b"does not exist" in body
    assert request(hashserver, "GET", "/" + cs_of(data))[0] == 404
    assert request(hashserver, "GET", "/healthcheck")[0] == 200
    bufferdir.mkdir()
    assert request(hashserver, "PUT", "/" + cs_of(data), data)[0] == 200
    assert request(hashserver, "GET", "/" + cs_of(data))[2] == data
    assert (bufferdir / ".HASHSERVER_PREFIX").read_text() == "1\n"


def test_an_unwritable_buffer_directory_is_a_server_fault(hashserver, bufferdir):
    """Permissions are the server's problem too: 500, not 400."""
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    os.chmod(bufferdir, 0o555)
    try:
        data = b"not allowed"
        status, _, body = request(hashserver, "PUT", "/" + cs_of(data), data)
        assert status == 500 and b"ermission denied" in body, body
    finally:
        os.chmod(bufferdir, 0o755)
