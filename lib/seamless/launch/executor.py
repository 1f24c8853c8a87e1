"""Running the launcher's host operations here, or on a frontend over ssh.

Over ssh, every operation of one launch shares one multiplexed connection
(ControlMaster), runs `seamless-launch _host OP ...` on the frontend (or
$SEAMLESS_LAUNCH_REMOTE), and answers in JSON. Every argument crossing ssh is quoted;
BatchMode and a connect timeout turn a frontend that refuses ssh into an error, not
a prompt or a hang.
"""

import json
import os
import shlex
import subprocess
import tempfile

from seamless.launch import host


class LaunchError(RuntimeError):
    pass


class LocalExecutor:
    where = "this machine"
    ssh_host = None

    def call(self, op, *args):
        try:
            return host.OPS[op](*args)
        except host.HostError as exc:
            raise LaunchError(str(exc)) from None


SSH_HOST_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@:[]")


def check_ssh_host(ssh_host):
    """A host name, address, user@host or ~/.ssh/config alias; never an ssh option."""
    if not isinstance(ssh_host, str) or not ssh_host or ssh_host.startswith("-") or not set(ssh_host) <= SSH_HOST_CHARS:
        raise LaunchError(f"invalid ssh host {ssh_host!r}: a host name, address, user@host or ~/.ssh/config alias")
    return ssh_host


def control_dir():
    """Where the shared ssh connections' sockets live: a directory only this user can
    use (in a shared /tmp, another user must not be able to plant a socket)."""
    import stat

    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = os.path.join(base, f"seamless-ssh-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise LaunchError(f"{path} is not a private directory of this user; remove it and try again")
    return path


class SshExecutor:
    def __init__(self, ssh_host):
        self.ssh_host = check_ssh_host(ssh_host)
        self.where = ssh_host
        control = control_dir()
        self.options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        self.multiplex = ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/%C", "-o", "ControlPersist=20"]
        self.remote = shlex.split(os.environ.get("SEAMLESS_LAUNCH_REMOTE", "seamless-launch"))

    def ssh_argv(self, *extra, multiplex=True):
        return ["ssh", *self.options, *(self.multiplex if multiplex else ()), *extra, self.ssh_host]

    def call(self, op, *args):
        command = shlex.join([*self.remote, "_host", op, *map(str, args)])
        try:
            proc = subprocess.run([*self.ssh_argv(), "--", command], capture_output=True, text=True,
                                  timeout=120, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LaunchError(f"ssh {self.ssh_host}: no answer within 120 s") from None
        except OSError as exc:
            raise LaunchError(f"cannot run ssh: {exc.strerror}") from None
        err = proc.stderr.strip().splitlines()
        last = err[-1] if err else ""
        if proc.returncode == 255:
            raise LaunchError(f"cannot ssh to {self.ssh_host}: {last or 'connection failed'} (check that "
                              f"`ssh {self.ssh_host} true` works without a password prompt: a key in "
                              "ssh-agent or ~/.ssh/config; or set ssh_hostname in clusters.yaml)")
        if proc.returncode == 127:
            raise LaunchError(f"{self.remote[0]} is not installed on {self.ssh_host} (install seamless there, "
                              "or set SEAMLESS_LAUNCH_REMOTE to its path)")
        if proc.returncode != 0:
            raise LaunchError(f"on {self.ssh_host}: {last.split('error: ', 1)[-1] or 'failed'}")
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise LaunchError(f"on {self.ssh_host}: unexpected answer {proc.stdout[:200]!r}") from None


def _local_hosts():
    import socket

    return ("localhost", "127.0.0.1", "::1", socket.gethostname())


LOCAL_HOSTS = _local_hosts()


def executor_for(spec):
    """Ssh when the frontend is another host (or ssh_hostname says so), else local."""
    ssh_host = spec.get("ssh_hostname")
    hostname = spec.get("hostname")
    if ssh_host or (hostname and hostname not in LOCAL_HOSTS):
        return SshExecutor(ssh_host or hostname)
    return LocalExecutor()
