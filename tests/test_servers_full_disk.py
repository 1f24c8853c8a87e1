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
    from seamless.store.sqlitedb import DBError, NoSpace, ResultDB

    fs = small_fs("size=2m")
    db = ResultDB(fs / "seamless.db", writable=True)
    db.set_transformation(cs_of(b"tf"), cs_of(b"result"))
    fill(fs)
    with pytest.raises(DBError) as info:
        for i in range(2000):
            db.set_transformation(cs_of(b"tf %d" % i), cs_of(b"result %d" % i))
    assert isinstance(info.value, NoSpace) and "no space left" in info.value.message
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


def fill_leaving(directory, kib):
    """Use up the filesystem's space but about `kib` KiB (inodes are left)."""
    st = os.statvfs(directory)
    with open(directory / "filler", "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - kib * 1024))


# how full: no inode left; a few KiB (SQLite says "disk I/O error" for its -shm file); none
FULLNESS = ["inodes", "8k", "24k", "0k"]


def make_full(small_fs, how):
    fs = small_fs("size=1m,nr_inodes=64" if how == "inodes" else "size=1m")
    if how == "inodes":
        fill(fs)
    else:
        fill_leaving(fs, int(how[:-1]))
    return fs


@pytest.mark.parametrize("how", FULLNESS)
def test_creating_a_database_on_a_full_disk_says_so(small_fs, how):
    """Issue 10 review: "cannot open database ...: disk I/O error" when the disk was full."""
    from seamless.store.sqlitedb import NoSpace, ResultDB

    fs = make_full(small_fs, how)
    with pytest.raises(NoSpace) as info:
        ResultDB(fs / "seamless.db", writable=True)
    assert isinstance(info.value, NoSpace) and "no space left" in info.value.message
    assert str(fs / "seamless.db") in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize("how", ["inodes", "8k"])
def test_seamless_db_on_a_full_disk_fails_to_start_saying_so(small_fs, tmp_path, how):
    fs = make_full(small_fs, how)
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"purpose": "test"}))
    proc = subprocess.run(["seamless-db", str(fs / "seamless.db"), "--writable", "--port", "0",
                           "--status-file", str(status)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("seamless-db: error: no space left on the disk of database"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert json.loads(status.read_text())["status"] == "failed"


def test_seamless_run_with_its_cache_on_a_full_disk_says_so(small_fs, tmp_path):
    fs = small_fs("size=1m")
    buffers = fs / "cache" / "__TOPLEVEL__"
    buffers.mkdir(parents=True)
    (buffers / ".HASHSERVER_PREFIX").write_text("1\n")
    fill_leaving(fs, 8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env["SEAMLESS_CACHE"] = str(fs / "cache")
    proc = subprocess.run(["seamless-run", "echo", "hi"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("seamless-run: error: no space left on the disk of database"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_seamless_db_answers_507_when_a_connection_cannot_open_on_a_full_disk(small_fs, start_service):
    """Each server thread opens its own connection: one opened once the disk is full is 507
    (or works), never a 500 or a 400."""
    fs = small_fs("size=2m")
    server = start_service("seamless-db", fs / "seamless.db", "--writable")
    assert _put_transformation(server, 0)[0] == 200
    fill(fs)
    for i in range(1, 50):  # new connections: new threads
        status, body = _put_transformation(server, i)
        assert status in (200, 507), (status, body)
    rq = {"type": "transformation", "checksum": cs_of(b"tf 0")}
    assert request(server, "GET", "/", json.dumps(rq).encode()) == (200, cs_of(b"result 0").encode())
