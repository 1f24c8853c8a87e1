"""What the launcher does on the host where a service runs.

State lives in ~/.seamless/launch (or $SEAMLESS_LAUNCH_DIR) on that host:
  server/<key>.json  the status file: status starting -> running | failed (-> stale),
                     port (and *_port), pid, uid, command, workdir, log, parameters
  server/<key>.log   the service's output
These functions run locally for local services, and through `seamless-launch _host`
over ssh for services on a frontend; they print JSON so the client can read them.
"""

import json
import os
import shlex
import signal
import shutil
import subprocess
import sys
import time

from seamless.files import atomic_write

KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class HostError(RuntimeError):
    pass


def launch_dir():
    return os.environ.get("SEAMLESS_LAUNCH_DIR") or os.path.join(os.path.expanduser("~"), ".seamless", "launch")


def check_key(key):
    if not key or not set(key) <= KEY_CHARS or key.startswith("."):
        raise HostError(f"invalid service key {key!r}: letters, digits, '.', '_' and '-' only")
    return key


def status_path(key):
    return os.path.join(launch_dir(), "server", check_key(key) + ".json")


def log_path(key):
    return os.path.join(launch_dir(), "server", check_key(key) + ".log")


def read_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, TypeError):
        return isinstance(pid, int)  # EPERM: exists, not ours
    return not zombie(int(pid))


def zombie(pid) -> bool:
    """Exited but not yet reaped (an orphan waits for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def answers(url, timeout=2.0) -> bool:
    """Does http://host:port/path answer 2xx? (A raw request: urllib would cost more
    to import than the whole check.)"""
    import socket

    rest = url.split("://", 1)[-1]
    hostport, _, path = rest.partition("/")
    host_, _, port = hostport.rpartition(":")
    host_ = host_.strip("[]")
    try:
        with socket.create_connection((host_, int(port)), timeout=timeout) as sock:
            sock.sendall(f"GET /{path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n".encode())
            status = sock.recv(64)
    except (OSError, ValueError):
        return False
    return status[:7] in (b"HTTP/1.", ) and status[9:10] == b"2"


def inspect(key):
    """The status file (with its age and whether its process lives), or None."""
    path = status_path(key)
    data = read_json(path)
    if data is None:
        return None
    try:
        data["age"] = time.time() - os.stat(path).st_mtime
    except OSError:
        return None
    data["alive"] = alive(data.get("pid"))
    return data


def handshake(key, path="healthcheck"):
    """Does the service answer its handshake, asked from its own host?"""
    data = read_json(status_path(key)) or {}
    port = data.get("port")
    if not port:
        return False
    return answers(f"http://{reachable(data.get('network_interface'))}:{port}/{path}")


def reachable(interface):
    """The address to dial for a service bound to `interface`."""
    return "127.0.0.1" if interface in (None, "", "0.0.0.0", "localhost", "::") else interface


def start(spec):
    """Spawn the service (detached) and write its `starting` status; return the status.
    Two clients starting the same key at once start it once: the second gets the first's
    status (under a lock, a live one is never replaced)."""
    import fcntl

    key = check_key(spec["key"])
    workdir = os.path.expanduser(spec["workdir"])
    os.makedirs(workdir, exist_ok=True)
    os.makedirs(os.path.join(launch_dir(), "server"), exist_ok=True)
    status_file = status_path(key)
    argv = [status_file if a == "STATUS_FILE" else os.path.expanduser(a) if a.startswith("~/") else a
            for a in spec["argv"]]
    argv[0] = _program(argv[0])
    host = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--host"), "127.0.0.1")
    conda = spec.get("conda")
    command = _conda_wrap(conda, argv) if conda else argv
    with open(status_file[:-len(".json")] + ".lock", "w") as lock:  # server/<key>.lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = inspect(key)
        if current and current["alive"] and current.get("status") in ("starting", "running"):
            return current
        if current:
            os.unlink(status_file)
        with open(log_path(key), "wb") as log:
            try:
                proc = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise HostError(f"cannot start {argv[0]}: {exc.strerror} (is it installed on this host?)") from None
        status = {"key": key, "tool": spec.get("tool"), "status": "starting", "pid": proc.pid, "uid": os.getuid(),
                  "command": shlex.join(argv), "workdir": workdir, "log": log_path(key), "network_interface": host,
                  "parameters": spec.get("parameters") or {}}
        atomic_write(status_file, json.dumps(status, indent=2) + "\n", mode=0o600)
    return status


def _program(name):
    """A bare program name, found on PATH or next to this tool (a venv's bin)."""
    if os.sep in name or shutil.which(name):
        return name
    beside = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), name)
    return beside if os.access(beside, os.X_OK) else name


def _conda_wrap(env, argv):
    """bash activates the environment, then execs argv given as arguments (never as text)."""
    root = os.environ.get("CONDA_ROOT")
    if not root and shutil.which("conda"):
        found = subprocess.run(["conda", "info", "--base"], capture_output=True, text=True)
        root = found.stdout.strip() if found.returncode == 0 else None
    script = os.path.join(root, "etc", "profile.d", "conda.sh") if root else None
    if not script or not os.path.isfile(script):
        raise HostError(f"conda environment {env!r} requested, but conda is not found on this host "
                        "(set CONDA_ROOT or put conda on PATH)")
    activate = f"source {shlex.quote(script)} && conda activate {shlex.quote(env)} && exec \"$@\""
    return ["bash", "-c", activate, "seamless-service", *argv]


def stop(key, only_pid=None, grace=5.0):
    """SIGTERM, then SIGKILL after `grace`; the status becomes stale. True if it ran.
    With only_pid, only that process: a service someone just started instead is spared."""
    path = status_path(key)
    data = read_json(path)
    if data is None:
        return False
    pid = data.get("pid")
    if only_pid not in (None, "None") and str(pid) != str(only_pid):
        return False
    ran = alive(pid)
    if ran:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
            try:
                os.kill(int(pid), sig)
            except OSError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.05)
            if not alive(pid):
                break
    data["status"] = "stale"
    atomic_write(path, json.dumps(data, indent=2) + "\n", mode=0o600)
    return ran


def remove(key):
    """Delete the status file and log (stopping the service first)."""
    stop(key)
    found = False
    for path in (status_path(key), log_path(key)):
        if os.path.exists(path):
            os.unlink(path)
            found = True
    try:
        os.unlink(status_path(key)[:-len(".json")] + ".lock")
    except FileNotFoundError:
        pass
    return found


def logs(key, tail=None):
    try:
        with open(log_path(key), errors="replace") as f:
            text = f.read()
    except OSError:
        raise HostError(f"{key}: no log (never launched here, or removed)") from None
    if tail is not None:
        text = "".join(text.splitlines(keepends=True)[-tail:])
    return text


def ps():
    """One row per known service, with its live status."""
    rows = []
    directory = os.path.join(launch_dir(), "server")
    if not os.path.isdir(directory):
        return rows
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        data = inspect(name[:-5])
        if data is None:
            continue
        status = data.get("status")
        if status == "running" and not data["alive"]:
            status = "stale"  # exited (idle timeout, kill): the next launch starts it again
        rows.append({"key": name[:-5], "status": status, "pid": data.get("pid"), "port": data.get("port"),
                     "tool": data.get("tool"), "workdir": data.get("workdir"), "alive": data["alive"]})
    return rows


def alive_op(pid):
    return alive(int(pid))


# the operations a client may ask of a service host (locally, or over ssh as
# `seamless-launch _host OP ARGS...`, with a JSON answer on stdout)
OPS = {
    "inspect": inspect,
    "handshake": handshake,
    "start": start,
    "stop": stop,
    "rm": remove,
    "logs": logs,
    "ps": ps,
    "alive": alive_op,
}
