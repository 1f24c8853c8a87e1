"""From a laptop to SLURM, end to end: `execution: remote, remote: daskserver` on a real
SLURM (tests/batchsystems.py) behind a real ssh frontend on loopback with `tunnel: true`
(tests/sshd.py). The test process is the laptop, with a HOME and launch directory of its
own; every service of the `hpc` cluster (hashserver, database, daskserver) is launched on
the frontend over ssh, and the daskserver's workers are SLURM jobs.

Where it stands in for the real thing: the frontend, the compute node and the laptop are
one machine (so a path may be seen from all three; the tests prove each step from what
the system itself records: execution records, scontrol's jobs, status files); a real
frontend's login environment names its slurm.conf, ours gets SLURM_CONF through
SEAMLESS_LAUNCH_REMOTE (`env SLURM_CONF=... seamless-launch`); SLURM has no accounting
database here (no sacct), so finished jobs are looked up with scontrol (kept 5 min).

One laptop, one frontend and their services serve the whole module (each test waits for
the queue to be empty of the module's jobs where it counts them)."""

import json
import os
import sqlite3
import subprocess
import textwrap
import threading
import time

import pytest

import sshd
from conftest import tool
from test_launch import frontend  # noqa: F401 (fixture)

pytest.importorskip("dask_jobqueue")
pytestmark = pytest.mark.batch_dask

CLUSTERS = """
laptop:
  type: local
  frontends:
    - hashserver: {{bufferdir: {base}/laptop/bufs}}
      database: {{database_dir: {base}/laptop/dbs}}
hpc:
  type: slurm
  tunnel: true
  default_queue: normal
  queues:
    normal: {{partition: {partition}, cores: 1, memory: 2GB, walltime: "00:20:00", maximum_jobs: 2,
             target-duration: 2s, unknown-task-duration: 10s}}
    highmem: {{TEMPLATE: normal, memory: 4GB}}
  frontends:
    - hostname: 127.0.0.1
      ssh_hostname: {alias}
      hashserver: {{bufferdir: {base}/frontend/bufs}}
      database: {{database_dir: {base}/frontend/dbs}}
      daskserver: {{}}
"""

# pre- and post-processing here, the heavy step on the cluster
PROJECT = """
- project: proj
- cluster: laptop
- execution: process
- stage hpc:
    - cluster: hpc
    - execution: remote
    - remote: daskserver
"""

PROLOGUE = """
import json, os, sys, time
import seamless.config
from seamless.transformer import delayed, parallel
"""

STAGE = "daskserver-hpc-rw-proj--STAGE-hpc"  # the stage's daskservers: + --QUEUE-<queue>


class Laptop:
    def __init__(self, base, slurm, frontend):  # noqa: F811
        self.base, self.slurm, self.frontend = base, slurm, frontend
        home = base / "home"
        (home / ".seamless").mkdir(parents=True)
        (home / ".seamless" / "clusters.yaml").write_text(
            CLUSTERS.format(base=base, partition=slurm.partition, alias=sshd.ALIAS))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SEAMLESS_", "SLURM_"))}
        remote = f"env SLURM_CONF={slurm.conf} {tool('seamless-launch')}"  # the frontend's login environment
        self.env.update(HOME=str(home), SEAMLESS_LAUNCH_DIR=str(base / "launch"), XDG_CACHE_HOME=str(base / "xdg"),
                        SEAMLESS_LAUNCH_REMOTE=remote)
        self.work = base / "work"
        self.work.mkdir()
        (self.work / "seamless.yaml").write_text(PROJECT)
        self.hpc_db = base / "frontend" / "dbs" / "proj" / "STAGE-hpc" / "seamless.db"
        self.laptop_db = base / "laptop" / "dbs" / "proj" / "seamless.db"

    def run(self, *argv, timeout=240):
        return subprocess.run([tool("seamless-run"), *argv], cwd=self.work, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def python(self, code):
        """A Python script of the laptop, started (a Popen with text pipes)."""
        script = self.work / f"script-{time.monotonic_ns()}.py"
        script.write_text(PROLOGUE + textwrap.dedent(code))
        python = os.path.join(os.path.dirname(tool("seamless-run")), "python")
        return subprocess.Popen([python, str(script)], cwd=self.work, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def launch(self, *argv, env=None):
        return subprocess.run([tool("seamless-launch"), *argv], cwd=self.work, env=env or self.env,
                              capture_output=True, text=True, timeout=180)

    def keys(self, env=None):
        """The services `seamless-launch ps` lists (from the laptop, or with env, elsewhere)."""
        rows = self.launch("ps", "--json", env=env).stdout.splitlines()
        return {json.loads(row)["key"]: json.loads(row) for row in rows}

    def on_frontend(self, key):
        """The status file of a service on the frontend (None: no such service there)."""
        try:
            with open(self.frontend.launch_dir / "server" / f"{key}.json") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def frontend_env(self):
        return {**self.env, "SEAMLESS_LAUNCH_DIR": str(self.frontend.launch_dir), **self.slurm.env}

    def records(self, db):
        with sqlite3.connect(db) as c:
            return {r[0]: json.loads(r[1]) for r in c.execute("SELECT checksum, metadata FROM meta_data")}

    def rows(self, db, table, tf):
        with sqlite3.connect(db) as c:
            return c.execute(f"SELECT result FROM {table} WHERE checksum = ?", (tf,)).fetchall()

    def our_jobs(self):
        """This module's jobs in the queue: {job id: (state, daskserver key)}, the key taken
        from the job's log path (the wrapper names it after its status file's log)."""
        out = self.slurm.run(["squeue", "-h", "-O", "JobID:|,State:|,StdOut:"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        jobs = {}
        for line in out.splitlines():
            job, state, path = (part.strip() for part in line.split("|", 2))
            if path.startswith(str(self.frontend.launch_dir)):
                jobs[job] = (state, os.path.basename(path).partition(".log")[0])
        return jobs

    def wait_idle(self, timeout=90):
        """Until no job of ours is in the queue (idle daskservers release theirs)."""
        self.slurm.wait_until(lambda: not self.our_jobs(), timeout, 0.5, what="the queue to empty of our jobs")


@pytest.fixture(scope="module")
def hpc(slurm, frontend, tmp_path_factory):  # noqa: F811
    laptop = Laptop(tmp_path_factory.mktemp("laptop"), slurm, frontend)
    yield laptop
    # every service, stopped from the laptop (over ssh for the frontend's: the daskservers
    # cancel their jobs as they stop); then what the frontend still runs and the queue still
    # holds (nothing should) is stopped and cancelled, and reported
    keys = list(laptop.keys())
    if keys:
        laptop.launch("stop", *keys)
    left = [key for key, row in laptop.keys(env=laptop.frontend_env()).items() if row.get("alive")]
    if left:
        laptop.launch("stop", *left, env=laptop.frontend_env())
    try:
        laptop.wait_idle(60)
        jobs = []
    except AssertionError:
        jobs = list(laptop.our_jobs())
        slurm.run(["scancel", *jobs], timeout=30)
    assert not left and not jobs, f"left after stopping from the laptop: services {left}, jobs {jobs}"


def checksum_of(data: bytes) -> str:
    from seamless.checksum import calculate_checksum

    return calculate_checksum(data)


def on_a_slurm_job(record, slurm):
    """scontrol's fields of the SLURM job whose Dask worker computed the transformation of
    `record` (None: not computed by a Dask worker in a job of the test cluster)."""
    if not (record and record["execution_mode"] == "remote" and record.get("batch_job_id")
            and record.get("dask_worker") and record["remote_target"].startswith("tcp://")):
        return None
    job = slurm.job(record["batch_job_id"])
    if job is None or job.get("BatchHost") != record.get("hostname") or job.get("Partition") != slurm.partition:
        return None
    return job


def keyed(job, key):
    return os.path.basename(job["StdOut"]).startswith(key + ".log")


# --- seamless-run from the laptop ---------------------------------------------------------


def test_seamless_run_on_a_slurm_job_with_its_input_uploaded(hpc, slurm):
    content = f"only on the laptop {time.time()}\n".encode()
    (hpc.work / "input.txt").write_bytes(content)
    argv = ["--stage", "hpc", "--queue", "highmem"]
    started = time.monotonic()
    proc = hpc.run(*argv, "-v", "wc -c input.txt")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{len(content)} input.txt\n"
    assert "running on the Dask cluster at tcp://127.0.0.1:" in proc.stderr  # through the tunnel
    tf = hpc.run(*argv, "--dry", "wc -c input.txt").stdout.strip()
    record = hpc.records(hpc.hpc_db)[tf]
    job = on_a_slurm_job(record, slurm)
    assert job, record
    key = STAGE + "--QUEUE-highmem"
    assert keyed(job, key) and job["MinMemoryNode"] == "4G", job  # a job of the highmem queue's daskserver
    # the daskserver runs on the frontend, reached from here through ssh
    assert hpc.keys()[key]["where"] == sshd.ALIAS and hpc.on_frontend(key)["status"] == "running"
    assert not (hpc.base / "launch" / "server" / f"{key}.json").exists()
    # input.txt went to the stage's hashserver on the frontend, where the job read it
    stored = list((hpc.base / "frontend" / "bufs").rglob(checksum_of(content)))
    assert stored and stored[0].read_bytes() == content
    again = hpc.run(*argv, "-v", "wc -c input.txt")  # a hit: no new job
    assert again.stdout == proc.stdout and "cache hit" in again.stderr
    print(f"\nfirst seamless-run on SLURM (launch over ssh, job start): {elapsed:.1f} s")


# --- many transformations: scaling --------------------------------------------------------

MANY = """
seamless.config.set_stage("hpc")

@delayed
def square(i):
    import time

    time.sleep(0.5)
    return i * i

done = [(t.value, t.transformation_checksum.hex()) for t in parallel([square(i) for i in range(200)])]
print(json.dumps([[value for value, _ in done], [tf for _, tf in done]]))
"""


class Watch(threading.Thread):
    """Samples the module's jobs in the queue until stopped."""

    def __init__(self, laptop):
        super().__init__(daemon=True)
        self.laptop, self.samples, self.stopping = laptop, [], threading.Event()

    def run(self):
        while not self.stopping.is_set():
            self.samples.append((time.monotonic(), self.laptop.our_jobs()))
            self.stopping.wait(0.5)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.join()


def test_200_transformations_scale_the_cluster_up_and_back_down(hpc, slurm):
    hpc.wait_idle()
    key = STAGE + "--QUEUE-normal"
    started = time.monotonic()
    with Watch(hpc) as watch:
        proc = hpc.python(MANY)
        out, err = proc.communicate(timeout=300)
        finished = time.monotonic()
        assert proc.returncode == 0, err
        values, tfs = json.loads(out)
        assert values == [i * i for i in range(200)]
        assert hpc.on_frontend(key)["status"] == "running"
        # idle: the jobs leave the queue, the daskserver stays
        hpc.wait_idle(120)
        emptied = time.monotonic()
    assert hpc.on_frontend(key)["status"] == "running"
    counts = [len([j for j, (state, k) in jobs.items() if k == key]) for _, jobs in watch.samples]
    assert max(counts) <= 2, counts  # maximum_jobs
    assert max(counts) == 2, counts  # scaled up beyond one job
    records = hpc.records(hpc.hpc_db)
    jobs = {on_a_slurm_job(records[tf], slurm)["JobId"] for tf in tfs}
    assert len(jobs) >= 2, jobs  # the work was spread over the jobs
    first = next(t for t, c in zip((t for t, _ in watch.samples), counts) if c)
    print(f"\n200 transformations: first job in the queue after {first - started:.1f} s, done after "
          f"{finished - started:.1f} s, queue empty {emptied - finished:.1f} s later; jobs {sorted(jobs)}")


# --- one script, several places -----------------------------------------------------------

STAGES = """
@delayed
def prepare(text):
    return text.upper().split()

@delayed
def heavy(words, factor):
    return {w: len(w) * factor for w in words}

@delayed
def summarize(table):
    return sum(table.values())

seamless.config.init()  # the default stage: in process, the laptop's storage
pre = prepare("alpha beta gamma")
words = pre.run()
seamless.config.set_stage("hpc")  # the stage's daskserver, on SLURM
mid = heavy(words, 10)
table = mid.run()
seamless.config.set_stage(None)  # back here
post = summarize(table)
total = post.run()
subs = []
for substage, queue, factor in (("a", "normal", 2), ("b", "highmem", 3)):
    seamless.config.set_stage("hpc", substage)
    seamless.config.select(queue=queue)  # re-evaluates the substage with that queue
    t = heavy(words, factor)
    subs.append([t.run(), t.transformation_checksum.hex()])
seamless.config.select(queue=None)
print(json.dumps([[words, table, total], [t.transformation_checksum.hex() for t in (pre, mid, post)], subs]))
"""


def test_one_script_in_process_then_on_slurm_then_back_and_two_substages(hpc, slurm):
    hpc.wait_idle()
    stage_key = STAGE + "--QUEUE-normal"
    before = hpc.on_frontend(stage_key)
    proc = hpc.python(STAGES)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (words, table, total), (pre, mid, post), subs = json.loads(out)
    assert words == ["ALPHA", "BETA", "GAMMA"] and table == {"ALPHA": 50, "BETA": 40, "GAMMA": 50} and total == 140
    here, there = hpc.records(hpc.laptop_db), hpc.records(hpc.hpc_db)
    # pre- and post-processing in this process, into the laptop's storage; the step between on SLURM
    assert here[pre]["execution_mode"] == "process" and here[post]["execution_mode"] == "process"
    assert pre not in there and post not in there and mid not in here
    job = on_a_slurm_job(there[mid], slurm)
    assert job and keyed(job, stage_key), there[mid]
    if before is not None:  # the stage's daskserver that ran already was used, not restarted
        assert hpc.on_frontend(stage_key)["pid"] == before["pid"]
    # each substage: a daskserver of its own, on its own queue; the stage's storage for both
    assert [value for value, _ in subs] == [{w: len(w) * f for w in words} for f in (2, 3)]
    for (_, tf), key, memory in zip(subs, ("SUBSTAGE-a--QUEUE-normal", "SUBSTAGE-b--QUEUE-highmem"), ("2G", "4G")):
        job = on_a_slurm_job(there[tf], slurm)
        assert job and keyed(job, STAGE + key) and job["MinMemoryNode"] == memory, (there[tf], job)
    keys = hpc.keys()
    for key in ("SUBSTAGE-a--QUEUE-normal", "SUBSTAGE-b--QUEUE-highmem"):
        assert keys[STAGE + key]["where"] == sshd.ALIAS, keys  # two daskservers on the frontend
    storage = [k for k in keys if k.startswith(("hashserver-hpc", "database-hpc"))]
    assert sorted(storage) == ["database-hpc-rw-proj--STAGE-hpc", "hashserver-hpc-rw-proj--STAGE-hpc"], keys


# --- a job cancelled under a task ---------------------------------------------------------

CANCELED = """
seamless.config.set_stage("hpc")

@delayed
def slow(x, marks):
    import os, time
    with open(marks, "a") as f:  # which job started it
        f.write(os.environ["SLURM_JOB_ID"] + "\\n")
    time.sleep(8)
    return x * 3

t = slow(14, MARKS)
value = t.run()
print(json.dumps([value, t.exception, t.transformation_checksum.hex()]))
"""


def test_a_job_scancelled_mid_task_reruns_it_elsewhere_with_the_right_result(hpc, slurm):
    hpc.wait_idle()
    marks = hpc.base / "marks"
    proc = hpc.python(f"MARKS = {str(marks)!r}\n" + CANCELED)
    try:
        slurm.wait_until(lambda: marks.exists() and marks.read_text().strip(), 120, 0.2,
                             what="the task to start on a job")
        victim = marks.read_text().split()[0]
        assert hpc.our_jobs()[victim][0] == "RUNNING"
        time.sleep(2)  # well inside its 8 s
        slurm.run(["scancel", victim], check=True, timeout=30)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    value, exception, tf = json.loads(out)
    assert (value, exception) == (42, None)
    slurm.wait_until(lambda: (slurm.job(victim) or {}).get("JobState") == "CANCELLED", 30,
                     what=f"job {victim} to be cancelled")
    # it ran again on another job, which computed the result; the cancelled job's worker closed
    # its Seamless pool on its way out (no second start there)
    starts = marks.read_text().split()
    elsewhere = [job for job in starts if job != victim]
    assert starts[0] == victim and len(elsewhere) == 1 and len(starts) == 2, starts
    record = hpc.records(hpc.hpc_db)[tf]
    job = on_a_slurm_job(record, slurm)
    assert job and job["JobId"] == elsewhere[0], record
    # one result, no conflicting one
    assert hpc.rows(hpc.hpc_db, "transformation", tf) == [(record["result_checksum"],)]
    assert hpc.rows(hpc.hpc_db, "irreproducible_transformation", tf) == []
