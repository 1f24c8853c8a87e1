"""seamless-launch ps / stop / rm and the launch errors of issue 10: no ghost rows after a
failed ssh launch, no host-less URLs for stopped services, unknown keys are errors, a busy
port range names the clusters.yaml settings to change."""

import json
import subprocess

import sshd
from conftest import tool
from test_launch import env, frontend, hold_adjacent_ports, launch, spec, ssh_cluster  # noqa: F401 (fixtures)


def ps_rows(env):
    return [json.loads(line) for line in launch(["ps", "--json"], env).stdout.decode().splitlines()]


def test_a_failed_ssh_launch_leaves_no_ghost(frontend, tmp_path, env):  # noqa: F811
    work = ssh_cluster(tmp_path, False)
    proc = subprocess.run([tool("seamless-run"), "--stage", "refused", "cat data.txt"], cwd=work, env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 1 and f"cannot ssh to {sshd.REFUSING}".encode() in proc.stderr
    assert b"without a password prompt" in proc.stderr  # and how to fix it
    assert ps_rows(env) == []


def test_rm_forgets_a_service_whose_frontend_is_gone(frontend, tmp_path, env):  # noqa: F811
    client = tmp_path / "launch" / "client"
    client.mkdir(parents=True)
    (client / "hashserver-gone-rw-p.host").write_text(f"{sshd.REFUSING}\n")  # left by an older version
    assert [r["key"] for r in ps_rows(env)] == ["hashserver-gone-rw-p"]
    proc = launch(["rm", "hashserver-gone-rw-p"], env)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1 and f"cannot ssh to {sshd.REFUSING}" in err, err
    assert "forgotten here" in err
    assert ps_rows(env) == []


def test_stopped_services_show_no_url(tmp_path, env):
    connection = json.loads(launch([spec(tmp_path)], env).stdout)
    running = launch(["ps"], env).stdout.decode().splitlines()
    assert running[1].split()[:2] == ["hs-test", "running"] and running[1].split()[-1] == connection["url"]
    launch(["stop", "hs-test"], env)
    stopped = launch(["ps"], env).stdout.decode().splitlines()[1].split()
    assert stopped[1] in ("stale", "stopped") and stopped[-1] == "-", stopped
    assert "url" not in ps_rows(env)[0]


def test_stop_and_rm_of_an_unknown_key_are_errors(tmp_path, env):
    launch([spec(tmp_path)], env)
    for command in ("stop", "rm", "logs"):
        proc = launch([command, "hs-tset"], env)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and err.count("\n") == 1, (command, err)
        assert "unknown service 'hs-tset'" in err and "did you mean 'hs-test'?" in err, err
    both = launch(["stop", "nothing", "hs-test"], env)  # the known one is still stopped
    assert both.returncode == 1 and both.stdout == b"hs-test: stopped\n"
    assert launch(["stop", "hs-test"], env).stdout == b"hs-test: not running\n"  # known, exit 0
    assert launch(["rm", "hs-test"], env).returncode == 0
    assert launch(["rm", "hs-test"], env).returncode == 1


def test_a_busy_port_range_names_the_cluster_setting(tmp_path, env):
    held, ports = hold_adjacent_ports()
    clusters = tmp_path / "home" / ".seamless" / "clusters.yaml"
    clusters.parent.mkdir()
    clusters.write_text(f"lab:\n  frontends:\n    - hostname: localhost\n      hashserver:\n"
                        f"        bufferdir: {tmp_path}/b\n        port_start: {ports[0]}\n"
                        f"        port_end: {ports[1]}\n")
    try:
        proc = launch(["hashserver", "--cluster", "lab", "--project", "p"], env, cwd=tmp_path)
    finally:
        for s in held:
            s.close()
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1, err
    assert f"{ports[0]}-{ports[1]}" in err and "--port-range" not in err
    assert "port_start/port_end" in err and "cluster 'lab'" in err and "frontend 1" in err
    assert "hashserver" in err and str(clusters) in err
