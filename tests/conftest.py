"""Fixtures: real servers on free loopback ports, started through the status-file handshake."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

pytest_plugins = ["batchsystems"]


@pytest.fixture(autouse=True)
def private_home(tmp_path_factory, monkeypatch):
    """Every test gets its own HOME and caches: no outcome may depend on what earlier runs
    (or the machine's user) left in ~/.cache, ~/.seamless or the environment."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("SEAMLESS_LAUNCH_DIR", str(home / ".seamless" / "launch"))
    for name in ("SEAMLESS_REMOTE_CLIENTS", "SEAMLESS_CACHE", "SEAMLESS_TOKEN_FILE", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)


def cache_env(tmp_path):
    """The environment for tools on a cache of their own in tmp_path (no SEAMLESS_* from outside)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    e["SEAMLESS_CACHE"] = str(tmp_path / "cache")
    return e


@pytest.fixture
def env(tmp_path):
    """cache_env(tmp_path); test files with an environment of their own define `env` themselves."""
    return cache_env(tmp_path)


@pytest.fixture
def work(tmp_path):
    """A working directory with data.txt (a, b, c)."""
    d = tmp_path / "work"
    d.mkdir()
    (d / "data.txt").write_text("a\nb\nc\n")
    return d


@pytest.fixture
def fresh_python(tmp_path, monkeypatch):
    """The Python API with empty caches, no configuration, in tmp_path; closed afterwards."""
    import seamless
    import seamless.config
    from seamless.cache import cache

    for name in list(os.environ):
        if name.startswith("SEAMLESS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    cache.clear()
    seamless.config._reset()
    yield
    seamless.close()
    seamless.config._reset()
    cache.clear()


def pytest_sessionfinish(session):
    """Stop what tests left running (services started through the launcher, their ssh
    tunnels): found by this session's temp directory or ssh aliases in their command line,
    so nothing outlives the run to meet a later one."""
    # whole words only: pytest-1/ must not match pytest-12, frontend-12 not frontend-123
    marks = [f"seamless-test-frontend-{os.getpid()} ", f"seamless-test-refusing-{os.getpid()} "]
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        marks.append(str(factory.getbasetemp()) + "/")
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace") + " "
        except OSError:
            continue
        if any(mark in cmdline for mark in marks):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass


class Service:
    def __init__(self, argv, status_file, env=None):
        self.argv = argv
        self.status_file = status_file
        with open(status_file, "w") as f:
            json.dump({"purpose": "test"}, f)
        self.log = f"{status_file}.log"  # a file, not a pipe: a chatty server never blocks
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv + ["--status-file", str(status_file)], env=env,
                                         stdout=subprocess.DEVNULL, stderr=log)
        self.status = self._wait()
        if self.status.get("status") != "running":
            self.stop()
            raise RuntimeError(f"{argv} failed to start: {self.status} {open(self.log).read()}")
        self.port = self.status["port"]
        self.url = f"http://127.0.0.1:{self.port}"

    def _wait(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.status_file) as f:
                    data = json.load(f)
                if data.get("status") in ("running", "failed"):
                    return data
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None:
                return {"status": "exited", "code": self.proc.returncode}
            time.sleep(0.02)
        return {"status": "timeout"}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self):
        self.proc.kill()
        self.proc.wait()


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: install the project first (tests/run.sh does)")
    return path


@pytest.fixture
def start_service(tmp_path):
    services = []
    counter = [0]

    def start(name, *args, env=None):
        counter[0] += 1
        status = tmp_path / f"status-{counter[0]}.json"
        argv = [name if os.path.isabs(name) else tool(name), *map(str, args)]
        if "--port" not in argv and "--port-range" not in argv:
            argv += ["--port", "0"]
        service = Service(argv, status, env=env)
        services.append(service)
        return service

    yield start
    for service in services:
        service.stop()


@pytest.fixture
def bufferdir(tmp_path):
    d = tmp_path / "buffers"
    d.mkdir()
    return d


@pytest.fixture
def hashserver(start_service, bufferdir):
    return start_service("seamless-hashserver", bufferdir, "--writable")


@pytest.fixture
def dbserver(start_service, tmp_path):
    return start_service("seamless-db", tmp_path / "seamless.db", "--writable")

