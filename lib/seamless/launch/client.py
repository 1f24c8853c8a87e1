"""Find a running service or start it, here or on a frontend, and remember how to reach it.

    connection = ensure(spec)    # {"key", "url", "hostname", "port", ...}

1. A recorded connection (client/<key>.json, 0600) whose handshake answers is reused.
2. Otherwise the service host's status file is inspected: a live service that answers
   its handshake is reused; one that is dead, silent, failed or stuck starting is
   cleaned up.
3. Otherwise the service is started (once), and waited for (bounded; on failure the
   error carries the tail of its log).
With tunnel: true the port is forwarded through `ssh -N -L`, watched by a small
process that ends the tunnel when the service is gone.
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
TUNNEL_TIMEOUT = 15.0


def client_path(key):
    return os.path.join(host.launch_dir(), "client", host.check_key(key) + ".json")


def read_client(key):
    return host.read_json(client_path(key))


def ensure(spec):
    key = host.check_key(spec["key"])
    handshake = spec.get("handshake") or "healthcheck"
    client = read_client(key)
    if client and host.answers(f"{client['url']}/{handshake}"):
        return client
    if client:
        drop_client(key, client)
    executor = executor_for(spec)
    status = executor.call("inspect", key)
    if status and _usable(executor, status, key, handshake):
        return _connect(spec, status, executor, handshake)
    if status and status.get("status") == "starting" and status.get("alive") and status.get("age", 0) < STALE_STARTING:
        status = _wait(executor, spec, handshake)  # someone else is starting it: wait for them
        return _connect(spec, status, executor, handshake)
    if status and status.get("alive"):
        executor.call("stop", key, status.get("pid"))  # silent, or stuck starting
    # start replaces a dead status, or returns the one another client started meanwhile
    executor.call("start", _portable(spec) if isinstance(executor, SshExecutor) else spec)
    status = _wait(executor, spec, handshake)
    return _connect(spec, status, executor, handshake)


def _portable(spec):
    return json.dumps({k: v for k, v in spec.items() if k in ("key", "tool", "workdir", "argv", "conda",
                                                                 "parameters")})


def _usable(executor, status, key, handshake):
    return (status.get("status") == "running" and status.get("alive")
            and executor.call("handshake", key, handshake))


def _wait(executor, spec, handshake):
    key = spec["key"]
    pause = 0.05 if isinstance(executor, LocalExecutor) else 0.3
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        status = executor.call("inspect", key) or {}
        state = status.get("status")
        if state == "running" and executor.call("handshake", key, handshake):
            return status
        if state in ("failed", "stale") or (status and not status.get("alive")):
            break
        time.sleep(pause)
    try:
        tail = executor.call("logs", key, 5).strip().replace("\n", " | ")
    except LaunchError:
        tail = ""
    raise LaunchError(f"{spec.get('tool') or key} did not start on {executor.where}: "
                      f"{tail or 'no output'} (log: {status.get('log', '?') if status else '?'})")


def _connect(spec, status, executor, handshake):
    """The client file: where to reach the service from here, in upstream's shape
    (hostname, port, every *_port of the status file, parameters, ssh_hostname; with a
    tunnel, each port forwarded to a local one and the originals as tunneled-*)."""
    key = spec["key"]
    ports = {name: value for name, value in status.items()
             if (name == "port" or name.endswith(("_port", "-port"))) and isinstance(value, int)}
    connection = {"key": key, "tool": spec.get("tool"), **ports, "parameters": status.get("parameters") or {}}
    if executor.ssh_host:
        connection["ssh_hostname"] = executor.ssh_host
    if spec.get("tunnel") and executor.ssh_host:
        target = host.reachable(status.get("network_interface"))
        local, tunnel_pid = start_tunnel(executor, target, ports, key, handshake)
        connection.update(local, hostname="127.0.0.1", tunnel_pid=tunnel_pid, **{"tunneled-host": target})
        connection.update({f"tunneled-{name}": port for name, port in ports.items()})
    else:
        connection["hostname"] = host.reachable(spec.get("hostname") or status.get("network_interface"))
    connection["url"] = f"http://{connection['hostname']}:{connection['port']}"
    if not host.answers(f"{connection['url']}/{handshake}", timeout=10):
        stop_tunnel(connection)
        raise LaunchError(f"{key} runs on {executor.where} (port {status['port']}) but does not answer from here "
                          f"at {connection['url']}; use tunnel: true, or a hostname this machine can reach")
    path = client_path(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, json.dumps(connection, indent=2) + "\n", mode=0o600)
    return connection


# --- tunnels ------------------------------------------------------------------------------


def start_tunnel(executor, target, ports, key, handshake):
    """Forward a free local port to each target:port on the frontend, all through one ssh;
    ({name: local port}, tunnel pid)."""
    for _ in range(3):
        local = {name: _free_port() for name in ports}
        forwards = [f"{local[name]}:{target}:{port}" for name, port in ports.items()]
        argv = [sys.executable, "-m", "seamless.launch.tunnel", executor.ssh_host, key, *forwards]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + TUNNEL_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if host.answers(f"http://127.0.0.1:{local['port']}/{handshake}", timeout=1):
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
    pid = connection.get("tunnel_pid")
    if pid and host.alive(pid):
        try:
            os.killpg(int(pid), 15)
        except OSError:
            pass


def drop_client(key, connection=None):
    connection = connection or read_client(key)
    if connection:
        stop_tunnel(connection)
    try:
        os.unlink(client_path(key))
    except FileNotFoundError:
        pass


def executor_of(key):
    """Where a known service runs: from its client file, else this machine."""
    connection = read_client(key)
    if connection and connection.get("ssh_hostname"):
        return SshExecutor(connection["ssh_hostname"])
    return LocalExecutor()
