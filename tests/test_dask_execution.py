"""Transformations on a Dask cluster (execution: remote, remote: daskserver), end to end
with real processes: a LocalCluster daskserver launched from a seamless.yaml, with its
hashserver and database, driven by seamless-run and by Python scripts. Every result must
be the one execution: process gives, under the same transformation checksum, and the
execution record must say which Dask worker computed it."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import tool

pytestmark = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import distributed"], capture_output=True).returncode != 0,
    reason="the dask extra is not installed")

CLUSTERS = """
lab:
  type: local
  workers: 2
  default_queue: main
  queues:
    main: {{memory: 2GB, walltime: "01:00:00", cores: 2, maximum_jobs: 2}}
    small: {{memory: 1GB, walltime: "01:00:00", cores: 1, maximum_jobs: 1}}
  frontends:
    - hostname: localhost
      hashserver: {{bufferdir: {base}/bufs}}
      database: {{database_dir: {base}/dbs}}
      daskserver: {{}}
"""

PROLOGUE = """
import json, os, sys, time
import seamless.config
from seamless.transformer import delayed, direct, parallel
seamless.config.init()
"""


class Lab:
    def __init__(self, base):
        self.base = base
        home = base / "home"
        (home / ".seamless").mkdir(parents=True)
        (home / ".seamless" / "clusters.yaml").write_text(CLUSTERS.format(base=base))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
        self.env.update(HOME=str(home), SEAMLESS_LAUNCH_DIR=str(base / "launch"))
        self.work = self.project("work", "- execution: remote\n- remote: daskserver\n")
        self.here = self.project("here", "- execution: process\n")  # the same storage, computed in process
        self.db = base / "dbs" / "proj" / "seamless.db"

    def project(self, name, commands):
        work = self.base / name
        work.mkdir()
        (work / "seamless.yaml").write_text("- project: proj\n- cluster: lab\n" + commands)
        return work

    def run(self, *argv, cwd=None, env=None, timeout=120):
        return subprocess.run([tool("seamless-run"), *argv], cwd=cwd or self.work, env={**self.env, **(env or {})},
                              capture_output=True, timeout=timeout)

    def python(self, code, cwd=None, env=None, timeout=180):
        script = (cwd or self.work) / "script.py"
        script.write_text(PROLOGUE + textwrap.dedent(code))
        python = os.path.join(os.path.dirname(tool("seamless-run")), "python")
        return subprocess.run([python, str(script)], cwd=cwd or self.work, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def record(self, tf):
        with sqlite3.connect(self.db) as c:
            rows = [json.loads(r[0]) for r in c.execute("SELECT metadata FROM meta_data")]
        return next((r for r in rows if r["tf_checksum"] == tf), None)

    def records(self):
        with sqlite3.connect(self.db) as c:
            return [json.loads(r[0]) for r in c.execute("SELECT metadata FROM meta_data")]

    def status(self, key):
        with open(self.base / "launch" / "server" / f"{key}.json") as f:
            return json.load(f)

    def running(self, key):
        try:
            return self.status(key).get("status") in ("starting", "running")
        except FileNotFoundError:
            return False

    def stop(self, key=None):
        listing = subprocess.run([tool("seamless-launch"), "ps"], env=self.env, capture_output=True, text=True).stdout
        keys = [line.split()[0] for line in listing.splitlines()[1:] if line.strip()]
        for k in keys if key is None else [key]:
            subprocess.run([tool("seamless-launch"), "stop", k], env=self.env, capture_output=True, timeout=90)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("dasklab"))
    yield lab
    lab.stop()


def tf_of(lab, *argv, cwd=None, env=None):
    proc = lab.run("--dry", *argv, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode().strip()


def on_a_dask_worker(record):
    return record is not None and record["execution_mode"] == "remote" and record["remote_target"].startswith(
        "tcp://") and record.get("dask_worker") is not None and record.get("hostname")


# --- seamless-run -------------------------------------------------------------------------


def test_commands_files_directories_and_pipelines_as_in_process(lab):
    alone = {"SEAMLESS_CACHE": str(lab.base / "alone")}  # in process, in a cache of its own
    for work in (lab.work, lab.here):
        (work / "data.txt").write_text("b\na\nc\n")
        (work / "dir").mkdir()
        (work / "dir" / "x.txt").write_text("x\n")
        (work / "dir" / "y.txt").write_text("yy\n")
    steps = [["sort data.txt"], ["cat dir/x.txt dir/y.txt"], ["ls dir"],
             ["-cp", "res", "mkdir res; sort -r data.txt > res/r.txt; wc -c dir/x.txt > res/n"],
             ["-cp", "out.txt", "head -2 data.txt > out.txt"], ["wc -l out.txt"]]
    for argv in steps:
        if argv == ["wc -l out.txt"]:  # a pipeline: the step reads out.txt through its .CHECKSUM sidecar
            for work in (lab.work, lab.here):
                (work / "out.txt").unlink()
                assert (work / "out.txt.CHECKSUM").exists()
        there = lab.run("-v", *argv)
        here = lab.run(*argv, cwd=lab.here, env=alone)
        assert there.returncode == 0 and here.returncode == 0, (there.stderr, here.stderr)
        assert there.stdout == here.stdout
        assert b"running on the Dask cluster at tcp://" in there.stderr
        tf = tf_of(lab, *argv)
        assert tf == tf_of(lab, *argv, cwd=lab.here, env=alone)  # the same transformation, wherever it runs
        assert on_a_dask_worker(lab.record(tf)), lab.record(tf)
    for work in (lab.work, lab.here):
        assert (work / "res" / "r.txt").read_text() == "c\nb\na\n" and (work / "res" / "n").read_text() == "2 dir/x.txt\n"
        assert (work / "out.txt.CHECKSUM").read_text() == (lab.here / "out.txt.CHECKSUM").read_text()
    assert lab.run("cat dir/x.txt dir/y.txt").stdout == b"x\nyy\n"


def test_a_hit_never_contacts_dask_and_answers_with_the_cluster_down(lab):
    (lab.work / "hit.txt").write_text("3\n1\n2\n")
    assert lab.run("sort -n hit.txt").stdout == b"1\n2\n3\n"
    record = lab.record(tf_of(lab, "sort -n hit.txt"))
    assert on_a_dask_worker(record)
    key = "daskserver-lab-rw-proj--QUEUE-main"
    lab.stop(key)
    proc = lab.run("-v", "sort -n hit.txt")
    assert proc.returncode == 0 and proc.stdout == b"1\n2\n3\n" and b"cache hit" in proc.stderr
    assert b"Dask" not in proc.stderr
    assert not lab.running(key)  # not started again by a hit
    proc = lab.run("--local", "sort -nr hit.txt")  # --local runs here, whatever the configuration
    assert proc.returncode == 0 and proc.stdout == b"3\n2\n1\n"
    assert lab.record(tf_of(lab, "sort -nr hit.txt"))["execution_mode"] == "process"
    assert not lab.running(key)


def test_a_failing_command_keeps_its_exit_code_and_stderr_and_is_not_cached(lab):
    proc = lab.run("echo oops >&2; exit 3")
    assert proc.returncode == 3 and b"oops" in proc.stderr
    assert lab.record(tf_of(lab, "echo oops >&2; exit 3")) is None
    proc = lab.run("echo careful >&2; echo fine")  # what a command says on stderr there is shown here
    assert proc.returncode == 0 and proc.stdout == b"fine\n" and b"careful" in proc.stderr


def test_each_record_has_its_own_commands_figures(lab):
    """A Dask worker runs many commands, at once and one after another: a record's memory
    and CPU are those of its own command, not of the largest or busiest one before it."""
    big = "python3 -c 'b = bytearray(150 << 20); b[::4096] = b\"x\" * len(b[::4096])'"
    assert lab.run(big).returncode == 0
    assert lab.run("echo small").returncode == 0
    large, small = lab.record(tf_of(lab, big)), lab.record(tf_of(lab, "echo small"))
    assert on_a_dask_worker(large) and on_a_dask_worker(small)
    # (a command's peak includes its worker's pages at the fork, some 70 MB, never the big one's)
    assert large["memory_peak_bytes"] > 150 << 20
    assert small["memory_peak_bytes"] < large["memory_peak_bytes"] - (60 << 20), (large, small)


def test_identical_commands_from_two_clients_run_once(lab):
    log = lab.base / "once"
    command = f"sleep 2; echo ran >> {log}; echo done"
    procs = [subprocess.Popen([tool("seamless-run"), command], cwd=lab.work, env=lab.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1] for o in outs]
    assert [o[0] for o in outs] == [b"done\n"] * 3
    assert log.read_text() == "ran\n"


def test_ctrl_c_cancels_the_job_on_the_cluster(lab):
    started, marker = lab.base / "started", lab.base / "late"
    command = f"touch {started}; sleep 7.25; touch {marker}"
    tf = tf_of(lab, command)
    assert lab.run("true").returncode == 0  # the cluster is up
    proc = subprocess.Popen([tool("seamless-run"), command], cwd=lab.work, env=lab.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not started.exists():
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the job never started: {proc.communicate()}")
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    deadline = time.monotonic() + 20
    while subprocess.run(["pgrep", "-fx", "sleep 7.25"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the job still runs on the cluster"
        time.sleep(0.2)
    time.sleep(1)
    assert not marker.exists() and lab.record(tf) is None


def test_a_stopped_daskserver_stops_the_commands_it_runs(lab):
    started = lab.base / "stopping"
    command = f"touch {started}; sleep 9.75; echo late"
    assert lab.run("true").returncode == 0
    proc = subprocess.Popen([tool("seamless-run"), command], cwd=lab.work, env=lab.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    lab.stop("daskserver-lab-rw-proj--QUEUE-main")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and out == b"" and b"Dask scheduler" in err.strip().splitlines()[-1], err
    deadline = time.monotonic() + 20
    while subprocess.run(["pgrep", "-fx", "sleep 9.75"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the command outlived its daskserver"
        time.sleep(0.2)


# --- Python -------------------------------------------------------------------------------

PYTHON_WORK = """
@delayed
def add(a, b):
    return a + b

@delayed
def outer(n):
    from seamless.transformer import direct

    @direct
    def inner(k):
        return k + 1

    return inner(n) * 10

total = add(add(1, 2), add(3, 4))  # dependencies
squares = parallel([add(i, i) for i in range(12)])
nested = outer(4)
values = [total.run(), [t.value for t in squares], nested.run()]
checksums = [total.transformation_checksum.hex(), nested.transformation_checksum.hex()]
print(json.dumps([values, checksums]))
"""


def test_python_dependencies_and_nesting_as_in_process(lab):
    here = lab.python(PYTHON_WORK, cwd=lab.here, env={"SEAMLESS_CACHE": str(lab.base / "alone-python")})
    assert here.returncode == 0, here.stderr
    there = lab.python(PYTHON_WORK)
    assert there.returncode == 0, there.stderr
    assert json.loads(there.stdout) == json.loads(here.stdout)
    (values, (total, nested)) = json.loads(there.stdout)
    assert values == [10, [2 * i for i in range(12)], 50]
    assert on_a_dask_worker(lab.record(total)) and on_a_dask_worker(lab.record(nested))


def test_many_transformations_at_once(lab):
    """parallel() keeps maximum_jobs x cores x throttle running; every answer is its own."""
    proc = lab.python("""
    @delayed
    def triple(x, salt):
        return 3 * x

    tfs = [triple(i, "many") for i in range(600)]
    print(json.dumps([seamless.config.get_nparallel(), [t.value for t in parallel(tfs)]]))
    """)
    assert proc.returncode == 0, proc.stderr
    nparallel, values = json.loads(proc.stdout)
    assert nparallel == 2 * 2 * 3 and values == [3 * i for i in range(600)]


def test_a_python_failure_comes_back_with_its_traceback_and_is_not_cached(lab):
    proc = lab.python("""
    @delayed
    def boom(x):
        raise ValueError(f"no {x}")

    t = boom(7)
    t.compute()
    print(json.dumps([t.exception, t.transformation_checksum.hex()]))
    """)
    assert proc.returncode == 0, proc.stderr
    exception, tf = json.loads(proc.stdout)
    assert "ValueError: no 7" in exception and "Traceback" in exception
    assert lab.record(tf) is None


def test_local_transformations_stay_in_process(lab):
    proc = lab.python("""
    here = delayed(lambda x: [x - 1, __import__("os").getpid()])
    here.local = True
    t = here(5)
    value, pid = t.run()
    print(json.dumps([value, pid == os.getpid(), t.transformation_checksum.hex()]))
    """)
    assert proc.returncode == 0, proc.stderr
    value, same, tf = json.loads(proc.stdout)
    assert value == 4 and same and lab.record(tf)["execution_mode"] == "process"


def test_a_killed_scheduler_is_one_clear_line_and_nothing_is_recorded(lab):
    assert lab.run("true").returncode == 0
    proc = subprocess.Popen([tool("seamless-run"), "sleep 30; echo late"], cwd=lab.work, env=lab.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    os.kill(lab.status("daskserver-lab-rw-proj--QUEUE-main")["pid"], signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 1 and out == b""
    assert lines[-1].startswith("seamless-run: error: ") and "Dask scheduler" in lines[-1], err
    assert lab.record(tf_of(lab, "sleep 30; echo late")) is None
    again = lab.run("echo back")  # the next run launches a new daskserver
    assert again.returncode == 0 and again.stdout == b"back\n", again.stderr


# --- stages ---------------------------------------------------------------------------------

STAGES = """
@delayed
def inc(x, tag):
    return x + 1

first = inc(1, "stages").run()  # the default stage: in process
seamless.config.set_stage("dask")
second = inc(first, "stages")
second_value = second.run()
seamless.config.set_stage(None)
last = inc(second_value, "stages")
third = last.run()
seamless.config.set_stage("dask")  # back: the daskserver that runs is used, not a new one
fourth = inc(third, "stages").run()
seamless.config.set_stage("dask", "a")
fifth = inc(fourth, "stages").run()
seamless.config.set_stage("dask", "b")
seamless.config.select(queue="small")
sixth = inc(fifth, "stages").run()
print(json.dumps([[first, second_value, third, fourth, fifth, sixth], last.transformation_checksum.hex()]))
"""


def test_set_stage_moves_work_between_process_and_daskservers(lab):
    work = lab.project("staged", "- execution: process\n- stage dask:\n    - execution: remote\n"
                                 "    - remote: daskserver\n")
    proc = lab.python(STAGES, cwd=work)
    assert proc.returncode == 0, proc.stderr
    values, in_process = json.loads(proc.stdout)
    assert values == [2, 3, 4, 5, 6, 7]
    assert lab.record(in_process)["execution_mode"] == "process"  # set_stage(None): back in process
    with sqlite3.connect(lab.base / "dbs" / "proj" / "STAGE-dask" / "seamless.db") as c:  # substages share it
        staged = [json.loads(r[0]) for r in c.execute("SELECT metadata FROM meta_data")]
    assert len(staged) == 4 and all(on_a_dask_worker(r) for r in staged)
    # the stage (twice: the daskserver that ran is used again), then substages a and b (queue small)
    targets = [r["remote_target"] for r in staged]
    assert len(set(targets)) == 3 and targets.count(targets[0]) == 2, staged
    listing = subprocess.run([tool("seamless-launch"), "ps"], env=lab.env, capture_output=True, text=True).stdout
    for key in ("daskserver-lab-rw-proj--STAGE-dask--QUEUE-main", "daskserver-lab-rw-proj--STAGE-daskSUBSTAGE-a--QUEUE-main",
                "daskserver-lab-rw-proj--STAGE-daskSUBSTAGE-b--QUEUE-small"):
        assert key in listing


# --- upstream -------------------------------------------------------------------------------

UPSTREAM = os.environ.get("SEAMLESS_UPSTREAM_VENV", "")


@pytest.mark.skipif(not (UPSTREAM and os.path.exists(os.path.join(UPSTREAM, "bin", "seamless-run"))),
                    reason="no upstream virtualenv (SEAMLESS_UPSTREAM_VENV; tests/run.sh builds one)")
def test_a_result_computed_on_dask_is_a_hit_for_upstream_seamless_run(lab, start_service):
    """Upstream's seamless-run, through upstream's own hashserver and database serving the
    cluster's buffer directory and database file, finds what our Dask workers computed."""
    from test_upstream_compat import run_env, start_upstream_pair

    count = lab.base / "upstream-count"
    (lab.work / "up.txt").write_text("a\nb\nc\n")
    command = ["--metavar", f"COUNT={count}", "-i", "up.txt", 'echo x >> "$COUNT"; head -n 2 up.txt']
    ours = lab.run(*command)
    assert ours.returncode == 0 and ours.stdout == b"a\nb\n", ours.stderr
    assert on_a_dask_worker(lab.record(tf_of(lab, *command)))
    hashserver, database = start_upstream_pair(start_service, lab.base / "bufs" / "proj", lab.db)
    elsewhere = lab.base / "upstream"  # no seamless.yaml there: upstream's would take it over
    elsewhere.mkdir()
    (elsewhere / "up.txt").write_text("a\nb\nc\n")
    env = run_env(lab.base / "upstream", SEAMLESS_REMOTE_CLIENTS=json.dumps({
        "buffer": [{"url": hashserver, "readonly": False, "remote_url": hashserver}],
        "database": [{"url": database, "readonly": False, "remote_url": database}]}))
    theirs = subprocess.run([os.path.join(UPSTREAM, "bin", "seamless-run"), *command], cwd=elsewhere, env=env,
                            capture_output=True, timeout=300)
    assert theirs.returncode == 0, theirs.stderr.decode()[-2000:]
    assert theirs.stdout.strip() == b"a\nb" and count.read_text() == "x\n"  # a hit: it did not run again
