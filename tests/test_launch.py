"""seamless-launch with real processes: local services, and services on an ssh frontend."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import sshd
from conftest import tool


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    e.update(SEAMLESS_LAUNCH_DIR=str(tmp_path / "launch"), HOME=str(tmp_path / "home"),
             XDG_CACHE_HOME=str(tmp_path / "xdg"), SEAMLESS_LAUNCH_REMOTE=tool("seamless-launch"))
    (tmp_path / "home").mkdir()
    yield e
    stop_all(e)


def stop_all(e):
    proc = launch(["ps", "--json"], e)
    for line in proc.stdout.decode().splitlines():
        launch(["stop", json.loads(line)["key"]], e)


def launch(argv, env, **kw):
    return subprocess.run([tool("seamless-launch"), *argv], env=env, capture_output=True, timeout=120, **kw)


def spec(tmp_path, key="hs-test", extra="", **fields):
    directory = tmp_path / "bufs"
    directory.mkdir(exist_ok=True)
    lines = [f"key: {key}", f"workdir: {directory}",
             f"command: seamless-hashserver --status-file {{status_file}} {extra} {directory} --writable"]
    lines += [f"{k}: {v}" for k, v in fields.items()]
    path = tmp_path / f"{key}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def answers(connection):
    """Does the service of a connection answer /healthcheck (with its token, if any)?"""
    from seamless.launch.host import answers as check

    return check(connection["url"] + "/healthcheck", token=token_of(connection))


def token_of(connection):
    try:
        with open(connection["token_file"]) as f:
            return f.read().strip()
    except (KeyError, OSError):
        return None


# --- local --------------------------------------------------------------------------------------


def test_launch_then_reuse(tmp_path, env):
    first = launch([spec(tmp_path)], env)
    assert first.returncode == 0, first.stderr
    connection = json.loads(first.stdout)
    assert answers(connection)
    status = json.loads((tmp_path / "launch" / "server" / "hs-test.json").read_text())
    assert status["status"] == "running" and status["port"] == connection["port"]
    assert {"pid", "uid", "command", "workdir", "log", "parameters"} <= set(status)
    client = tmp_path / "launch" / "client" / "hs-test.json"
    assert oct(client.stat().st_mode & 0o777) == "0o600"
    second = launch([spec(tmp_path)], env)
    assert json.loads(second.stdout)["port"] == connection["port"]
    client.unlink()  # no client file: the status file on the host is found and reused
    third = launch([spec(tmp_path)], env)
    assert json.loads(third.stdout)["port"] == connection["port"]
    assert json.loads((tmp_path / "launch" / "server" / "hs-test.json").read_text())["pid"] == status["pid"]


def test_clients_launching_at_once_start_one_service(tmp_path, env):
    procs = [subprocess.Popen([tool("seamless-launch"), spec(tmp_path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(4)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert len({json.loads(out)["port"] for out, _ in outputs}) == 1
    status_file = tmp_path / "launch" / "server" / "hs-test.json"
    services = services_of(status_file)
    assert len(services) == 1, (services, outputs)


def test_kill9_then_relaunch_quickly(tmp_path, env):
    first = json.loads(launch([spec(tmp_path)], env).stdout)
    status = json.loads((tmp_path / "launch" / "server" / "hs-test.json").read_text())
    os.kill(status["pid"], signal.SIGKILL)
    time.sleep(0.2)
    start = time.monotonic()
    second = launch([spec(tmp_path)], env)
    assert second.returncode == 0, second.stderr
    assert time.monotonic() - start < 5
    assert answers(json.loads(second.stdout)) and not answers(first) or \
        json.loads(second.stdout)["port"] == first["port"]


def hold_adjacent_ports():
    for _ in range(50):
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        port = first.getsockname()[1]
        second = socket.socket()
        try:
            second.bind(("127.0.0.1", port + 1))
        except OSError:
            first.close()
            second.close()
            continue
        first.listen()
        second.listen()
        return [first, second], [port, port + 1]
    pytest.fail("could not hold two adjacent ports")


def test_every_port_busy_is_a_clear_error(tmp_path, env):
    held, ports = hold_adjacent_ports()
    proc = launch([spec(tmp_path, extra=f"--port-range {ports[0]} {ports[1]}")], env)
    for s in held:
        s.close()
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and f"no free port in {ports[0]}-{ports[1]}" in err


def test_failure_at_start_shows_the_log_tail(tmp_path, env):
    path = tmp_path / "bad.yaml"
    path.write_text(f"key: bad\nworkdir: {tmp_path}\n"
                    f"command: seamless-hashserver --status-file {{status_file}} {tmp_path}/missing-dir\n")
    proc = launch([str(path)], env)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "did not start" in err and "missing-dir does not exist" in err and err.count("\n") == 1


def test_idle_timeout_and_the_state_it_leaves(tmp_path, env):
    first = json.loads(launch([spec(tmp_path, extra="--timeout 1")], env).stdout)
    pid = json.loads((tmp_path / "launch" / "server" / "hs-test.json").read_text())["pid"]
    from seamless.launch.host import alive

    deadline = time.monotonic() + 10  # watch the pid: a request would reset the idle timer
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not alive(pid) and not answers(first)
    status = json.loads((tmp_path / "launch" / "server" / "hs-test.json").read_text())
    assert status["status"] == "stopped"
    start = time.monotonic()
    again = launch([spec(tmp_path, extra="--timeout 1")], env)
    assert again.returncode == 0 and time.monotonic() - start < 5


def test_ps_logs_stop_rm(tmp_path, env):
    launch([spec(tmp_path)], env)
    rows = [json.loads(line) for line in launch(["ps", "--json"], env).stdout.decode().splitlines()]
    assert rows[0]["key"] == "hs-test" and rows[0]["status"] == "running"
    assert launch(["logs", "hs-test", "--tail", "5"], env).returncode == 0
    stopped = launch(["stop", "hs-test"], env)
    assert stopped.stdout == b"hs-test: stopped\n"
    rows = [json.loads(line) for line in launch(["ps", "--json"], env).stdout.decode().splitlines()]
    assert rows[0]["status"] in ("stale", "stopped")
    assert launch(["rm", "hs-test"], env).stdout == b"hs-test: removed\n"
    assert launch(["ps", "--json"], env).stdout == b""
    assert launch(["stop", "hs-test"], env).returncode == 1  # removed: unknown now


@pytest.mark.parametrize("text,message", [
    ("workdir: /tmp\ncommand: x --status-file {status_file}\n", "'key' is required"),
    ("key: k\nworkdir: /tmp/a b\ncommand: x --status-file {status_file}\n", "must be a plain path"),
    ("key: k\nworkdir: /tmp\ncommand: x\n", "--status-file {status_file}"),
    ("key: 'a/b'\nworkdir: /tmp\ncommand: x --status-file {status_file}\n", "invalid service key"),
    ("key: k\nworkdir: /tmp\ncommand: x --status-file {status_file}\nport: 5\n", "unknown key(s) port"),
    ("key: k\nworkdir: /tmp\ncommand: \"x 'a --status-file {status_file}\"\n", "command: No closing quotation"),
    ("key: k\nworkdir: /tmp\ncommand: 5\n", "command: must be a string or a list"),
    ("key: k\nworkdir: /tmp\ncommand: x --status-file {status_file}\nconda: 5\n", "conda must be"),
    ("key: k\nworkdir: /tmp\ncommand: x --status-file {status_file}\nparameters: [1]\n", "parameters must be"),
    ("key: k\nworkdir: rel/dir\ncommand: x --status-file {status_file}\n", "must be an absolute path"),
    ("key: k\nworkdir: /tmp/../etc\ncommand: x --status-file {status_file}\n", "without '..'"),
    ("key: k\nworkdir: /tmp\ncommand: x --status-file {status_file}\nssh_hostname: -oProxyCommand=x\n",
     "invalid ssh host"),
    ("key: k\nworkdir: /tmp\ncommand: x --status-file {status_file}\nhostname: 'a b;rm'\n", "invalid ssh host"),
])
def test_spec_errors(tmp_path, env, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    proc = launch([str(path)], env)
    assert proc.returncode == 1 and message in proc.stderr.decode()


def services_of(status_file):
    from seamless.launch.host import processes_of, service_marker

    return processes_of(service_marker(str(status_file)))


def test_a_pid_in_the_status_file_is_not_trusted(tmp_path, env):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        for pid in (0, -1, 1, bystander.pid):
            status_file = tmp_path / "launch" / "server" / "hs-test.json"
            status_file.parent.mkdir(parents=True, exist_ok=True)
            status_file.write_text(json.dumps({"status": "running", "pid": pid, "port": 9}))
            proc = launch([spec(tmp_path)], env)
            assert proc.returncode == 0, proc.stderr
            assert bystander.poll() is None  # never signalled
            assert json.loads(status_file.read_text())["pid"] != pid
            (tmp_path / "launch" / "client" / "hs-test.json").unlink()
    finally:
        bystander.kill()


def test_a_service_is_known_while_its_program_loads(tmp_path):
    """Just after Popen returns, the child may still be loading its program, its
    /proc/PID/cmdline empty: it is the service all the same. (A launcher that asked at
    that moment called its fresh service dead and stopped it: "did not start: no output".)"""
    from seamless.launch import host

    status_file = str(tmp_path / "s.json")
    marker = host.service_marker(status_file)
    for find in (lambda pid: host.runs(pid, marker), lambda pid: host.processes_of(marker) == [pid]):
        for _ in range(30):
            proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(9)", "--status-file", status_file])
            try:
                assert find(proc.pid)
            finally:
                proc.kill()
                proc.wait()
    # a kernel thread never gets a command line: it is not waited for
    try:
        with open("/proc/2/stat", "rb") as f:
            kernel_thread = b"(kthreadd)" in f.read()
    except OSError:
        kernel_thread = False
    if kernel_thread:
        began = time.monotonic()
        assert not host.runs(2, marker) and time.monotonic() - began < 2.0


def test_a_corrupt_status_file_leaves_no_second_copy(tmp_path, env):
    launch([spec(tmp_path)], env)
    status_file = tmp_path / "launch" / "server" / "hs-test.json"
    first = services_of(status_file)
    status_file.write_text('{"status": "runn')
    (tmp_path / "launch" / "client" / "hs-test.json").unlink()
    assert launch(["ps"], env).returncode == 0
    proc = launch([spec(tmp_path)], env)
    assert proc.returncode == 0, proc.stderr
    now = services_of(status_file)
    assert len(now) == 1 and now != first, (first, now, proc.stdout, status_file.read_text())
    time.sleep(0.5)  # the old copy, stopped, did not write over the new one's status
    assert json.loads(status_file.read_text())["pid"] == now[0]


def test_a_malformed_client_file_is_replaced(tmp_path, env):
    client = tmp_path / "launch" / "client" / "hs-test.json"
    client.parent.mkdir(parents=True)
    client.write_text('{"port": "abc", "ssh_hostname": 5}')
    proc = launch([spec(tmp_path)], env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(client.read_text())["url"].startswith("http://127.0.0.1:")


def test_a_dead_start_is_stale_and_leaves_nothing_running(tmp_path, env):
    path = tmp_path / "exits.yaml"
    path.write_text(f"key: exits\nworkdir: {tmp_path}\n"
                    "command: [sh, -c, 'echo bye; exit 3', --status-file, '{status_file}']\n")
    proc = launch([str(path)], env)
    assert proc.returncode == 1 and b"did not start" in proc.stderr and b"bye" in proc.stderr
    rows = [json.loads(line) for line in launch(["ps", "--json"], env).stdout.decode().splitlines()]
    assert [r["status"] for r in rows if r["key"] == "exits"] == ["stale"]
    assert launch(["logs", "exits", "--tail", "0"], env).stdout == b""
    assert launch(["logs", "exits", "--tail", "-1"], env).returncode == 2


def test_stray_files_do_not_break_ps(tmp_path, env):
    launch([spec(tmp_path)], env)
    for name in ("server/hs-test (copy).json", "client/.hidden.json", "server/notes.txt"):
        (tmp_path / "launch" / name).write_text("{}")
    proc = launch(["ps", "--json"], env)
    assert proc.returncode == 0 and [json.loads(line)["key"] for line in proc.stdout.splitlines()] == ["hs-test"]


def test_state_is_private(tmp_path, env):
    launch([spec(tmp_path)], env)
    for path in ("launch/server", "launch/client"):
        assert (tmp_path / path).stat().st_mode & 0o077 == 0
    for path in ("hs-test.json", "hs-test.log", "hs-test.lock"):
        assert (tmp_path / "launch" / "server" / path).stat().st_mode & 0o077 == 0


def test_ssh_connections_need_a_private_control_directory(tmp_path, env):
    shared = tmp_path / "tmp" / f"seamless-ssh-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    env.pop("XDG_RUNTIME_DIR", None)
    env["TMPDIR"] = str(tmp_path / "tmp")
    proc = launch([spec(tmp_path, ssh_hostname="somewhere")], env)
    assert proc.returncode == 1 and b"is not a private directory" in proc.stderr


def test_launch_from_the_configuration(tmp_path, env):
    home = tmp_path / "home"
    (home / ".seamless").mkdir()
    (home / ".seamless" / "clusters.yaml").write_text(
        f"lab:\n  frontends:\n    - hostname: localhost\n      hashserver: {{bufferdir: {tmp_path}/labbufs}}\n"
        f"      database: {{database_dir: {tmp_path}/labdbs}}\n")
    proc = launch(["database", "--cluster", "lab", "--project", "p", "--stage", "s"], env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    connection = json.loads(proc.stdout)
    assert connection["key"] == "database-lab-rw-p--STAGE-s" and answers(connection)
    assert (tmp_path / "labdbs" / "p" / "STAGE-s" / "seamless.db").exists()
    bad = launch(["hashserver", "--project", "p"], env, cwd=tmp_path)
    assert bad.returncode == 1 and b"--cluster" in bad.stderr


# --- over ssh ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    if not sshd.available():
        pytest.skip("openssh-server is not installed (tests/run.sh installs it as root)")
    server = sshd.Sshd(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


def ssh_cluster(tmp_path, tunnel):
    home = tmp_path / "home"
    (home / ".seamless").mkdir(exist_ok=True)
    (home / ".seamless" / "clusters.yaml").write_text(
        f"front:\n  tunnel: {'true' if tunnel else 'false'}\n  frontends:\n"
        f"    - hostname: 127.0.0.1\n      ssh_hostname: {sshd.ALIAS}\n"
        f"      hashserver: {{bufferdir: {tmp_path}/remote-bufs}}\n"
        f"      database: {{database_dir: {tmp_path}/remote-dbs}}\n"
        f"refusing:\n  frontends:\n    - hostname: 127.0.0.1\n      ssh_hostname: {sshd.REFUSING}\n"
        f"      hashserver: {{bufferdir: /tmp/nowhere}}\n      database: {{database_dir: /tmp/nowhere}}\n")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "seamless.yaml").write_text("- project: p\n- cluster: front\n- execution: process\n"
                                        "- stage refused:\n    - cluster: refusing\n")
    (work / "data.txt").write_text("over ssh\n")
    return work


@pytest.mark.parametrize("tunnel", [False, True], ids=["direct", "tunnel"])
def test_over_ssh(frontend, tmp_path, env, tunnel):
    work = ssh_cluster(tmp_path, tunnel)
    proc = launch(["hashserver", "--cluster", "front", "--project", "p"], env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    connection = json.loads(proc.stdout)
    assert connection["ssh_hostname"] == sshd.ALIAS and answers(connection)
    if tunnel:
        assert connection["tunneled-port"] != connection["port"] and connection["tunnel_pid"]
    # seamless-run uses the frontend's services (started over ssh as needed)
    run = subprocess.run([tool("seamless-run"), "cat data.txt"], cwd=work, env=env, capture_output=True, timeout=120)
    assert run.returncode == 0 and run.stdout == b"over ssh\n", run.stderr
    assert (tmp_path / "remote-bufs" / "p").is_dir()  # the buffers are on the "frontend"
    remote_port = connection.get("tunneled-port", connection["port"])
    assert f":{remote_port}".encode() in launch(["logs", connection["key"]], env).stdout  # from the frontend
    stopped = launch(["stop", connection["key"]], env)
    assert stopped.stdout.decode() == f"{connection['key']}: stopped\n"
    assert not answers(connection)
    # without a client file, the frontend is still where stop and rm act
    assert launch(["stop", connection["key"]], env).stdout.decode() == f"{connection['key']}: not running\n"
    assert launch(["rm", connection["key"]], env).stdout.decode() == f"{connection['key']}: removed\n"
    assert not list((frontend.launch_dir / "server").glob(connection["key"] + ".*"))
    if tunnel:
        from seamless.launch.host import alive

        deadline = time.monotonic() + 5
        while alive(connection["tunnel_pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(connection["tunnel_pid"])
        with pytest.raises(OSError):  # the forward is gone with it
            socket.create_connection(("127.0.0.1", connection["port"]), timeout=2).close()


def test_clients_tunnelling_at_once_share_one_tunnel(frontend, tmp_path, env):
    work = ssh_cluster(tmp_path, True)
    procs = [subprocess.Popen([tool("seamless-launch"), "hashserver", "--cluster", "front", "--project", "p"],
                              cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert len({json.loads(out)["tunnel_pid"] for out, _ in outputs}) == 1
    from seamless.launch.host import processes_of

    key = json.loads(outputs[0][0])["key"]
    assert len(processes_of(b"seamless.launch.tunnel\0" + sshd.ALIAS.encode() + b"\0" + key.encode())) == 1
    launch(["stop", key], env)


def test_a_service_on_the_frontends_loopback_needs_a_tunnel_or_an_address(frontend, tmp_path, env):
    proc = launch([spec(tmp_path, key="hs-loopback", ssh_hostname=sshd.ALIAS)], env)
    assert proc.returncode == 1 and b"listening on its loopback only" in proc.stderr
    assert launch(["stop", "hs-loopback"], env).stdout == b"hs-loopback: stopped\n"


def test_a_frontend_refusing_ssh_is_one_line(frontend, tmp_path, env):
    work = ssh_cluster(tmp_path, False)
    start = time.monotonic()
    proc = subprocess.run([tool("seamless-run"), "--stage", "refused", "cat data.txt"], cwd=work, env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 1 and time.monotonic() - start < 30
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and f"cannot ssh to {sshd.REFUSING}" in err


# --- lifetime -------------------------------------------------------------------------------


def test_a_waiting_client_keeps_its_idle_servers_alive(tmp_path, env, start_service):
    (tmp_path / "bufs").mkdir(exist_ok=True)
    buffers = start_service("seamless-hashserver", tmp_path / "bufs", "--writable", "--timeout", "2")
    db = start_service("seamless-db", tmp_path / "seamless.db", "--writable", "--timeout", "2")
    env.update(SEAMLESS_KEEPALIVE="0.5", SEAMLESS_REMOTE_CLIENTS=json.dumps(
        {"buffer": [{"url": buffers.url, "readonly": False}], "database": [{"url": db.url, "readonly": False}]}))
    (tmp_path / "data.txt").write_text("kept alive\n")
    run = subprocess.run([tool("seamless-run"), "cat data.txt; sleep 4"], cwd=tmp_path, env=env,
                         capture_output=True, timeout=60)
    assert run.returncode == 0 and run.stdout == b"kept alive\n", run.stderr
    assert buffers.proc.poll() is None and db.proc.poll() is None  # 4 s of job, 2 s of idle timeout
    time.sleep(3.5)  # and without a client they do time out
    assert buffers.proc.poll() is not None and db.proc.poll() is not None


def test_a_service_moved_by_the_configuration_is_replaced(tmp_path, env):
    launch([spec(tmp_path)], env)
    moved = tmp_path / "moved"
    moved.mkdir()
    path = tmp_path / "moved.yaml"
    path.write_text(f"key: hs-test\nworkdir: {moved}\n"
                    f"command: seamless-hashserver --status-file {{status_file}} {moved} --writable\n")
    second = launch([str(path)], env)
    assert second.returncode == 0, second.stderr
    status_file = tmp_path / "launch" / "server" / "hs-test.json"
    assert json.loads(status_file.read_text())["workdir"] == str(moved)
    assert json.loads(second.stdout)["workdir"] == str(moved)
    assert services_of(status_file) == [json.loads(status_file.read_text())["pid"]]  # the old one is gone


@pytest.mark.parametrize("tunnel", [False, True], ids=["direct", "tunnel"])
def test_remote_execution_on_an_ssh_frontend(frontend, tmp_path, env, tunnel):
    """The job server runs on the frontend: the stores it is handed are named as the
    frontend sees them (a tunnel's far end) with the token files there."""
    work = ssh_cluster(tmp_path, tunnel)
    clusters = tmp_path / "home" / ".seamless" / "clusters.yaml"
    clusters.write_text(clusters.read_text().replace(
        f"      database: {{database_dir: {tmp_path}/remote-dbs}}\n",
        f"      database: {{database_dir: {tmp_path}/remote-dbs}}\n      jobserver: {{}}\n", 1))
    (work / "seamless.yaml").write_text("- project: p\n- cluster: front\n- execution: remote\n")
    try:
        proc = subprocess.run([tool("seamless-run"), "cat data.txt"], cwd=work, env=env, capture_output=True,
                              timeout=180)
        assert proc.returncode == 0 and proc.stdout == b"over ssh\n", proc.stderr
        assert b"job server" in proc.stderr
        server = frontend.launch_dir / "server"
        status = json.loads((server / "jobserver-front-rw-p.json").read_text())
        hashserver = json.loads((server / "hashserver-front-rw-p.json").read_text())
        (entry,) = status["parameters"]["buffer"]
        assert entry["remote_url"].endswith(f":{hashserver['port']}")  # the port on the frontend
        assert entry["remote_token_file"] == hashserver["token_file"]
    finally:
        for key in ("jobserver-front-rw-p", "hashserver-front-rw-p", "database-front-rw-p"):
            launch(["stop", key], env)
