"""A corrupt copy on a hashserver is a missing one, as for a local directory.

The server answers 400 "File corruption" (ours, and upstream's with a JSON body); our
client takes that for CorruptBuffer, so seamless-run and the Python API recompute, warn
on stderr and store the good bytes again, which repairs the server's copy.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import tool
from seamless.store import CorruptBuffer
from seamless.store.clients import StoreSet
from seamless.store.httpstore import HttpBufferStore

UPSTREAM = os.environ.get("SEAMLESS_UPSTREAM_VENV", "")


def cs_of(data):
    return hashlib.sha256(data).hexdigest()


def corrupt(path):
    os.chmod(path, 0o644)  # stored buffers are 0444
    path.write_bytes(b"not what was stored\n")


def stored(bufferdir, data):
    path = bufferdir / cs_of(data)[:2] / cs_of(data)
    assert path.exists(), path
    return path


def clients_env(tmp_path, hashserver, dbserver):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    env["SEAMLESS_REMOTE_CLIENTS"] = json.dumps({
        "buffer": [{"url": hashserver.url, "readonly": False}],
        "database": [{"url": dbserver.url, "readonly": False}]})
    return env


def test_seamless_run_recomputes_a_result_corrupt_on_the_server(tmp_path, hashserver, dbserver, bufferdir):
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.txt").write_text("a\nb\nc\n")
    env = clients_env(tmp_path, hashserver, dbserver)
    count = tmp_path / "count"
    argv = [tool("seamless-run"), "--metavar", f"COUNT={count}", 'tac in.txt; echo x >> "$COUNT"']

    def run():
        return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=120)

    assert run().stdout == "c\nb\na\n"
    path = stored(bufferdir, b"c\nb\na\n")
    corrupt(path)
    again = run()
    assert (again.returncode, again.stdout) == (0, "c\nb\na\n"), again.stderr
    assert len(count.read_text().split()) == 2  # recomputed, as a missing result is
    # as for a corrupt file in a local directory: a warning naming it, then "computing it again"
    warning = again.stderr.splitlines()[0]
    assert "warning: corrupt" in warning and hashserver.url in warning and "correct sha-256" in warning
    assert "computing it again" in again.stderr and "StoreError" not in again.stderr
    assert path.read_bytes() == b"c\nb\na\n"  # the re-PUT repaired the server's copy
    third = run()
    assert (third.returncode, third.stdout, third.stderr) == (0, "c\nb\na\n", "")
    assert len(count.read_text().split()) == 2


DIRECT = """
import json, os
import seamless, seamless.config
from seamless.transformer import direct

@direct
def shout(text):
    import os
    with open(os.environ["SHOUT_LOG"], "a") as f:
        f.write("ran\\n")
    return text.upper()

seamless.config.set_remote_clients(json.loads(os.environ["SEAMLESS_REMOTE_CLIENTS"]))
print(json.dumps(shout("quiet words\\n")))
seamless.close()
"""


def test_python_direct_recomputes_a_result_corrupt_on_the_server(tmp_path, hashserver, dbserver, bufferdir):
    script = tmp_path / "shout.py"
    script.write_text(textwrap.dedent(DIRECT))
    log = tmp_path / "shout.log"
    env = {**clients_env(tmp_path, hashserver, dbserver), "SHOUT_LOG": str(log)}

    def run():
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.splitlines()[-1]), proc.stderr.splitlines()

    assert run() == ("QUIET WORDS\n", [])
    result = json.dumps("QUIET WORDS\n").encode() + b"\n"  # a str result is stored as JSON text
    path = stored(bufferdir, result)
    corrupt(path)
    value, stderr = run()
    assert value == "QUIET WORDS\n" and len(log.read_text().split()) == 2
    assert len(stderr) == 1 and "corrupt" in stderr[0], stderr
    assert path.read_bytes() == result
    assert run() == ("QUIET WORDS\n", []) and len(log.read_text().split()) == 2


def test_every_client_method_takes_file_corruption_for_corrupt(hashserver, bufferdir, tmp_path):
    store = HttpBufferStore(hashserver.url, writable=True)
    for method in ("get", "get_to_file"):
        data = f"for {method}".encode()
        cs = store.put(data)
        corrupt(stored(bufferdir, data))
        args = (cs,) if method == "get" else (cs, tmp_path / "out")
        with pytest.raises(CorruptBuffer, match="correct sha-256 checksum .the server removed it"):
            getattr(store, method)(*args)
        assert not (tmp_path / "out").exists()
        assert getattr(store, method)(*args) in (None, False)  # the server removed its bad copy
        assert store.put(data) == cs and store.get(cs) == data  # and a PUT stores it again


def test_a_good_copy_elsewhere_on_the_server_is_served_instead(start_service, bufferdir, tmp_path):
    """A corrupt file in the main directory does not hide a good one in --extra-dirs."""
    extra = tmp_path / "extra"
    extra.mkdir()
    data = b"kept twice"
    (extra / cs_of(data)).write_bytes(data)
    (bufferdir / cs_of(data)[:2]).mkdir()
    (bufferdir / cs_of(data)[:2] / cs_of(data)).write_bytes(b"kept wrong")
    server = start_service("seamless-hashserver", bufferdir, "--writable", "--extra-dirs", extra)
    assert HttpBufferStore(server.url).get(cs_of(data)) == data
    assert not (bufferdir / cs_of(data)[:2] / cs_of(data)).exists()  # the bad one is gone


def test_seamless_download_of_a_corrupt_copy_is_a_clear_error(tmp_path, hashserver, dbserver, bufferdir):
    data = b"download me\n"
    cs = HttpBufferStore(hashserver.url, writable=True).put(data)
    corrupt(stored(bufferdir, data))
    env = clients_env(tmp_path, hashserver, dbserver)
    proc = subprocess.run([tool("seamless-download"), "-y", cs, "-o", "out.txt"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and not (tmp_path / "out.txt").exists()
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("seamless-download: error: "), lines  # one line
    assert "corrupt" in lines[0] and "seamless-upload" in lines[0]  # what, and how to repair it
    assert "Error:" not in proc.stderr, lines  # no exception class, no traceback


@pytest.mark.skipif(not (UPSTREAM and os.path.exists(os.path.join(UPSTREAM, "bin", "hashserver"))),
                    reason="no upstream virtualenv (SEAMLESS_UPSTREAM_VENV; tests/run.sh builds one)")
def test_upstream_hashserver_file_corruption_is_corrupt(start_service, tmp_path):
    """Upstream answers 400 {"message": "File corruption: ..."} for a corrupt file."""
    directory = tmp_path / "up"
    directory.mkdir()
    server = start_service(os.path.join(UPSTREAM, "bin", "hashserver"), directory, "--writable",
                           "--port-range", 20000, 40000)
    store = HttpBufferStore(server.url, writable=True)
    data = b"upstream keeps this"
    cs = store.put(data)
    corrupt(stored(directory, data))
    with pytest.raises(CorruptBuffer):
        store.get(cs)
    with pytest.raises(CorruptBuffer):
        store.get_to_file(cs, tmp_path / "out")
    assert not store.has_verified(cs)
    stores = StoreSet.from_clients({"buffer": [{"url": server.url, "readonly": False}]})
    assert stores.get_buffer(cs) is None  # as if missing: the caller recomputes
