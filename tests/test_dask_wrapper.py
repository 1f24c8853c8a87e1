"""seamless-dask-wrapper on distributed::LocalCluster, end to end: a real wrapper process, real
workers, a real client; the status-file lifecycle, /health, idle timeout, signals, failures."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from daskwrapper import start, status_file, wait_exit, wait_status

pytest.importorskip("distributed")

LOCAL = "distributed::LocalCluster"


@pytest.fixture
def cluster(tmp_path):
    """A running LocalCluster wrapper with 2 workers; stopped at the end."""
    path = status_file(tmp_path, {"cores": 1, "maximum_jobs": 2, "dask-resources": {"S": 1}})
    process = start(path, "--port-range", "40000", "40999", "--timeout", "60")
    status = wait_status(path, process)
    yield path, process, status
    if process.poll() is None:
        process.terminate()
        wait_exit(process, 60)


def test_running_with_ports_health_and_work(cluster):
    from distributed import Client

    path, process, status = cluster
    assert status["status"] == "running", status
    assert 40000 <= status["port"] <= 40999 and 40000 <= status["dashboard_port"] <= 40999
    assert status["port"] != status["dashboard_port"]
    assert status["scheduler_address"] == f"tcp://127.0.0.1:{status['port']}"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    with urllib.request.urlopen(f"http://127.0.0.1:{status['dashboard_port']}/health", timeout=10) as r:
        assert r.status == 200 and r.read() == b"ok"
    with Client(status["scheduler_address"], timeout=30) as client:
        assert client.submit(lambda x: x * 2, 21).result(timeout=60) == 42
        # the bokeh dashboard, attached just after "running" (importing it takes 0.5 s)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{status['dashboard_port']}/status", timeout=10) as r:
                    assert r.status == 200 and b"Dask" in r.read()
                    break
            except urllib.error.HTTPError:
                assert time.monotonic() < deadline, "no dashboard at /status"
                time.sleep(0.2)
        workers = client.scheduler_info()["workers"].values()
        assert len(workers) == 2 and all(w["nthreads"] == 6 for w in workers)  # 1 core x throttle 3, twice
        assert all(w["resources"] == {"S": 1} for w in workers)
        env = client.run(lambda: os.environ.get("SEAMLESS_WORKER_TRANSFORMATION_THROTTLE"))
        assert set(env.values()) == {"3"}


def test_sigterm_closes_and_removes_the_status_file(cluster):
    path, process, status = cluster
    process.send_signal(signal.SIGTERM)
    assert wait_exit(process, 60) == 0
    assert not path.exists()


def test_idle_timeout_after_the_last_client(tmp_path):
    from distributed import Client

    path = status_file(tmp_path, {"cores": 1})
    process = start(path, "--timeout", "3")
    status = wait_status(path, process)
    with Client(status["scheduler_address"], timeout=30) as client:
        time.sleep(4)  # a connected client keeps it alive
        assert process.poll() is None
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3
    closed = time.monotonic()
    assert wait_exit(process, 60) == 0
    assert time.monotonic() - closed >= 2.5
    assert not path.exists()
    assert process.stdout.read().strip() == status["scheduler_address"]


def test_bad_parameters_write_failed_with_the_line(tmp_path):
    path = status_file(tmp_path, {"cores": 0})
    process = start(path)
    assert wait_exit(process, 60) == 1
    status = json.loads(path.read_text())
    assert status["status"] == "failed" and "'cores'" in status["error"]
    stderr = process.stderr.read()
    assert stderr.count("\n") == 1 and stderr.startswith("seamless-dask-wrapper: error: parameter 'cores'")


def test_bad_cluster_string(tmp_path):
    job = {"cores": 1, "memory": "1GB", "walltime": "00:10:00"}
    path = status_file(tmp_path, job)
    for cluster, words in (("nope", "MODULE::SYMBOL"), ("no_such_module::X", "cannot import"),
                           ("distributed::no_such", "has no 'no_such'"), ("os::getcwd", "not a Dask Cluster"), ("json::dumps", "factory json.dumps() failed")):
        process = start(path, cluster=cluster)
        assert wait_exit(process, 60) == 1, cluster
        assert words in process.stderr.read()
        assert json.loads(path.read_text())["status"] == "failed"
        status_file(tmp_path, job)


def test_status_file_not_an_object(tmp_path):
    path = tmp_path / "status.json"
    path.write_text("[]")
    process = start(path)
    assert wait_exit(process, 30) == 1
    assert "must contain a JSON object" in process.stderr.read()


def test_print_job_script_of_a_local_cluster_touches_nothing(tmp_path):
    path = status_file(tmp_path, {"cores": 2, "maximum_jobs": 3})
    before = path.read_text()
    result = subprocess.run(["seamless-dask-wrapper", LOCAL, "--status-file", str(path), "--print-job-script"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_workers"] == 3 and path.read_text() == before


def test_signal_during_startup_says_failed(tmp_path):
    path = status_file(tmp_path, {"cores": 1, "maximum_jobs": 2})
    process = start(path)
    time.sleep(0.5)  # reading the status file, importing distributed
    process.send_signal(signal.SIGINT)
    code = wait_exit(process, 60)
    if path.exists() and json.loads(path.read_text()).get("status") == "failed":
        assert code == 130
    else:  # it was already running: a clean shutdown
        assert code in (0, 130) and not path.exists()


def test_a_cluster_factory(tmp_path):
    """MODULE::SYMBOL may name a function that returns a cluster; the status file then has
    the ports that cluster chose."""
    from distributed import Client

    (tmp_path / "mycluster.py").write_text(
        "from distributed import LocalCluster\n"
        "def make():\n"
        "    return LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol='tcp://',\n"
        "                        host='127.0.0.1', dashboard_address='127.0.0.1:0')\n")
    path = status_file(tmp_path, {"cores": 1, "memory": "1GB", "walltime": "00:10:00"})
    process = start(path, "--timeout", "60", cluster="mycluster::make", cwd=tmp_path,
                    env={**os.environ, "PYTHONPATH": str(tmp_path)})
    try:
        status = wait_status(path, process)
        assert status["status"] == "running", (status, process.stderr.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{status['dashboard_port']}/health", timeout=10) as r:
            assert r.read() == b"ok"
        with Client(f"tcp://127.0.0.1:{status['port']}", timeout=30) as client:
            assert client.submit(lambda: 7).result(timeout=60) == 7
    finally:
        process.terminate()
        assert wait_exit(process, 60) == 0
