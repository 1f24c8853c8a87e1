"""What the launcher does on the host where a service runs.

State lives in ~/.seamless/launch (or $SEAMLESS_LAUNCH_DIR) on that host:
  server/<key>.json  the status file: status starting -> running | failed (-> stopped
                     | stale), port (and *_port), pid, uid, command, workdir, log, parameters
  server/<key>.log   the service's output (opened for appending: a service may also write
                     to it by name, as seamless-dask-wrapper does; its batch jobs' logs are
                     server/<key>.log-<job>.out and .err)
  server/<key>.token the service's bearer token (0600), fresh at each start, when its
                     command passes --token-file TOKEN_FILE (see start)
  server/<key>.lock  taken while a service is started, so it is started once
These functions run locally for local services, and through `seamless-launch _host`
over ssh for services on a frontend; they print JSON so the client can read them.

A pid from a file is never trusted alone: a service is the process whose command line
holds its status file's path (every service gets `--status-file PATH`), so a reused
pid, or one planted in the file, is never signalled. (A process still in its exec has
no command line for a moment: it is waited for, not taken for a stranger.)
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


def valid_key(key) -> bool:
    return isinstance(key, str) and bool(key) and set(key) <= KEY_CHARS and not key.startswith(".")


def check_key(key):
    if not valid_key(key):
        raise HostError(f"invalid service key {key!r}: letters, digits, '.', '_' and '-' only")
    return key


def status_path(key):
    return os.path.join(launch_dir(), "server", check_key(key) + ".json")


def log_path(key):
    return os.path.join(launch_dir(), "server", check_key(key) + ".log")


def lock_path(key):
    return os.path.join(launch_dir(), "server", check_key(key) + ".lock")


def token_path(key):
    return os.path.join(launch_dir(), "server", check_key(key) + ".token")


def read_token(path):
    """The token in a token file, or None."""
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def private_dir(path):
    """Create a directory (and its parents) readable by this user only."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def read_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def valid_pid(pid) -> bool:
    """A pid that may be signalled: never 0, -1 (everything) or 1 (init)."""
    return type(pid) is int and pid > 1


def alive(pid) -> bool:
    if not valid_pid(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: exists, not ours
    return not zombie(pid)


def service_marker(status_file) -> bytes:
    """What a service's command line holds: the arguments `--status-file PATH`."""
    return b"--status-file\0" + os.fsencode(status_file) + b"\0"


def runs(pid, marker: bytes) -> bool:
    """Is pid alive and the process we mean: its command line holds `marker`?
    (Without /proc, as on macOS, a live pid is trusted.)"""
    if not alive(pid):
        return False
    cmdline = _command_line(pid)
    return marker in cmdline if cmdline is not None else not os.path.isdir("/proc/self")


def processes_of(marker: bytes):
    """Every live process whose command line holds `marker` (orphaned copies too)."""
    if not os.path.isdir("/proc/self"):
        return []
    return [int(name) for name in os.listdir("/proc")
            if name.isdigit() and int(name) != os.getpid() and marker in (_command_line(int(name)) or b"")
            and not zombie(int(name))]


EXEC_WAIT = 5.0  # an exec whose program must first be read from a busy disk
PF_EXITING, PF_KTHREAD = 0x4, 0x200000  # the flags field of /proc/PID/stat


def _command_line(pid):
    """/proc/PID/cmdline, or None if unreadable. An exec that has replaced the process's
    memory but not yet laid out its new arguments (often still so when Popen returns)
    shows an empty one: that is waited out (bounded), not taken for a stranger."""
    deadline = time.monotonic() + EXEC_WAIT
    while True:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            return None
        if cmdline or not _execing(pid) or time.monotonic() > deadline:
            return cmdline
        time.sleep(0.002)


def _execing(pid) -> bool:
    """Without a command line, is pid in an exec (not exiting, not a kernel thread)?"""
    fields = _stat(pid)
    try:
        return fields[0] not in (b"Z", b"X") and not int(fields[6]) & (PF_EXITING | PF_KTHREAD)
    except (IndexError, ValueError):
        return False


def _stat(pid):
    """The fields of /proc/PID/stat after the command name: state first, flags 7th."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()
    except OSError:
        return []


def terminate(pids, grace=5.0):
    """SIGTERM each (its whole process group when it leads one), SIGKILL after grace."""
    pids = [pid for pid in pids if valid_pid(pid)]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        for pid in pids:
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.05)
        pids = [pid for pid in pids if alive(pid)]
        if not pids:
            return


def zombie(pid) -> bool:
    """Exited but not yet reaped (an orphan waits for init to reap it)."""
    return _stat(pid)[:1] == [b"Z"]


def answers(url, timeout=2.0, token=None) -> bool:
    """Does http://host:port/path answer 2xx (sent the token, if any)?"""
    code = http_status(url, timeout, token)
    return code is not None and 200 <= code < 300


def reaches(url, handshake="healthcheck", token=None, timeout=2.0) -> bool:
    """Does the service at url answer its handshake and, with a token, accept it? A
    service started again elsewhere on the same port has another token, and its
    /healthcheck may answer without one: a private path tells (401 or not)."""
    if not answers(f"{url}/{handshake}", timeout, token):
        return False
    return token is None or http_status(f"{url}/.seamless-token-check", timeout, token) not in (None, 401, 403)


def http_status(url, timeout=2.0, token=None):
    """The status code of GET url, or None when nothing answers. (A raw request:
    urllib would cost more to import than the whole check.)"""
    import socket

    rest = url.split("://", 1)[-1]
    hostport, _, path = rest.partition("/")
    host_, _, port = hostport.rpartition(":")
    host_ = host_.strip("[]")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    try:
        with socket.create_connection((host_, int(port)), timeout=timeout) as sock:
            sock.sendall(f"GET /{path} HTTP/1.0\r\nHost: {hostport}\r\n{auth}\r\n".encode())
            status = sock.recv(64)
    except (OSError, ValueError):
        return None
    if status[:7] != b"HTTP/1." or not status[9:12].isdigit():
        return None
    return int(status[9:12])


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
    data["alive"] = runs(data.get("pid"), service_marker(path))
    if data.get("token_file"):  # the client needs it to talk to the service
        data["token"] = read_token(token_path(key))
    return data


def handshake(key, path="healthcheck", port_name="port"):
    """Does the service answer its handshake (on `port`, or another port of its status
    file), asked from its own host?"""
    data = read_json(status_path(key)) or {}
    port = data.get(port_name) if port_name == "port" or port_name.endswith(("_port", "-port")) else None
    if not valid_port(port):
        return False
    token = read_token(token_path(key)) if data.get("token_file") and port_name == "port" else None
    return answers(f"{url_of(reachable(data.get('network_interface')), port)}/{path}", token=token)


def valid_port(port) -> bool:
    return type(port) is int and 0 < port < 65536


def reachable(interface):
    """The address to dial for a service bound to `interface`."""
    return "127.0.0.1" if interface in (None, "", "0.0.0.0", "localhost", "::") else interface


def url_of(hostname, port, protocol=None):
    """protocol://hostname:port, HTTP unless told otherwise (a Dask scheduler: tcp)."""
    host_ = f"[{hostname}]" if ":" in hostname else hostname
    return f"{protocol or 'http'}://{host_}:{port}"


def start(spec):
    """Spawn the service (detached) and write its `starting` status; return the status,
    with "started": true. Two clients starting the same key at once start it once: the
    second gets the first's status (under the lock a live service is never replaced,
    and stray copies of a dead one are stopped first). An argument TOKEN_FILE becomes
    the path of a fresh random token, so that only this user can use the service."""
    import fcntl

    key = check_key(spec["key"])
    workdir = check_workdir(spec["workdir"])
    status_file = status_path(key)
    token_file = token_path(key) if "TOKEN_FILE" in spec["argv"] else None
    placeholders = {"STATUS_FILE": status_file, "TOKEN_FILE": token_file}
    argv = [placeholders[a] if a in placeholders else os.path.expanduser(a) if a.startswith("~/") else a
            for a in spec["argv"]]
    conda = spec.get("conda")
    argv[0] = _program(argv[0], must_exist=not conda)
    host = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--host"), "127.0.0.1")
    command = _conda_wrap(conda, argv) if conda else argv
    private_dir(os.path.join(launch_dir(), "server"))
    os.makedirs(workdir, exist_ok=True)
    with open(os.open(lock_path(key), os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = inspect(key)
        if current and current["alive"] and current.get("status") in ("starting", "running"):
            return current
        terminate(processes_of(service_marker(status_file)))  # copies the file no longer names (a corrupt or replaced file)
        for stale in (status_file, token_path(key)):
            if os.path.exists(stale):
                os.unlink(stale)
        if token_file:
            import secrets

            atomic_write(token_file, secrets.token_urlsafe(32) + "\n", mode=0o600)
        log_flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND  # no write lands on another's
        with open(os.open(log_path(key), log_flags, 0o600), "wb") as log:
            try:
                proc = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise HostError(f"cannot start {argv[0]}: {exc.strerror} (is it installed on this host?)") from None
        status = {"key": key, "tool": spec.get("tool"), "status": "starting", "pid": proc.pid, "uid": os.getuid(),
                  "command": shlex.join(argv), "workdir": workdir, "log": log_path(key), "network_interface": host,
                  "parameters": spec.get("parameters") or {}}
        if token_file:
            status["token_file"] = token_file
        status.update({k: spec[k] for k in ("protocol", "stop_grace") if spec.get(k) is not None})
        atomic_write(status_file, json.dumps(status, indent=2) + "\n", mode=0o600)
    return {**status, "started": True}


def check_workdir(workdir):
    """An absolute path (after ~ expansion) without '..': a service never lands elsewhere."""
    expanded = os.path.expanduser(str(workdir))
    if not os.path.isabs(expanded) or ".." in expanded.split(os.sep):
        raise HostError(f"workdir {workdir!r} must be an absolute path (or start with ~/) without '..'")
    return expanded


def _program(name, must_exist=True):
    """A bare program name, found on PATH or next to this tool (a venv's bin)."""
    if os.sep in name:
        found = name if os.access(name, os.X_OK) else None
    else:
        found = shutil.which(name)
        beside = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), name)
        if not found and os.access(beside, os.X_OK):
            found = beside
    if not found and must_exist:
        raise HostError(f"cannot start {name}: not found on this host (is seamless installed there?)")
    return found or name


def _conda_wrap(env, argv):
    """bash activates the environment, then execs argv given as arguments (never as text)."""
    from seamless.conda import profile_script

    script = profile_script()
    if script is None:
        raise HostError(f"conda environment {env!r} requested, but conda is not found on this host "
                        "(set CONDA_ROOT or put conda on PATH)")
    activate = f"source {shlex.quote(script)} && conda activate {shlex.quote(env)} && exec \"$@\""
    return ["bash", "-c", activate, "seamless-service", *argv]


MAX_GRACE = 120.0


def stop(key, only_pid=None, grace=5.0):
    """Stop the service (and any stray copy of it); the status becomes stale. True if
    one ran, False if it is known here but was not running, None if it is unknown.
    With only_pid, only that process: a service someone just started instead is spared."""
    path = status_path(key)
    data = read_json(path)
    pid = data.get("pid") if data else None
    marker = service_marker(path)
    if data and type(data.get("stop_grace")) in (int, float) and 0 < data["stop_grace"] <= MAX_GRACE:
        grace = data["stop_grace"]  # a service that must first wind down (a Dask cluster's batch jobs)
    if only_pid not in (None, "None"):
        if str(pid) != str(only_pid) or not runs(pid, marker):
            return False
        pids = [pid]
    else:
        pids = sorted(set(processes_of(marker)) | ({pid} if runs(pid, marker) else set()))
    terminate(pids, grace)
    if data is not None:
        data["status"] = "stale"
        atomic_write(path, json.dumps(data, indent=2) + "\n", mode=0o600)
    elif not pids and not os.path.exists(path):
        return None
    return bool(pids)


def remove(key):
    """Delete the status file and log (stopping the service first)."""
    stop(key)
    found = False
    for path in (status_path(key), log_path(key), token_path(key), lock_path(key), *job_logs(key)):
        if os.path.exists(path):
            os.unlink(path)
            found = found or path != lock_path(key)
    return found


def job_logs(key):
    """The logs of a service's batch jobs: <key>.log-<job id>.out and .err."""
    directory, prefix = os.path.dirname(log_path(key)), os.path.basename(log_path(key)) + "-"
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names
            if n.startswith(prefix) and n.endswith((".out", ".err")) and n[len(prefix):-4].isdigit()]


def logs(key, tail=None):
    try:
        with open(log_path(key), errors="replace") as f:
            text = f.read()
    except OSError:
        raise HostError(f"{key}: no log (never launched here, or removed)") from None
    if tail is not None:
        text = "".join(text.splitlines(keepends=True)[-tail:]) if int(tail) > 0 else ""
    return text


def ps():
    """One row per known service, with its live status."""
    rows = []
    directory = os.path.join(launch_dir(), "server")
    if not os.path.isdir(directory):
        return rows
    for name in sorted(os.listdir(directory)):
        key = name[:-5]
        if not name.endswith(".json") or not valid_key(key):
            continue  # not ours (a copy made by hand, an editor's backup)
        data = inspect(key)
        if data is None:
            rows.append({"key": key, "status": "unreadable", "pid": None, "port": None, "alive": False})
            continue
        status = data.get("status")
        if status in ("running", "starting") and not data["alive"]:
            status = "stale"  # exited (killed, crashed): the next launch starts it again
        row = {"key": key, "status": status, "pid": data.get("pid"), "port": data.get("port"),
               "tool": data.get("tool"), "workdir": data.get("workdir"), "alive": data["alive"]}
        row.update({name: value for name, value in data.items()  # a dashboard_port, say
                    if name.endswith(("_port", "-port")) and valid_port(value)})
        if status == "running" and valid_port(data.get("port")):  # a stopped service has no address
            row["url"] = url_of(reachable(data.get("network_interface")), data["port"], data.get("protocol"))
        rows.append(row)
    return rows


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
}
