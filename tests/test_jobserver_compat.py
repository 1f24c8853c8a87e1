"""Job servers across the two systems: upstream's seamless-run and Python code run through
our seamless-jobserver, and ours through upstream's (seamless-jobserver 0.3.0 in the
throwaway upstream virtualenv of bench/upstream-venv.sh). Skipped without it."""

import json
import os
import pathlib
import subprocess

import pytest

from conftest import tool

VENV = os.environ.get("SEAMLESS_UPSTREAM_VENV", "")
pytestmark = pytest.mark.skipif(not (VENV and os.path.exists(os.path.join(VENV, "bin", "seamless-jobserver"))),
                                reason="no upstream virtualenv with seamless-jobserver (bench/upstream-venv.sh)")

PYTHON = """
import json, os, sys
import seamless.config
seamless.config.set_workdir(os.getcwd())
from seamless.transformer import delayed
seamless.config.init()

@delayed
def where(x):
    import os
    return [x * 2, os.getppid()]

print(json.dumps(where(21).run()))
"""


def cluster(tmp_path, port_base, token=True):
    return f"""local_cluster: benchlocal
benchlocal:
  type: local
  workers: 2{"" if token else chr(10) + "  token: false"}
  frontends:
    - hostname: localhost
      hashserver:
        bufferdir: {tmp_path}/data/buffers
        network_interface: 127.0.0.1
        port_start: {port_base + 100}
        port_end: {port_base + 199}
      database:
        database_dir: {tmp_path}/data/db
        network_interface: 127.0.0.1
        port_start: {port_base + 200}
        port_end: {port_base + 299}
      jobserver:
        network_interface: 127.0.0.1
        port_start: {port_base + 300}
        port_end: {port_base + 399}
        conda: null
"""


def project(tmp_path, clusters, path_first):
    home = tmp_path / "home"
    (home / ".seamless").mkdir(parents=True)
    (home / ".seamless" / "clusters.yaml").write_text(clusters)
    work = tmp_path / "work"
    work.mkdir()
    (work / "seamless.yaml").write_text("- project: compat\n- cluster: benchlocal\n- execution: remote\n"
                                        "- remote: jobserver\n")
    (work / "remote.py").write_text(PYTHON)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(HOME=str(home), SEAMLESS_LAUNCH_DIR=str(tmp_path / "launch"),
               PATH=os.pathsep.join([str(path_first), env["PATH"]]))
    return work, env


def jobserver_pid(status_dir):
    (status,) = [p for p in pathlib.Path(status_dir).glob("jobserver*.json")]
    return json.loads(status.read_text())["pid"]


def cmdline(pid):
    return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_upstream_clients_run_through_our_jobserver(tmp_path):
    ours = tmp_path / "ours-bin"  # only our job server comes first; everything else is upstream's
    ours.mkdir()
    (ours / "seamless-jobserver").symlink_to(tool("seamless-jobserver"))
    upstream_bin = os.path.join(VENV, "bin")
    work, env = project(tmp_path, cluster(tmp_path, 56000), ours)
    env["PATH"] = os.pathsep.join([str(ours), upstream_bin, env["PATH"]])
    server_dir = pathlib.Path(env["HOME"]) / ".remote-http-launcher" / "server"
    try:
        proc = subprocess.run([os.path.join(upstream_bin, "seamless-run"), "echo hello-from-upstream"], cwd=work,
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout == "hello-from-upstream\n", proc.stderr[-3000:]
        pid = jobserver_pid(server_dir)
        assert tool("seamless-jobserver") in cmdline(pid) or "ours-bin/seamless-jobserver" in cmdline(pid)
        proc = subprocess.run([os.path.join(upstream_bin, "python"), "remote.py"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        doubled, parent = json.loads(proc.stdout.strip().splitlines()[-1])
        assert doubled == 42 and parent == pid  # ran in a worker of our job server
    finally:
        subprocess.run([os.path.join(upstream_bin, "seamless-service-stop"), "--cluster", "benchlocal"], cwd=work,
                       env=env, capture_output=True, timeout=120)


def test_our_clients_run_through_upstreams_jobserver(tmp_path):
    upstream_bin = pathlib.Path(VENV) / "bin"
    theirs = tmp_path / "their-bin"  # only upstream's job server comes first
    theirs.mkdir()
    (theirs / "seamless-jobserver").symlink_to(upstream_bin / "seamless-jobserver")
    # upstream's job server takes no --token-file: its cluster says token: false
    work, env = project(tmp_path, cluster(tmp_path, 58000, token=False), theirs)
    env["PATH"] = os.pathsep.join([str(theirs), os.path.dirname(tool("seamless-run")), env["PATH"]])
    try:
        proc = subprocess.run([tool("seamless-run"), "echo hello-from-ours"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout == "hello-from-ours\n", proc.stderr[-3000:]
        pid = jobserver_pid(tmp_path / "launch" / "server")
        assert str(upstream_bin) in cmdline(pid) or "their-bin" in cmdline(pid)
        python = os.path.join(os.path.dirname(tool("seamless-run")), "python")
        proc = subprocess.run([python, "remote.py"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        doubled, parent = json.loads(proc.stdout.strip().splitlines()[-1])
        assert doubled == 42 and parent == pid  # ran in a worker of upstream's job server
    finally:
        for key in ("jobserver", "hashserver", "database"):
            subprocess.run([tool("seamless-launch"), "stop", f"{key}-benchlocal-rw-compat"], env=env,
                           capture_output=True, timeout=60)
