"""Start a service on this machine, or find the one already running.

State lives in ~/.seamless/launch (or $SEAMLESS_LAUNCH_DIR): server/<key>.json is the
service's status file (the service writes its port, pid and "running" into it),
server/<key>.log its output, client/<key>.json (0600) how to reach it. A recorded
service that still answers its handshake is reused; a dead or silent one is cleaned
up and started again.
"""

import json
import os
import signal
import subprocess
import time
import urllib.request

from seamless.files import atomic_write

START_TIMEOUT = 30.0


class LaunchError(RuntimeError):
    pass


def launch_dir():
    return os.environ.get("SEAMLESS_LAUNCH_DIR") or os.path.join(os.path.expanduser("~"), ".seamless", "launch")


def _paths(key):
    base = launch_dir()
    return (os.path.join(base, "server", key + ".json"), os.path.join(base, "server", key + ".log"),
            os.path.join(base, "client", key + ".json"))


def _read(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def answers(url, handshake="healthcheck", timeout=2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/{handshake}", timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError):
        return False


def alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def ensure(spec):
    """The connection {hostname, port, url, key} of the service `spec` (from tools.render)."""
    key = spec["key"]
    status_path, log_path, client_path = _paths(key)
    handshake = spec.get("handshake") or "healthcheck"
    client = _read(client_path)
    if client and answers(client.get("url", ""), handshake):
        return client
    status = _read(status_path)
    if status and status.get("status") == "running" and alive(status.get("pid")):
        url = f"http://{_host(status)}:{status['port']}"
        if answers(url, handshake):
            return _record(client_path, key, status, url)
        _stop(status.get("pid"))
    for path in (status_path, client_path):
        if os.path.exists(path):
            os.unlink(path)
    return _start(spec, status_path, log_path, client_path, handshake)


def _host(status):
    host = status.get("host") or "127.0.0.1"
    return "127.0.0.1" if host in ("0.0.0.0", "localhost") else host


def _record(client_path, key, status, url):
    connection = {"key": key, "hostname": _host(status), "port": status["port"], "url": url}
    os.makedirs(os.path.dirname(client_path), exist_ok=True)
    atomic_write(client_path, json.dumps(connection, indent=2) + "\n", mode=0o600)
    return connection


def _start(spec, status_path, log_path, client_path, handshake):
    os.makedirs(os.path.dirname(status_path), exist_ok=True)
    workdir = os.path.expanduser(spec["workdir"])
    os.makedirs(workdir, exist_ok=True)
    argv = [status_path if a == "STATUS_FILE" else os.path.expanduser(a) if a.startswith("~/") else a
            for a in spec["argv"]]
    host = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--host"), "127.0.0.1")
    base = {"key": spec["key"], "status": "starting", "command": argv, "workdir": workdir,
            "log": log_path, "host": host}
    atomic_write(status_path, json.dumps(base, indent=2) + "\n", mode=0o600)
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise LaunchError(f"cannot start {argv[0]}: {exc.strerror} (is it installed and on PATH?)") from None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        status = _read(status_path) or {}
        if status.get("status") == "running":
            url = f"http://{_host(status)}:{status['port']}"
            for _ in range(50):
                if answers(url, handshake):
                    return _record(client_path, spec["key"], status, url)
                time.sleep(0.1)
            break
        if status.get("status") == "failed" or proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    raise LaunchError(f"{spec['tool']} ({spec['key']}) did not start: {_tail(log_path)}")


def _tail(path, lines=3):
    try:
        with open(path, errors="replace") as f:
            text = f.read().strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "no output (see " + path + ")"


def _stop(pid):
    if alive(pid):
        try:
            os.kill(int(pid), signal.SIGTERM)
        except OSError:
            pass
