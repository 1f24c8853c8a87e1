"""Issue 10: a full disk is 507 with a clear body, never a 500 (hashserver and seamless-db).

The disk is really full: a small tmpfs mounted for the test (so these tests need root;
they are skipped with the reason otherwise).
"""

import errno
import hashlib
import http.client
import json
import os
import subprocess

import pytest


def cs_of(data):
    return hashlib.sha256(data).hexdigest()


def request(service, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.fixture
def small_fs(tmp_path):
    """mount(options) -> a fresh tmpfs directory of that size / inode count."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk for real needs a small tmpfs, and mounting one needs root")
    mounted = []

    def mount(options):
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(directory):
    """Use up the filesystem's space and inodes; returns the filler files."""
    fillers = []
    try:
        with open(directory / "filler", "wb") as f:
            fillers.append(directory / "filler")
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    try:
        for i in range(100000):
            (directory / f"inode-{i}").touch()
            fillers.append(directory / f"inode-{i}")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    return fillers


def test_hashserver_full_disk_creating_a_prefix_directory_is_507(small_fs, start_service):
    fs = small_fs("size=1m,nr_inodes=64")
    buffers = fs / "buffers"
    buffers.mkdir()
    server = start_service("seamless-hashserver", buffers, "--writable")
    fillers = fill(fs)
    data = b"no room for my directory"
    status, body = request(server, "PUT", "/" + cs_of(data), data)
    assert status == 507, body
    assert b"no space left" in body
    assert os.listdir(buffers) == [".HASHSERVER_PREFIX"]
    for path in fillers:
        path.unlink()
    assert request(server, "PUT", "/" + cs_of(data), data)[0] == 200
    assert request(server, "GET", "/" + cs_of(data))[1] == data


def test_hashserver_full_disk_writing_a_buffer_is_507(small_fs, start_service):
    fs = small_fs("size=1m")
    server = start_service("seamless-hashserver", fs, "--writable")
    data = os.urandom(2 << 20)
    status, body = request(server, "PUT", "/" + cs_of(data), data)
    assert status == 507 and b"no space left" in body
    assert [f for _, _, files in os.walk(fs) for f in files] == [".HASHSERVER_PREFIX"]  # nothing partial
    small = b"this one fits"
    assert request(server, "PUT", "/" + cs_of(small), small)[0] == 200


def _put_transformation(server, i):
    rq = {"type": "transformation", "checksum": cs_of(b"tf %d" % i), "value": cs_of(b"result %d" % i)}
    return request(server, "PUT", "/", json.dumps(rq).encode())


def test_database_full_disk_is_507(small_fs, start_service):
    fs = small_fs("size=2m")
    server = start_service("seamless-db", fs / "seamless.db", "--writable")
    assert _put_transformation(server, 0)[0] == 200
    fillers = fill(fs)
    for i in range(1, 2000):
        status, body = _put_transformation(server, i)
        if status != 200:
            break
    assert status == 507, body
    assert b"no space left" in body
    for path in fillers:
        path.unlink()
    assert _put_transformation(server, i)[0] == 200
    rq = {"type": "transformation", "checksum": cs_of(b"tf 0")}
    assert request(server, "GET", "/", json.dumps(rq).encode()) == (200, cs_of(b"result 0").encode())


def test_direct_database_full_disk_is_a_clear_error(small_fs):
    from seamless.store.sqlitedb import DBError, ResultDB

    fs = small_fs("size=2m")
    db = ResultDB(fs / "seamless.db", writable=True)
    db.set_transformation(cs_of(b"tf"), cs_of(b"result"))
    fill(fs)
    with pytest.raises(DBError) as info:
        for i in range(2000):
            db.set_transformation(cs_of(b"tf %d" % i), cs_of(b"result %d" % i))
    assert info.value.status == 507 and "no space left" in info.value.message
    assert db.get_transformation(cs_of(b"tf")) == cs_of(b"result")


def test_hashserver_on_a_read_only_filesystem_is_500(small_fs, start_service):
    """Issue 10 review: a buffer directory the server cannot write is its own fault (500 with
    the reason), not the client's (it answered 400)."""
    fs = small_fs("size=1m")
    server = start_service("seamless-hashserver", fs, "--writable")
    subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
    data = b"read-only here"
    status, body = request(server, "PUT", "/" + cs_of(data), data)
    assert status == 500 and b"Read-only file system" in body, body
    subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
    assert request(server, "PUT", "/" + cs_of(data), data)[0] == 200
