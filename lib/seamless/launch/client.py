"""Find a running service or start it, here or on a frontend, and remember how to reach it.

    connection = ensure(spec)    # {"key", "url", "hostname", "port", ...}
    connection = find(spec)      # the same if it runs, else None: steps 1 and 2, nothing stopped

1. A recorded connection (client/<key>.json, 0600) whose handshake answers is reused.
2. Otherwise the service host's status file is inspected: a live service that answers
   its handshake is reused; one that is silent or stuck starting is stopped.
3. Otherwise the service is started (once, even when clients race), and waited for
   (bounded; on failure the error carries the tail of its log, and what was started
   is stopped).
With tunnel: true the ports are forwarded through `ssh -N -L`, watched by a small
process that ends the tunnel when the service is gone. client/<key>.host remembers
which frontend a key lives on, so stop, logs and rm find it later.

A service whose command passes --token-file TOKEN_FILE gets a fresh random token at
each start, made on its host; every client that finds it gets a copy of that token in
client/<key>.token (0600), named by the connection's token_file.

The handshake is an HTTP path asked on the service's `port`, or on another port of its
status file (handshake_port: a Dask scheduler speaks tcp on `port` and answers
/health on `dashboard_port`). A spec with same_parameters reuses a running service only
if it was started with the same parameters (a queue's settings, say).
"""

import json
import os
import socket
import subprocess
import sys
import time

from seamless.files import atomic_write
from seamless.launch import host
from seamless.launch.executor import LaunchError, LocalExecutor, SshExecutor, executor_for

START_TIMEOUT = 30.0
STALE_STARTING = 30.0
SILENT_RUNNING = 10.0  # a live service that does not answer for this long is stopped
TUNNEL_TIMEOUT = 15.0
TUNNEL_MARKER = b"seamless.launch.tunnel"


def client_dir():
    return host.private_dir(os.path.join(host.launch_dir(), "client"))


def client_path(key, suffix=".json"):
    return os.path.join(host.launch_dir(), "client", host.check_key(key) + suffix)


def read_client(key):
    """The recorded connection, or None (a file that is not one is removed)."""
    connection = host.read_json(client_path(key))
    if connection is not None and not _well_formed(connection):
        drop_client(key, {})
        return None
    return connection


def _well_formed(connection):
    return (isinstance(connection.get("url"), str) and isinstance(connection.get("hostname"), str)
            and host.valid_port(connection.get("port"))
            and isinstance(connection.get("ssh_hostname", ""), str)
            and isinstance(connection.get("token_file", ""), str))


def wants_token(spec):
    return "TOKEN_FILE" in spec["argv"]


def token_of(connection):
    return host.read_token(connection["token_file"]) if connection.get("token_file") else None


def find(spec):
    """The connection to the running service of `spec`, or None; nothing is started or
    stopped (a recorded connection that does not serve it is forgotten)."""
    return _find(spec)[0]


def _find(spec):
    """find()'s answer, and the executor and status file that ensure() goes on from."""
    key = host.check_key(spec["key"])
    handshake = _handshake(spec)
    client = read_client(key)
    token = token_of(client) if client else None
    if client and client.get("workdir", spec["workdir"]) == spec["workdir"] and bool(token) == wants_token(spec) \
            and _same_parameters(client, spec) and answers_here(client, handshake, token):
        return client, None, None
    if client:
        drop_client(key, client)
    executor = executor_for(spec)
    status = executor.call("inspect", key)
    if status and _same_setup(status, spec) and _usable(executor, status, key, handshake):
        remember_host(key, executor)
        return _connect(spec, status, executor, handshake), executor, status
    return None, executor, status


def ensure(spec):
    found, executor, status = _find(spec)
    if found is not None:
        return found
    key, handshake = spec["key"], _handshake(spec)
    remember_host(key, executor)  # the frontend answers: stop, logs and rm will find the key there
    if status and status.get("alive") and not _same_setup(status, spec):
        # the configuration moved this service (another bufferdir, say), or changed its
        # token setting: the old one must go
        executor.call("stop", key, status.get("pid"))
        status = None
    if status and status.get("alive") and status.get("status") in ("starting", "running"):
        # not usable yet (find): someone else is starting it, or it is busy; give it time
        # before calling it silent
        patience = SILENT_RUNNING if status["status"] == "running" else STALE_STARTING - status.get("age", 0)
        if patience > 0:
            try:
                return _connect(spec, _wait(executor, spec, handshake, patience), executor, handshake)
            except LaunchError:
                pass
        executor.call("stop", key, status.get("pid"))  # silent, or stuck starting
    # start replaces a dead status, or returns the one another client started meanwhile
    started = executor.call("start", _portable(spec) if isinstance(executor, SshExecutor) else spec)
    try:
        status = _wait(executor, spec, handshake)
    except (LaunchError, KeyboardInterrupt):
        if started.get("started"):
            executor.call("stop", key, started.get("pid"))  # nothing half-started stays behind
        raise
    return _connect(spec, status, executor, handshake)


def _handshake(spec):
    return spec.get("handshake") or "healthcheck", spec.get("handshake_port") or "port"


def _same_setup(status, spec):
    """Does the running service serve the workdir asked for (`~/x` was expanded on its
    host), with a token if and only if one is wanted (and still there to hand out), and
    with the parameters asked for when they define it?"""
    if bool(status.get("token_file")) != wants_token(spec) or (status.get("token_file") and not status.get("token")):
        return False
    if not _same_parameters(status, spec):
        return False
    wanted, running = str(spec["workdir"]).rstrip("/"), str(status.get("workdir", "")).rstrip("/")
    if wanted.startswith("~/"):
        return running.endswith(wanted[1:])
    return running == wanted or not running


def _same_parameters(found, spec):
    return not spec.get("same_parameters") or found.get("parameters") == (spec.get("parameters") or {})


def _portable(spec):
    return json.dumps({k: v for k, v in spec.items() if k in ("key", "tool", "workdir", "argv", "conda",
                                                                 "parameters", "protocol", "stop_grace")})


def _asks(executor, key, handshake):
    """The service host's handshake (an older frontend knows only the `port` one)."""
    path, port_name = handshake
    return executor.call("handshake", key, path, *([port_name] if port_name != "port" else []))


def answers_here(connection, handshake, token=None, timeout=2.0):
    """Does the service of a connection answer its handshake from this side?"""
    path, port_name = handshake
    port = connection.get(port_name)
    if not host.valid_port(port):
        return False
    url = host.url_of(connection["hostname"], port)
    if port_name == "port":
        return host.reaches(url, path, token, timeout)
    return host.answers(f"{url}/{path}", timeout)  # another port: not the one the token guards


def _usable(executor, status, key, handshake):
    return (status.get("status") == "running" and status.get("alive") and host.valid_port(status.get("port"))
            and _asks(executor, key, handshake))


def _wait(executor, spec, handshake, timeout=None):
    key = spec["key"]
    pause = 0.05 if isinstance(executor, LocalExecutor) else 0.3
    deadline = time.monotonic() + (timeout or START_TIMEOUT)
    status = {}
    while time.monotonic() < deadline:
        status = executor.call("inspect", key) or {}
        state = status.get("status")
        if state == "running" and host.valid_port(status.get("port")) and _asks(executor, key, handshake):
            return status
        if state in ("failed", "stale", "stopped") or (status and not status.get("alive")):
            break
        time.sleep(pause)
    exit_by = time.monotonic() + 2.0  # a failing service writes its status first, then its last words
    while status.get("status") == "failed" and status.get("alive") and time.monotonic() < exit_by:
        time.sleep(pause)
        status = executor.call("inspect", key) or {}
    try:
        tail = executor.call("logs", key, 5).strip().replace("\n", " | ")
    except LaunchError:
        tail = ""
    what = f"{spec.get('tool') or key} did not start on {executor.where}"
    log = f"(log: {status.get('log', '?')})"
    import re

    busy = re.search(r"no free port in (\d+-\d+)( on [^ ]+)?", tail)
    if busy and spec.get("ports_from"):  # the range comes from the cluster definition, not an option
        raise LaunchError(f"{what}: every port of {busy[1]} is busy{busy[2] or ''}; choose a range with free "
                          f"ports in {spec['ports_from']} {log}")
    if not tail:
        tail = f"no output (status {status.get('status') or 'missing'}{'' if status.get('alive') else ', not running'})"
    raise LaunchError(f"{what}: {tail} {log}")


def _connect(spec, status, executor, handshake):
    """The client file: where to reach the service from here, in upstream's shape
    (hostname, port, every *_port of the status file, parameters, ssh_hostname; with a
    tunnel, each port forwarded to a local one and the originals as tunneled-*)."""
    key = spec["key"]
    ports = {name: value for name, value in status.items()
             if (name == "port" or name.endswith(("_port", "-port"))) and host.valid_port(value)}
    parameters = status.get("parameters")
    connection = {"key": key, "tool": spec.get("tool"), "workdir": spec["workdir"], **ports,
                  "parameters": parameters if isinstance(parameters, dict) else {}}
    if spec.get("protocol"):
        connection["protocol"] = spec["protocol"]
    if status.get("token"):  # a copy here: the service host's file may be on another machine
        connection["remote_token_file"] = status.get("token_file")  # where it is on the service host
        connection["token_file"] = client_path(key, ".token")
        client_dir()
        atomic_write(connection["token_file"], status["token"] + "\n", mode=0o600)
    if not executor.ssh_host:
        connection["hostname"] = host.reachable(status.get("network_interface"))
        return _record(connection, handshake, executor)
    connection["ssh_hostname"] = executor.ssh_host
    if not spec.get("tunnel"):
        connection["hostname"] = _frontend_address(spec, status, executor)
        return _record(connection, handshake, executor)
    import fcntl

    # one tunnel per service, however many clients connect at once
    with open(os.open(os.path.join(client_dir(), key + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read_client(key)
        if current and answers_here(current, handshake, token_of(current)):
            return current
        target = host.reachable(status.get("network_interface"))
        local, tunnel_pid = start_tunnel(executor, target, ports, key, handshake, token_of(connection))
        connection.update(local, hostname="127.0.0.1", tunnel_pid=tunnel_pid, **{"tunneled-host": target})
        connection.update({f"tunneled-{name}": port for name, port in ports.items()})
        return _record(connection, handshake, executor)


def _frontend_address(spec, status, executor):
    """Where to dial a service on a frontend without a tunnel: the frontend's hostname,
    else the address the service listens on, if that is not the frontend's loopback."""
    interface = status.get("network_interface")
    if spec.get("hostname"):
        return spec["hostname"]
    if host.reachable(interface) != "127.0.0.1":
        return interface
    raise LaunchError(f"{spec['key']} runs on {executor.where}, listening on its loopback only; "
                      "set the frontend's hostname and network_interface, or use tunnel: true")


def _record(connection, handshake, executor):
    connection["url"] = host.url_of(connection["hostname"], connection["port"], connection.get("protocol"))
    if not answers_here(connection, handshake, token_of(connection), timeout=10):
        stop_tunnel(connection)
        port = connection.get("tunneled-port", connection["port"])
        raise LaunchError(f"{connection['key']} runs on {executor.where} (port {port}) but does not answer "
                          f"from here at {connection['url']}; use tunnel: true, or a hostname this machine can reach")
    atomic_write(os.path.join(client_dir(), connection["key"] + ".json"), json.dumps(connection, indent=2) + "\n",
                 mode=0o600)
    return connection


def remember_host(key, executor):
    """Note which frontend runs `key` (before anything is started there)."""
    path = client_path(key, ".host")
    if executor.ssh_host:
        client_dir()
        atomic_write(path, executor.ssh_host + "\n", mode=0o600)
    elif os.path.exists(path):
        os.unlink(path)


# --- tunnels ------------------------------------------------------------------------------


def start_tunnel(executor, target, ports, key, handshake, token=None):
    """Forward a free local port to each target:port on the frontend, all through one ssh;
    ({name: local port}, tunnel pid). It is up when the handshake answers through it."""
    for _ in range(3):
        local = {name: _free_port() for name in ports}
        forwards = [f"{local[name]}:{target}:{port}" for name, port in ports.items()]
        argv = [sys.executable, "-m", "seamless.launch.tunnel", executor.ssh_host, key, *forwards]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + TUNNEL_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if answers_here({"hostname": "127.0.0.1", **local}, handshake, token, timeout=1):
                return local, proc.pid
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
    raise LaunchError(f"cannot forward a port to {target}:{ports['port']} through ssh {executor.ssh_host}")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_tunnel(connection):
    """End the tunnel of a connection (only if its pid still is a tunnel)."""
    pid = connection.get("tunnel_pid")
    if host.runs(pid, TUNNEL_MARKER):
        host.terminate([pid], grace=2.0)


def drop_client(key, connection=None):
    connection = read_client(key) if connection is None else connection
    if connection:
        stop_tunnel(connection)
    for suffix in (".json", ".token"):
        try:
            os.unlink(client_path(key, suffix))
        except FileNotFoundError:
            pass


def known(key):
    """Does this side have a record of `key` (a connection, or the frontend it is on)?"""
    return any(os.path.exists(client_path(key, suffix)) for suffix in (".json", ".host"))


def forget(key):
    """After rm: nothing about `key` is left on this side either."""
    drop_client(key)
    for suffix in (".host", ".lock"):
        try:
            os.unlink(client_path(key, suffix))
        except FileNotFoundError:
            pass


def executor_of(key):
    """Where a known service runs: its client file, else the recorded frontend, else here."""
    connection = read_client(key)
    ssh_host = connection.get("ssh_hostname") if connection else None
    if not ssh_host:
        try:
            with open(client_path(key, ".host")) as f:
                ssh_host = f.read().strip()
        except OSError:
            pass
    return SshExecutor(ssh_host) if ssh_host else LocalExecutor()
