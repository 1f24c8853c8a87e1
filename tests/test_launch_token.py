"""Services the launcher starts require a fresh random token (issue 10): here and over ssh,
handed again to every client that finds the service, sent by our clients; `token: false`
turns it off."""

import http.client
import json
import os
import socket
import subprocess

import pytest

from conftest import tool
from test_launch import answers, env, frontend, launch, spec, ssh_cluster, stop_all, token_of  # noqa: F401 (fixtures)

CHECKSUM = "0" * 64


def status_code(url, token=None, path=f"/{CHECKSUM}"):
    host, port = url.split("://")[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        return conn.getresponse().status
    finally:
        conn.close()


def private(path):
    return os.stat(path).st_mode & 0o777 == 0o600


def lab_cluster(tmp_path, token=None):
    setting = "" if token is None else f"  token: {token}\n"
    (tmp_path / "home" / ".seamless").mkdir(exist_ok=True)
    (tmp_path / "home" / ".seamless" / "clusters.yaml").write_text(
        f"lab:\n{setting}  frontends:\n    - hostname: localhost\n"
        f"      hashserver: {{bufferdir: {tmp_path}/labbufs}}\n      database: {{database_dir: {tmp_path}/labdbs}}\n")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "seamless.yaml").write_text("- project: p\n- cluster: lab\n- execution: process\n")
    (work / "data.txt").write_text("protected\n")
    return work


def test_a_launched_service_requires_its_token(tmp_path, env):
    first = launch([spec(tmp_path)], env)
    assert first.returncode == 0, first.stderr
    connection = json.loads(first.stdout)
    token = token_of(connection)
    assert token and len(token) >= 32 and private(connection["token_file"])
    assert status_code(connection["url"]) == 401  # every local user could reach it before
    assert status_code(connection["url"], "wrong") == 401
    assert status_code(connection["url"], token) == 404  # authorized: the buffer is just not there
    server_token = tmp_path / "launch" / "server" / "hs-test.token"
    assert server_token.read_text().strip() == token and private(server_token)
    # found again, through the client file or the status file: the same token
    assert token_of(json.loads(launch([spec(tmp_path)], env).stdout)) == token
    os.unlink(tmp_path / "launch" / "client" / "hs-test.json")
    again = json.loads(launch([spec(tmp_path)], env).stdout)
    assert token_of(again) == token and status_code(again["url"], token_of(again)) == 404
    # a new start gets a new token
    assert launch(["stop", "hs-test"], env).returncode == 0
    restarted = json.loads(launch([spec(tmp_path)], env).stdout)
    assert token_of(restarted) not in (None, token) and answers(restarted)


def test_a_stale_token_in_the_client_file_is_replaced(tmp_path, env):
    """The service was started again elsewhere on the same port, with another token."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = token_of(json.loads(launch([spec(tmp_path, extra=f"--port {port}")], env).stdout))
    client = tmp_path / "launch" / "client"
    saved = {p.name: p.read_bytes() for p in client.iterdir() if p.name.startswith("hs-test.")}
    assert launch(["stop", "hs-test"], env).returncode == 0
    second = json.loads(launch([spec(tmp_path, extra=f"--port {port}")], env).stdout)
    assert second["port"] == port and token_of(second) not in (None, first)
    for name, data in saved.items():  # this machine still remembers the first start
        (client / name).write_bytes(data)
    third = json.loads(launch([spec(tmp_path, extra=f"--port {port}")], env).stdout)
    assert token_of(third) == token_of(second) and status_code(third["url"], token_of(third)) == 404


def test_the_stores_of_a_cluster_send_the_token(tmp_path, env):
    work = lab_cluster(tmp_path)
    run = subprocess.run([tool("seamless-run"), "cat data.txt"], cwd=work, env=env, capture_output=True, timeout=120)
    assert run.returncode == 0 and run.stdout == b"protected\n", run.stderr
    rows = [json.loads(line) for line in launch(["ps", "--json"], env).stdout.decode().splitlines()]
    assert {r["key"] for r in rows} == {"hashserver-lab-rw-p", "database-lab-rw-p"}
    for row in rows:
        connection = json.loads((tmp_path / "launch" / "client" / f"{row['key']}.json").read_text())
        assert status_code(connection["url"]) == 401 and private(connection["token_file"])
    again = subprocess.run([tool("seamless-run"), "-v", "cat data.txt"], cwd=work, env=env, capture_output=True,
                           timeout=120)
    assert again.returncode == 0 and b"cache hit" in again.stderr, again.stderr


def test_token_false_for_upstream_clients(tmp_path, env):
    work = lab_cluster(tmp_path, token="false")
    proc = launch(["hashserver", "--cluster", "lab", "--project", "p"], env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    connection = json.loads(proc.stdout)
    assert "token_file" not in connection and status_code(connection["url"]) == 404
    # turning it on again restarts the service with a token
    lab_cluster(tmp_path)
    again = launch(["hashserver", "--cluster", "lab", "--project", "p"], env, cwd=work)
    assert again.returncode == 0, again.stderr
    protected = json.loads(again.stdout)
    assert token_of(protected) and status_code(protected["url"]) == 401
    assert status_code(protected["url"], token_of(protected)) == 404


def test_token_setting_is_validated(tmp_path, env):
    work = lab_cluster(tmp_path, token="maybe")
    proc = subprocess.run([tool("seamless-init"), "--show"], cwd=work, env=env, capture_output=True, timeout=60)
    assert proc.returncode == 1 and b"cluster 'lab': 'token' must be true or false" in proc.stderr


def test_tokens_in_launch_specs(tmp_path, env):
    def write(command, extra=""):
        path = tmp_path / "s.yaml"
        path.write_text(f"key: k\nworkdir: {tmp_path}\ncommand: {command}\n{extra}")
        return launch([str(path)], env)

    hashserver = f"seamless-hashserver --status-file {{status_file}} {tmp_path}/b --writable"
    (tmp_path / "b").mkdir()
    explicit = write(hashserver + " --token-file {token_file}")
    assert explicit.returncode == 0, explicit.stderr
    connection = json.loads(explicit.stdout)
    first = token_of(connection)
    assert status_code(connection["url"]) == 401 and status_code(connection["url"], first) == 404
    launch(["stop", "k"], env)
    # our servers get one by default (the spec files of upstream's launcher stay valid)
    implicit = json.loads(write(hashserver).stdout)
    assert token_of(implicit) not in (None, first) and status_code(implicit["url"]) == 401
    launch(["stop", "k"], env)
    open_one = write(hashserver, "token: false\n")
    assert open_one.returncode == 0, open_one.stderr
    assert "token_file" not in json.loads(open_one.stdout) and status_code(json.loads(open_one.stdout)["url"]) == 404
    launch(["stop", "k"], env)
    for command, extra, message in (
            (hashserver + " --token-file {token_file}", "token: false\n", b"token: false, but the command passes"),
            ("sh -c 'sleep 9' --status-file {status_file}", "token: true\n", b"does not pass --token-file"),
            (hashserver, "token: 1\n", b"token must be true or false")):
        proc = write(command, extra)
        assert proc.returncode == 1 and message in proc.stderr and proc.stderr.count(b"\n") == 1, proc.stderr


@pytest.mark.parametrize("tunnel", [False, True], ids=["direct", "tunnel"])
def test_the_token_over_ssh(frontend, tmp_path, env, tunnel):  # noqa: F811
    work = ssh_cluster(tmp_path, tunnel)
    proc = launch(["hashserver", "--cluster", "front", "--project", "p"], env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    connection = json.loads(proc.stdout)
    key = connection["key"]
    # the token was made on the frontend; this side has its own 0600 copy
    remote = frontend.launch_dir / "server" / f"{key}.token"
    local = connection["token_file"]
    assert local.startswith(str(tmp_path / "launch" / "client")) and private(local) and private(remote)
    assert token_of(connection) == remote.read_text().strip()
    assert status_code(connection["url"]) == 401 and status_code(connection["url"], token_of(connection)) == 404
    # another client (another machine: its own client files) finds the service and gets the same token
    other = dict(env, SEAMLESS_LAUNCH_DIR=str(tmp_path / "other-client"))
    again = json.loads(launch(["hashserver", "--cluster", "front", "--project", "p"], other, cwd=work).stdout)
    assert again["token_file"].startswith(other["SEAMLESS_LAUNCH_DIR"])
    assert token_of(again) == remote.read_text().strip() and answers(again)
    stop_all(other)
    run = subprocess.run([tool("seamless-run"), "cat data.txt"], cwd=work, env=env, capture_output=True, timeout=120)
    assert run.returncode == 0 and run.stdout == b"over ssh\n", run.stderr
