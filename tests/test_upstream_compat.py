"""Upstream Seamless against our servers, and our clients against upstream's servers.

These need upstream installed in a throwaway virtualenv outside the repo, made by
bench/upstream-venv.sh; tests/run.sh builds it and names it in SEAMLESS_UPSTREAM_VENV
(SEAMLESS_TEST_UPSTREAM=0 opts out). Without it they are skipped.
"""

import hashlib
import json
import os
import pathlib
import subprocess

import pytest

from seamless.store.clients import StoreSet

VENV = os.environ.get("SEAMLESS_UPSTREAM_VENV", "")
pytestmark = pytest.mark.skipif(not (VENV and os.path.exists(os.path.join(VENV, "bin", "hashserver"))),
                                reason="no upstream virtualenv (SEAMLESS_UPSTREAM_VENV; tests/run.sh builds one)")
CLIENT = pathlib.Path(__file__).parent / "compat" / "upstream_client.py"


def upstream(name):
    return os.path.join(VENV, "bin", name)


def run_upstream_client(hashserver_url, db_url):
    proc = subprocess.run([upstream("python"), str(CLIENT), "--hashserver", hashserver_url, "--database", db_url],
                          capture_output=True, text=True, timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and result["ok"], (result["errors"], proc.stderr[-2000:])
    return result


def test_upstream_client_against_our_servers(hashserver, dbserver):
    result = run_upstream_client(hashserver.url, dbserver.url)
    assert len(result["checks"]) >= 30


def test_our_client_against_upstream_servers(start_upstream):
    hs, db = start_upstream
    stores = StoreSet.from_clients({"buffer": [{"url": hs, "readonly": False}],
                                    "database": [{"url": db, "readonly": False}]})
    big = os.urandom(5 << 20)
    checksums = [stores.put_buffer(data) for data in (b"small", big)]
    assert [stores.get_buffer(cs) for cs in checksums] == [b"small", big]
    assert stores.buffer_read[0].has_many(checksums + ["00" * 32]) == [True, True, False]
    tf = hashlib.sha256(b"a transformation").hexdigest()
    stores.set_transformation(tf, checksums[0])
    assert stores.get_transformation(tf) == checksums[0]
    db = stores.db_read[0]
    db.check_protocol()
    assert db.get_rev_transformations(checksums[0]) == [tf]
    record = {"schema_version": 1, "tf_checksum": tf, "result_checksum": checksums[0]}
    assert db.set_metadata(tf, checksums[0], record) is True
    assert db.set_metadata(tf, checksums[0], {**record, "x": 1}) is False
    assert db.get_metadata(tf) == record


def test_shared_directory_and_database_file(tmp_path, start_service):
    """Upstream's servers and ours serve the same buffer directory and seamless.db."""
    bufferdir, dbfile = tmp_path / "shared", tmp_path / "seamless.db"
    bufferdir.mkdir()
    ours_hs = start_service("seamless-hashserver", bufferdir, "--writable")
    ours_db = start_service("seamless-db", dbfile, "--writable")
    run_upstream_client(ours_hs.url, ours_db.url)  # fills both through our servers
    ours_db.stop()
    ours_hs.stop()
    hs, db = start_upstream_pair(start_service, bufferdir, dbfile)
    run_upstream_client(hs, db)  # upstream's servers on the files ours wrote
    stores = StoreSet.from_clients({"buffer": [{"directory": str(bufferdir)}]})
    files = [f for _, _, fs in os.walk(bufferdir) for f in fs if len(f) == 64]
    assert files and all(stores.get_buffer(f) is not None for f in files)


def start_upstream_pair(start_service, bufferdir, dbfile):
    """Upstream's hashserver and database, started through the same status-file handshake."""
    ports = ("--port-range", 20000, 40000)
    hs = start_service(upstream("hashserver"), bufferdir, "--writable", *ports)
    db = start_service(upstream("seamless-database"), dbfile, "--writable", "--host", "127.0.0.1", *ports)
    return hs.url, db.url


@pytest.fixture
def start_upstream(tmp_path, start_service):
    (tmp_path / "up").mkdir()
    return start_upstream_pair(start_service, tmp_path / "up", tmp_path / "up.db")


# --- seamless-run: upstream's and ours reuse each other's results ------------------------


def run_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), PATH=os.path.join(VENV, "bin") + os.pathsep + env["PATH"], **extra)
    return env


def stop_launched(env):
    """Upstream's SEAMLESS_CACHE mode launches servers; stop them."""
    server_dir = pathlib.Path(env["HOME"]) / ".remote-http-launcher" / "server"
    for status in server_dir.glob("*.json") if server_dir.exists() else []:
        try:
            os.kill(int(json.loads(status.read_text())["pid"]), 15)
        except (OSError, ValueError, KeyError):
            pass


def both_runs(tmp_path, env, first, second):
    """Run the same counted command with `first` then `second`; return the count."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "data.txt").write_text("a\nb\nc\n")
    count = tmp_path / "count"
    # the counter goes first: upstream would take a redirection in the last command
    # (even to "$COUNT") for a result file
    command = ["--metavar", f"COUNT={count}", "-i", "data.txt", 'echo x >> "$COUNT"; head -n 2 data.txt']
    outputs = []
    for tool_path in (first, second):
        proc = subprocess.run([tool_path, *command], cwd=work, env=env, capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        outputs.append(proc.stdout)
    return outputs, len(count.read_text().split())


@pytest.mark.parametrize("order", ["upstream-first", "ours-first"])
def test_seamless_run_shares_servers_with_upstream(tmp_path, hashserver, dbserver, order):
    from conftest import tool

    env = run_env(tmp_path, SEAMLESS_REMOTE_CLIENTS=json.dumps({
        "buffer": [{"url": hashserver.url, "readonly": False, "remote_url": hashserver.url}],
        "database": [{"url": dbserver.url, "readonly": False, "remote_url": dbserver.url}]}))
    tools = [upstream("seamless-run"), tool("seamless-run")]
    if order == "ours-first":
        tools.reverse()
    outputs, executions = both_runs(tmp_path, env, *tools)
    assert outputs[0].strip() == outputs[1].strip() == b"a\nb"
    assert executions == 1  # the second tool reused the first one's result


@pytest.mark.parametrize("order", ["upstream-first", "ours-first"])
def test_seamless_run_shares_seamless_cache_with_upstream(tmp_path, order):
    from conftest import tool

    env = run_env(tmp_path, SEAMLESS_CACHE=str(tmp_path / "cache"))
    tools = [upstream("seamless-run"), tool("seamless-run")]
    if order == "ours-first":
        tools.reverse()
    try:
        outputs, executions = both_runs(tmp_path, env, *tools)
    finally:
        stop_launched(env)
    assert outputs[0].strip() == outputs[1].strip() == b"a\nb"
    assert executions == 1


PYTHON_SCRIPT = """
import json, sys
import seamless
import seamless.config
from seamless.transformer import delayed


@delayed
def add(a, b):
    import os  # the log is not an argument: it must not be part of the identity
    with open(os.environ["ADD_LOG"], "a") as f:
        f.write("x\\n")
    return a + b


import os
if os.environ.get("SEAMLESS_REMOTE_CLIENTS"):  # upstream's init() ignores that variable
    seamless.config.set_remote_clients(json.loads(os.environ["SEAMLESS_REMOTE_CLIENTS"]))
else:
    seamless.config.init()
tf = add(19, 23)
value = tf.run()
print(json.dumps([value, str(tf.transformation_checksum), str(tf.result_checksum)]))
seamless.close()
"""


def both_python_runs(tmp_path, env, order):
    import sys

    script = tmp_path / "add_script.py"
    script.write_text(PYTHON_SCRIPT)
    log = tmp_path / "log"
    pythons = [upstream("python"), sys.executable]
    if order == "ours-first":
        pythons.reverse()
    outputs = []
    for python in pythons:
        proc = subprocess.run([python, str(script)], cwd=tmp_path, env={**env, "ADD_LOG": str(log)},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return outputs, len(log.read_text().split())


@pytest.mark.parametrize("order", ["upstream-first", "ours-first"])
def test_python_transformations_share_servers_with_upstream(tmp_path, hashserver, dbserver, order):
    env = run_env(tmp_path, SEAMLESS_REMOTE_CLIENTS=json.dumps({
        "buffer": [{"url": hashserver.url, "readonly": False, "remote_url": hashserver.url}],
        "database": [{"url": dbserver.url, "readonly": False, "remote_url": dbserver.url}]}))
    outputs, executions = both_python_runs(tmp_path, env, order)
    assert outputs[0] == outputs[1] and outputs[0][0] == 42
    assert executions == 1  # the second one found the first one's result


@pytest.mark.parametrize("order", ["upstream-first", "ours-first"])
def test_python_transformations_share_seamless_cache_with_upstream(tmp_path, order):
    env = run_env(tmp_path, SEAMLESS_CACHE=str(tmp_path / "cache"))
    try:
        outputs, executions = both_python_runs(tmp_path, env, order)
    finally:
        stop_launched(env)
    assert outputs[0] == outputs[1]
    assert executions == 1
