"""A private OpenSSH server on 127.0.0.1 for the launcher's tests: a fake cluster frontend.

start() generates host and user keys, starts sshd (key auth only) on a free port, and
adds a Host alias to the user's real ~/.ssh/config (ssh reads the passwd home, not
$HOME) through one marked Include line; stop() undoes all of it. The frontend keeps its
service state in `<dir>/frontend-launch` (SetEnv SEAMLESS_LAUNCH_DIR), not in ~/.seamless.
"""

import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import time

SSHD = "/usr/sbin/sshd"
# per test run, so that two suites running at once on one machine each reach their own sshd
ALIAS = f"seamless-test-frontend-{os.getpid()}"
REFUSING = f"seamless-test-refusing-{os.getpid()}"


def available():
    return os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")


class Sshd:
    def __init__(self, directory):
        self.dir = str(directory)
        self.proc = None
        self.user_config = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".ssh", "config")
        self.include = f"Include {self.dir}/ssh_config  # seamless tests"
        self.launch_dir = pathlib.Path(self.dir) / "frontend-launch"  # the frontend's SEAMLESS_LAUNCH_DIR

    def start(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        for name in ("host_key", "user_key"):
            path = os.path.join(self.dir, name)
            if not os.path.exists(path):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
        shutil.copy(os.path.join(self.dir, "user_key.pub"), os.path.join(self.dir, "authorized_keys"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        user = pwd.getpwuid(os.getuid()).pw_name
        with open(os.path.join(self.dir, "sshd_config"), "w") as f:
            f.write(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.dir}/host_key\n"
                    f"PidFile {self.dir}/sshd.pid\nAuthorizedKeysFile {self.dir}/authorized_keys\n"
                    "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                    f"PermitRootLogin prohibit-password\nAllowUsers {user}\nUsePAM no\nStrictModes no\n"
                    "AllowTcpForwarding yes\nX11Forwarding no\nPrintMotd no\nMaxStartups 100:30:200\n"
                    "MaxSessions 50\nAcceptEnv SEAMLESS_LAUNCH_DIR\n")
        with socket.socket() as s:  # a port nobody listens on: the refusing frontend
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        common = (f"    HostName 127.0.0.1\n    User {user}\n    IdentityFile {self.dir}/user_key\n"
                  f"    SetEnv SEAMLESS_LAUNCH_DIR={self.dir}/frontend-launch\n    IdentitiesOnly yes\n    BatchMode yes\n    StrictHostKeyChecking no\n"
                  f"    UserKnownHostsFile {self.dir}/known_hosts\n    LogLevel ERROR\n    ConnectTimeout 5\n")
        with open(os.path.join(self.dir, "ssh_config"), "w") as f:
            f.write(f"Host {ALIAS}\n    Port {self.port}\n{common}Host {REFUSING}\n    Port {closed}\n{common}")
        if os.getuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", os.path.join(self.dir, "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "sshd.log"), "w"))
        self._include(True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if subprocess.run(["ssh", ALIAS, "true"], capture_output=True, timeout=15).returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("test sshd did not accept a login: " + open(os.path.join(self.dir, "sshd.log")).read())

    def _include(self, add):
        os.makedirs(os.path.dirname(self.user_config), mode=0o700, exist_ok=True)
        lines = []
        if os.path.exists(self.user_config):
            with open(self.user_config) as f:
                lines = [line for line in f.read().splitlines() if line != self.include]
        if add:
            lines.insert(0, self.include)  # before any Host block, so it applies
        with open(self.user_config, "w") as f:
            f.write("\n".join(lines) + ("\n" if lines else ""))
        os.chmod(self.user_config, 0o600)

    def stop(self):
        self._include(False)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
