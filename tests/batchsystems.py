"""Real batch systems for the tests: session fixtures `slurm`, `pbs`, `oar` and `dask_python`.

Registered from conftest.py (`pytest_plugins = ["batchsystems"]`). Each system is started
once per session by the scripts in tests/batch/ (which install their Debian packages when
missing), with fresh state on free ports, and stopped at the session's end, also when tests
fail; a watchdog stops it should the session die without its teardown.

  slurm  a single-node SLURM; its jobs run as root. Needs root: skipped otherwise, and as
         root a start that fails is an error (CI runs as root and must run these tests).
  pbs    qsub/qdel/qstat of slurm-wlm-torque over that SLURM: sbatch reads the #PBS lines
         (-N, -q, -A, -l walltime=, -l select=1:ncpus=N:mem=M, ncpus becoming --mincpus).
  oar    a single-node OAR 2.5 whose jobs run as a non-root job user (OAR refuses root's).
         Its commands read the fixed /etc/oar/oar.conf, so one session at a time runs it
         on a machine (start-oar.sh waits for the others). Its state is in a fresh
         directory under the temp root that other users can enter (the job user, postgres
         and oar must: pytest's own tmp tree is private, and each pytest start makes it so
         again); the logs are copied into the session's tmp dir at the end.
  dask_python  a virtualenv's python made from Debian's /usr/bin/python3, readable by
         every user (Pythons under /root are not), with this checkout's project installed
         (not editable) and the Dask extras: `oar.job_user_python` is the same one.

Mark tests that run Dask clusters on these systems `@pytest.mark.batch_dask`:
SEAMLESS_TEST_BATCH_DASK=0 skips them (for speed; by default they run).
"""

import collections
import json
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
BATCH = HERE / "batch"
REPO = HERE.parent
DASK_PACKAGES = ["dask==2026.8.0", "distributed==2026.8.0", "dask-jobqueue==0.9.0", "bokeh>=3.1"]

Job = collections.namedtuple("Job", "id name state")


def wait_until(predicate, timeout=60.0, interval=0.2, what=None):
    """predicate()'s first true value, polled every `interval` s; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def _need_root(system):
    if os.geteuid() != 0:
        pytest.skip(f"{system} needs root (its daemons run jobs and switch users); CI runs the tests as root")


def _run_script(name, *args, env=None, timeout=1200):
    """Run tests/batch/NAME; its `export VAR=value` lines as a dict. A failure raises with
    the script's messages (which end with the tails of the daemons' logs)."""
    full_env = {**os.environ, "OWNER_PID": str(os.getpid()), **(env or {})}
    proc = subprocess.run(["bash", str(BATCH / name), *map(str, args)], env=full_env, cwd="/",
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"tests/batch/{name} {' '.join(map(str, args))} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr}")
    exports = {}
    for line in proc.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export "):].partition("=")
            exports[key] = value
    return exports


def _output(argv, env=None, timeout=30):
    return subprocess.run(argv, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=True).stdout


def pytest_configure(config):
    config.addinivalue_line("markers", "batch_dask: runs Dask clusters on the real batch systems "
                                       "(SEAMLESS_TEST_BATCH_DASK=0 skips)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SEAMLESS_TEST_BATCH_DASK", "1") == "0":
        skip = pytest.mark.skip(reason="SEAMLESS_TEST_BATCH_DASK=0")
        for item in items:
            if "batch_dask" in item.keywords:
                item.add_marker(skip)


# ---- SLURM and PBS ------------------------------------------------------------------

class Slurm:
    """A running SLURM: `env` (SLURM_CONF) is to be merged into a subprocess's environment."""

    wait_until = staticmethod(wait_until)

    def __init__(self, directory, exports):
        self.dir = pathlib.Path(directory)
        self.conf = exports["SLURM_CONF"]
        self.env = {"SLURM_CONF": self.conf}
        self.partition = exports["SLURM_TEST_PARTITION"]
        self.node = exports["SLURM_TEST_NODE"]
        self.cpus = int(exports["SLURM_TEST_CPUS"])
        self.memory = int(exports["SLURM_TEST_MEMORY_MB"])  # MB

    def run(self, argv, **kwargs):
        """subprocess.run(argv) with this cluster's environment."""
        kwargs["env"] = {**os.environ, **self.env, **(kwargs.get("env") or {})}
        return subprocess.run(argv, **kwargs)

    def squeue_jobs(self):
        """The jobs in the queue (pending, running, completing...): [Job(id, name, state)]."""
        out = _output(["squeue", "-h", "-o", "%i|%j|%T"], self.env)
        return [Job(*line.split("|", 2)) for line in out.splitlines() if line]

    def job(self, job_id):
        """scontrol's fields of a job ({"JobState": "COMPLETED", ...}; finished jobs stay
        for 5 minutes), or None if SLURM does not know it."""
        proc = self.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return None
        fields = {}
        for item in proc.stdout.split():
            key, sep, value = item.partition("=")
            if sep:
                fields[key] = value
        return fields


class Pbs(Slurm):
    """PBS commands over that SLURM: qsub, qdel, qstat (slurm-wlm-torque)."""

    def __init__(self, slurm):
        self.__dict__.update(slurm.__dict__)

    def qstat_jobs(self):
        """qstat's jobs: [Job(id, name, state)], state a PBS letter (Q, R, C...)."""
        jobs = []
        for line in _output(["qstat"], self.env).splitlines():
            parts = line.split()
            if len(parts) >= 6 and parts[0][:1].isdigit():
                jobs.append(Job(parts[0], parts[1], parts[4]))
        return jobs


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    _need_root("SLURM")
    directory = tmp_path_factory.mktemp("slurm")
    try:
        cluster = Slurm(directory, _run_script("start-slurm.sh", directory))
        yield cluster
    finally:
        _run_script("stop-slurm.sh", directory)


@pytest.fixture(scope="session")
def pbs(slurm):
    for name in ("qsub", "qdel", "qstat"):
        if shutil.which(name) is None:
            raise RuntimeError(f"{name} missing: start-slurm.sh installs slurm-wlm-torque (apt-get install slurm-wlm-torque)")
    cluster = Pbs(slurm)
    cluster.qstat_jobs()  # qstat talks to this SLURM (through the Perl API and SLURM_CONF)
    return cluster


# ---- a virtualenv every user can run ----------------------------------------------

class _DaskVenv:
    """Built at the first use, once per session."""

    def __init__(self, root, logdir):
        self.root = pathlib.Path(root)
        self.logdir = logdir
        self._python = None

    @property
    def python(self):
        if self._python is None:
            self._python = self._build()
        return self._python

    def _build(self):
        _run_script("ensure-packages.sh", self.logdir, "python3-venv")
        # a copy of the checkout: the clone may be private (CI's is under a 0700 directory),
        # and an in-tree build would leave build/ and *.egg-info in the worktree
        source = self.root / "src"
        shutil.copytree(REPO, source, ignore=_not_source, symlinks=True)
        venv = self.root / "venv"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        for argv in (["/usr/bin/python3", "-m", "venv", str(venv)],
                     [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                      str(source), *DASK_PACKAGES]):
            proc = subprocess.run(argv, env=env, cwd=self.root, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=1200)
            if proc.returncode != 0:
                raise RuntimeError(f"building the Dask virtualenv failed: {' '.join(argv)}\n{proc.stderr[-3000:]}")
        subprocess.run(["chmod", "-R", "a+rX", str(self.root)], check=True)
        return str(venv / "bin" / "python")


def _not_source(directory, names):
    skip = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis"}
    return [n for n in names if n in skip or n.endswith(".egg-info")
            or os.path.exists(os.path.join(directory, n, "pyvenv.cfg"))]  # any virtualenv


@pytest.fixture(scope="session")
def _public_root(tmp_path_factory):
    """A fresh directory that every user can enter; removed at the end. Under the temp root,
    unless that is private (TMPDIR inside a 0700 directory): then under /tmp."""
    base = tempfile.gettempdir()
    if not _enterable_by_all(base):
        base = "/tmp"
    root = pathlib.Path(tempfile.mkdtemp(prefix="seamless-test-batch-", dir=base))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _enterable_by_all(path):
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


@pytest.fixture(scope="session")
def _dask_venv(_public_root, tmp_path_factory):
    (_public_root / "dask").mkdir()
    return _DaskVenv(_public_root / "dask", tmp_path_factory.mktemp("dask-venv-log"))


@pytest.fixture(scope="session")
def dask_python(_dask_venv):
    """The path of the Dask virtualenv's python (built on first use; any user may run it)."""
    return _dask_venv.python


# ---- OAR --------------------------------------------------------------------------

class Oar:
    """A running OAR. Jobs are the job user's: submit them through as_job_user."""

    wait_until = staticmethod(wait_until)

    def __init__(self, directory, exports, venv):
        self.dir = pathlib.Path(directory)
        self.user = exports["OAR_TEST_USER"]
        entry = pwd.getpwnam(self.user)
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, entry.pw_dir
        self.jobdir = pathlib.Path(exports["OAR_TEST_JOBDIR"])
        self.node = exports["OAR_TEST_NODE"]
        self.cores = int(exports["OAR_TEST_CORES"])
        # the job user's whole environment in as_job_user (runuser resets the caller's); its
        # temporary files (dask-jobqueue's job scripts...) in a directory of this session
        self.env = {"HOME": self.home, "USER": self.user, "LOGNAME": self.user, "SHELL": "/bin/bash",
                    "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        self.env["TMPDIR"] = str(self.job_user_dir("tmp-"))
        self._venv = venv

    @property
    def job_user_python(self):
        """The Dask virtualenv's python (built on first use), readable by the job user."""
        return self._venv.python

    def _argv(self, argv, env, kwargs):
        cwd = kwargs.setdefault("cwd", self.jobdir)
        # PWD as a shell sets it: oarsub takes the job's launching directory from $PWD
        variables = {**self.env, "PWD": os.path.abspath(cwd), **(env or {})}
        return ["runuser", "-u", self.user, "--", "/usr/bin/env", "-i",
                *[f"{k}={v}" for k, v in variables.items()], *map(str, argv)]

    def as_job_user(self, argv, env=None, **popen_kwargs):
        """subprocess.Popen of argv as the job user, with exactly self.env (and PWD) updated
        by `env` as its environment, in self.jobdir unless cwd= is given."""
        return subprocess.Popen(self._argv(argv, env, popen_kwargs), **popen_kwargs)

    def run_as_job_user(self, argv, env=None, **run_kwargs):
        """subprocess.run of argv as the job user (environment and cwd as as_job_user)."""
        return subprocess.run(self._argv(argv, env, run_kwargs), **run_kwargs)

    def job_user_dir(self, prefix="test-"):
        """A fresh directory in the job directory, owned by the job user."""
        path = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir=self.jobdir))
        os.chown(path, self.uid, self.gid)
        path.chmod(0o755)
        return path

    def oarstat_jobs(self):
        """The current (not yet terminated) jobs: [Job(id, name, state)], state as OAR
        says it (Waiting, Launching, Running, Finishing...)."""
        jobs = json.loads(_output(["oarstat", "-J"]) or "{}")
        return [Job(str(job_id), info.get("name"), info.get("state")) for job_id, info in jobs.items()]

    def job_state(self, job_id):
        """A job's state, also once it ended (Terminated, Error), or None if OAR does not know it."""
        proc = subprocess.run(["oarstat", "-s", "-j", str(job_id)], capture_output=True, text=True, timeout=30)
        _, sep, state = proc.stdout.strip().rpartition(": ")
        return state if proc.returncode == 0 and sep else None


@pytest.fixture(scope="session")
def oar(_public_root, _dask_venv, tmp_path_factory):
    _need_root("OAR")
    directory = _public_root / "oar"
    try:
        cluster = Oar(directory, _run_script("start-oar.sh", directory), _dask_venv)
        yield cluster
    finally:
        _run_script("stop-oar.sh", directory)
        if (directory / "log").is_dir():  # for a look after the session
            shutil.copytree(directory / "log", tmp_path_factory.mktemp("oar-log"), dirs_exist_ok=True)
