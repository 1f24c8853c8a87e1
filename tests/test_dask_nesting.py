"""Nested transformations on Dask never deadlock, and cancel() reaches the cluster.

These run on the dummy scheduler (SEAMLESS_DASK_DUMMY: a scheduler and Dask workers in
the script's own process, with the same tasks, worker plugin, pool and stores as a
daskserver), with the cluster's real hashserver and database. One Seamless worker with
throttle 1 gives a Dask worker a single slot: every nested level must then come from
a permission (S raised by one), or run in the Seamless worker that asked."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import tool
from seamless.dask.permissions import Permissions

pytestmark = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import distributed"], capture_output=True).returncode != 0,
    reason="the dask extra is not installed")


def test_permissions_raise_the_slots_up_to_the_capacity_and_back():
    told = []
    permissions = Permissions(2, 6, told.append)
    assert [permissions.request() for _ in range(5)] == [True, True, True, True, False]
    assert told == [3, 4, 5, 6] and permissions.slots == 6
    permissions.release()
    permissions.release()
    assert told[-1] == 4 and permissions.request() and told[-1] == 5
    for _ in range(10):
        permissions.release()
    assert permissions.slots == 2 and told[-1] == 2


@pytest.fixture(scope="module")
def dummy(tmp_path_factory):
    base = tmp_path_factory.mktemp("daskdummy")
    (base / "home" / ".seamless").mkdir(parents=True)
    (base / "home" / ".seamless" / "clusters.yaml").write_text(f"""
lab:
  type: local
  default_queue: main
  queues:
    main: {{memory: 1GB, walltime: "01:00:00", cores: 1}}
  frontends:
    - hostname: localhost
      hashserver: {{bufferdir: {base}/bufs}}
      database: {{database_dir: {base}/dbs}}
      daskserver: {{}}
""")
    work = base / "work"
    work.mkdir()
    (work / "seamless.yaml").write_text("- project: proj\n- cluster: lab\n- execution: remote\n- remote: daskserver\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.update(HOME=str(base / "home"), SEAMLESS_LAUNCH_DIR=str(base / "launch"), SEAMLESS_DASK_DUMMY="1",
               SEAMLESS_WORKER_TRANSFORMATION_THROTTLE="1")

    def python(code, timeout=180):
        script = work / "script.py"
        script.write_text("import json, os, time\nimport seamless.config\n"
                          "from seamless.transformer import delayed, direct, parallel\nseamless.config.init()\n"
                          + textwrap.dedent(code))
        python = os.path.join(os.path.dirname(tool("seamless-run")), "python")
        return subprocess.run([python, str(script)], cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout)

    python.base, python.db = base, base / "dbs" / "proj" / "seamless.db"
    yield python
    for key in ("hashserver-lab-rw-proj", "database-lab-rw-proj"):
        subprocess.run([tool("seamless-launch"), "stop", key], env=env, capture_output=True, timeout=60)


def records(db):
    with sqlite3.connect(db) as c:
        return [json.loads(r[0]) for r in c.execute("SELECT metadata FROM meta_data")]


NESTED = """
@delayed
def depth(n, salt):
    from seamless.transformer import direct

    @direct
    def inner(k, salt):
        if k == 0:
            return 0
        return inner(k - 1, salt) + 1

    return inner(n, salt)

tfs = [depth(4, f"{SALT}-{i}") for i in range(4)]
print(json.dumps([t.value for t in parallel(tfs)]))
"""


def test_nesting_deeper_than_the_slots_never_deadlocks(dummy):
    """4 parents at once, each 5 levels deep, on one slot: permissions for some levels,
    the rest in the Seamless worker that asked; all answers right."""
    proc = dummy(NESTED.replace("SALT", "'deep'"), timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [4, 4, 4, 4]
    dask = [r for r in records(dummy.db) if r["execution_mode"] == "remote"]
    assert len(dask) > 4 and {r["dask_worker"] for r in dask} == {"0"}  # nested levels ran as tasks too


def test_cancel_kills_the_job_on_the_cluster(dummy):
    marker = dummy.base / "late"
    proc = dummy(f"""
    @delayed
    def slow(path):
        import time
        time.sleep(6)
        open(path, "w").close()
        return 1

    t = slow({str(marker)!r}).start()
    time.sleep(3)
    assert t.cancel()
    time.sleep(6)
    print(json.dumps([t.status, os.path.exists({str(marker)!r}), t.transformation_checksum.hex()]))
    """)
    assert proc.returncode == 0, proc.stderr
    status, written, tf = json.loads(proc.stdout)
    assert status == "Status: canceled" and not written
    assert not [r for r in records(dummy.db) if r["tf_checksum"] == tf]


def test_clients_that_workers_open_keep_no_cluster_alive():
    from types import SimpleNamespace

    from seamless.dask.scaling import activity

    scheduler = SimpleNamespace(clients={"fire-and-forget": 0, "Client-seamless-worker-1f2e": 0,
                                         "Client-seamless-9a8b": 0}, tasks={}, workers={"tcp://w": 0})
    assert activity(scheduler) == {"clients": 1, "tasks": 0, "workers": 1}
    del scheduler.clients["Client-seamless-9a8b"]
    assert activity(scheduler)["clients"] == 0


def test_cancel_kills_a_bash_transformers_processes(dummy):
    """The pool replaces the Seamless worker that ran it, and the job's shell (a session of
    its own) goes with it."""
    proc = dummy("""
    import subprocess
    sleeper = delayed("sleep 31.25; echo $salt > RESULT", language="bash")
    t = sleeper(salt=1).start()
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-fx", "sleep 31.25"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "it never started"
        time.sleep(0.1)
    t.cancel()
    deadline = time.monotonic() + 20
    while subprocess.run(["pgrep", "-fx", "sleep 31.25"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "its shell outlived the cancel"
        time.sleep(0.2)
    print(json.dumps(t.status))
    """)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == "Status: canceled"


def test_a_rerun_that_gives_another_result_is_not_kept(tmp_path):
    """execute(expect=): a worker keeps no row for a re-run that differs from the first
    result (the first one's row stays, for every other client)."""
    from seamless.checksum import calculate_checksum
    from seamless.dask.worker import _Kept
    from seamless.execution.job import Job, Result
    from seamless.store.clients import StoreSet

    stores = StoreSet.local_store(str(tmp_path / "buffers"), str(tmp_path / "seamless.db"))
    tf, first = "aa" * 32, calculate_checksum(b"first")
    stores.set_transformation(tf, first)
    job = Job(tf, {})
    job.expect = first
    again = Result(calculate_checksum(b"second"), b"second", {}, "spawn")
    _Kept(stores, {}).keep(job, again)
    assert stores.get_transformation(tf) == first and not again.kept


def test_a_long_chain_works_out_its_depth_once():
    import time

    from seamless.transformer import delayed

    @delayed
    def add(a, b):
        return a + b

    x = add(1, 1)
    for _ in range(30):
        x = add(x, x)  # each level twice: a depth recomputed along every path would take 2^30 steps
    started = time.monotonic()
    assert x._depth() == 30 and time.monotonic() - started < 1


def test_canceling_a_parent_lets_go_of_its_nested_task(dummy):
    started, marker = dummy.base / "child-started", dummy.base / "child-late"
    proc = dummy(f"""
    @delayed
    def parent(started, marker):
        from seamless.transformer import direct

        @direct
        def child(started, marker):
            import time
            open(started, "w").close()
            time.sleep(8)
            open(marker, "w").close()
            return 1

        return child(started, marker) + 1

    t = parent({str(started)!r}, {str(marker)!r}).start()
    deadline = time.monotonic() + 60
    while not os.path.exists({str(started)!r}):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.1)
    assert t.cancel()
    time.sleep(10)
    print(json.dumps([t.status, os.path.exists({str(marker)!r})]))
    """)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["Status: canceled", False]
