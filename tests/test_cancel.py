"""seamless-cancel with real processes: a local seamless-run stopped from another
process, a job on a running job server, a task on a Dask LocalCluster daskserver."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import cache_env, tool
from test_jobserver import jobserver_of, post, records, remote, run as remote_run  # noqa: F401 (fixture)


CANCELED_LINE = "seamless-run: error: the command was canceled; nothing was kept"


def cancel(*argv, cwd, env):
    return subprocess.run([tool("seamless-cancel"), *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def wait_for(path, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{path} never appeared: {proc.communicate()}")
        time.sleep(0.05)


def gone(pattern, timeout=20):
    """Does no process run `pattern` (exactly) within the timeout?"""
    deadline = time.monotonic() + timeout
    while subprocess.run(["pgrep", "-fx", pattern], capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def local(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    return work, cache_env(tmp_path), tmp_path


def rows(cache, tf):
    found = []
    for db in cache.rglob("seamless.db"):
        with sqlite3.connect(db) as c:
            found += c.execute("SELECT result FROM transformation WHERE checksum = ?", (tf,)).fetchall()
    return found


def test_a_local_run_is_canceled_from_another_process_and_keeps_nothing(local):
    work, env, tmp = local
    started, late = tmp / "started", tmp / "late"
    env.update(STARTED=str(started), LATE=str(late))  # the environment is not part of its identity
    command = 'touch "$STARTED"; test -n "${GO:-}" || sleep 30.75; touch "$LATE"; echo result > out.txt'
    argv = [tool("seamless-run"), "-cp", "out.txt", command]
    tf = subprocess.run(argv[:1] + ["--dry"] + argv[1:], cwd=work, env=env, capture_output=True,
                        text=True).stdout.strip()
    proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(started, proc)
    assert (work / "out.txt.FUTURE").exists()
    begun = time.monotonic()
    answer = cancel("out.txt", cwd=work, env=env)  # the target being produced names its transformation
    assert answer.returncode == 0 and answer.stdout == "process: canceled\n", answer
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - begun < 15
    assert proc.returncode == 130, err
    assert err.decode().strip().splitlines()[-1] == CANCELED_LINE
    assert gone("sleep 30.75") and not late.exists()
    assert rows(tmp / "cache", tf) == [] and not (work / "out.txt").exists()
    assert not (work / "out.txt.FUTURE").exists()
    leftovers = [p.name for p in (tmp / "cache").rglob("seamless-job-*")]
    assert leftovers == []  # job directory, its lock and its cancel marker are gone
    # nothing remembered it: the same command runs again, for real
    again = subprocess.run(argv, cwd=work, env={**env, "GO": "1"}, capture_output=True, timeout=60)
    assert again.returncode == 0 and (work / "out.txt").read_text() == "result\n" and late.exists(), again.stderr
    assert len(rows(tmp / "cache", tf)) == 1
    # over: a second cancel finds nothing
    assert cancel(tf, cwd=work, env=env).returncode == 2


def test_the_survivor_of_two_identical_runs_keeps_the_future_marker(local):
    """Canceling the run that holds the work leaves the marker to the identical run that
    takes it over, so a later step still waits for its result."""
    work, env, tmp = local
    started, late = tmp / "started", tmp / "late"
    env.update(STARTED=str(started), LATE=str(late))
    command = 'touch "$STARTED"; sleep 3.125; touch "$LATE"; seq 10 > out.txt'
    argv = [tool("seamless-run"), "-cp", "out.txt", command]
    first = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(started, first)
    started.unlink()
    second = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = work / "out.txt.FUTURE"
    time.sleep(1.0)  # the second one waits for the first (a latch waiter)
    assert second.poll() is None and marker.exists()
    text = marker.read_text()
    assert cancel("out.txt", cwd=work, env=env).stdout == "process: canceled\n"
    assert first.communicate(timeout=30)[1].decode().strip().splitlines()[-1] == CANCELED_LINE
    assert first.returncode == 130
    wait_for(started, second)  # it has taken the work over ...
    assert marker.read_text() == text and second.poll() is None  # ... and its marker is still there
    assert cancel("out.txt.FUTURE", cwd=work, env=env).returncode == 0  # so it can be canceled in turn
    assert second.communicate(timeout=30)[1].decode().strip().splitlines()[-1] == CANCELED_LINE
    assert second.returncode == 130 and not marker.exists() and not late.exists()
    # a run that ends removes it
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0 and (work / "out.txt").read_text() == "".join(f"{i}\n" for i in range(1, 11))
    assert not marker.exists()


def test_unknown_or_finished_transformations_are_not_running(local, tmp_path):
    work, env, _ = local
    answer = cancel("0" * 64, cwd=work, env=env)
    assert answer.returncode == 2 and answer.stdout == "process: not-running\n" and answer.stderr == ""
    (work / "tf.CHECKSUM").write_text("ab" * 32 + "\n")
    (work / "plain").write_text("CD" * 32)
    for item in ("tf.CHECKSUM", "tf", "plain"):  # a sidecar, its path, a file holding a checksum
        assert cancel(item, cwd=work, env=env).returncode == 2
    bad = cancel("nothing-here", cwd=work, env=env)
    assert bad.returncode == 1 and bad.stdout == "" and \
        bad.stderr == "seamless-cancel: error: nothing-here: neither a checksum (64 hex digits) nor a file holding one\n"
    stale = cancel("x.FUTURE", cwd=work, env=env)
    assert stale.returncode == 1 and "no such marker" in stale.stderr


def test_a_cache_that_is_a_file_is_one_clean_error_line_as_for_the_other_tools(local, tmp_path):
    work, env, _ = local
    (tmp_path / "a-file").write_text("")
    env["SEAMLESS_CACHE"] = str(tmp_path / "a-file")
    answer = cancel("0" * 64, cwd=work, env=env)
    run = subprocess.run([tool("seamless-run"), "true"], cwd=work, env=env, capture_output=True, text=True)
    assert answer.returncode == run.returncode == 1 and answer.stdout == ""
    assert answer.stderr == run.stderr.replace("seamless-run:", "seamless-cancel:"), (answer, run)
    assert answer.stderr.startswith("seamless-cancel: error: Not a directory: ") and "Errno" not in answer.stderr


def test_a_python_api_bash_transformation_is_canceled_too(local):
    work, env, tmp = local
    started = tmp / "started"
    script = work / "script.py"
    script.write_text(f"""
import sys
import seamless.config
from seamless.transformer import delayed
seamless.config.init()

slow = delayed("touch {started}; sleep 31.25; echo $x > RESULT", language="bash")
t = slow(x=1)
t.construct()
print(t.transformation_checksum.hex(), flush=True)
try:
    t.run()
except Exception as exc:
    print("failed:", exc, flush=True)
""")
    python = os.path.join(os.path.dirname(tool("seamless-run")), "python")
    proc = subprocess.Popen([python, str(script)], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    tf = proc.stdout.readline().strip()
    wait_for(started, proc)
    answer = cancel(tf, cwd=work, env=env)
    assert answer.returncode == 0 and answer.stdout == "process: canceled\n", answer
    out, err = proc.communicate(timeout=30)
    # (bash may still say "Terminated" for its killed child: the job's processes are frozen
    # before they are signalled, which makes that rare, but a shell that handles SIGTERM can)
    assert "bash: the command was canceled; nothing was kept" in out, (out, err)
    assert gone("sleep 31.25") and rows(tmp / "cache", tf) == []


# --- a job server ---------------------------------------------------------------------------


def test_a_job_on_the_job_server_is_canceled_and_none_is_started_to_cancel(remote):  # noqa: F811
    work, env, db = remote
    status_dir = work.parent / "launch" / "server"
    answer = cancel("0" * 64, cwd=work, env=env)
    assert answer.returncode == 2 and answer.stdout == "process: not-running\njobserver: not-running\n", answer
    assert not status_dir.exists() or not list(status_dir.glob("jobserver-*.json"))  # none was launched
    command = "sleep 30.5; echo late"
    tf = remote_run(work, env, "--dry", command).stdout.decode().strip()
    assert remote_run(work, env, "true").returncode == 0  # the job server is up
    proc = subprocess.Popen([tool("seamless-run"), command], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    url, token = jobserver_of(work)
    deadline = time.monotonic() + 30
    while json.loads(post(url, f"/transformation-status/{tf}", method="GET", token=token)[1])["status"] != "running":
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    answer = cancel(tf, cwd=work, env=env)
    assert answer.returncode == 0 and answer.stdout == "process: not-running\njobserver: canceled\n", answer
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and out == b"", err  # as a canceled local run
    assert err.decode().strip().splitlines()[-1] == CANCELED_LINE
    assert gone("sleep 30.5")
    assert [r for r in records(db) if r["tf_checksum"] == tf] == []


# --- a Dask cluster -------------------------------------------------------------------------

needs_dask = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import distributed"], capture_output=True).returncode != 0,
    reason="the dask extra is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from test_dask_execution import CLUSTERS, Lab

    lab = Lab(tmp_path_factory.mktemp("cancellab"))
    # and a queue of one Seamless slot (exclusive), where a second task waits for the first
    one = '    one: {{memory: 1GB, walltime: "01:00:00", cores: 1, maximum_jobs: 1, exclusive: true}}\n'
    (lab.base / "home" / ".seamless" / "clusters.yaml").write_text(
        CLUSTERS.replace("  queues:\n", "  queues:\n" + one).format(base=lab.base))
    yield lab
    lab.stop()


@needs_dask
def test_a_task_on_a_dask_cluster_is_canceled_for_every_client(lab):
    started, late = lab.base / "started", lab.base / "late"
    command = f"touch {started}; sleep 32.25; touch {late}"
    tf = lab.run("--dry", command).stdout.decode().strip()
    answer = cancel(tf, cwd=lab.work, env=lab.env)  # no daskserver yet: none is launched to cancel
    assert answer.returncode == 2 and answer.stdout == "process: not-running\ndask: not-running\n", answer
    assert not lab.running("daskserver-lab-rw-proj--QUEUE-main")
    assert lab.run("true").returncode == 0  # the cluster is up
    proc = subprocess.Popen([tool("seamless-run"), command], cwd=lab.work, env=lab.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_for(started, proc)
    answer = cancel(tf, cwd=lab.work, env=lab.env)
    assert answer.returncode == 0 and answer.stdout == "process: not-running\ndask: canceled\n", answer
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and out == b"", err
    assert err.decode().strip().splitlines()[-1] == CANCELED_LINE
    assert gone("sleep 32.25")
    time.sleep(0.5)
    assert not late.exists() and lab.record(tf) is None


@needs_dask
def test_a_dask_task_canceled_before_it_starts_fails_as_canceled(lab):
    started = lab.base / "started-first"
    first, second = f"touch {started}; sleep 33.75", "echo second"
    queue = ("--queue", "one")
    tfs = [lab.run(*queue, "--dry", command).stdout.decode().strip() for command in (first, second)]
    procs = []
    try:
        for command in (first, second):
            procs.append(subprocess.Popen([tool("seamless-run"), *queue, command], cwd=lab.work, env=lab.env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            if command == first:
                wait_for(started, procs[0])  # the only slot is taken: the second task will wait at the scheduler
        deadline = time.monotonic() + 60
        while (answer := cancel(*queue, tfs[1], cwd=lab.work, env=lab.env)).returncode == 2:
            assert time.monotonic() < deadline and procs[1].poll() is None, procs[1].communicate()
            time.sleep(0.2)
        assert answer.returncode == 0 and answer.stdout == "process: not-running\ndask: canceled\n", answer
        out, err = procs[1].communicate(timeout=30)
        assert procs[1].returncode == 130 and out == b"", err  # not "the Dask scheduler went away"
        assert err.decode().strip().splitlines()[-1] == CANCELED_LINE
        assert lab.record(tfs[1]) is None and procs[0].poll() is None  # the running one goes on
        answer = cancel(*queue, tfs[0], cwd=lab.work, env=lab.env)  # and is canceled where it runs
        assert answer.returncode == 0 and answer.stdout == "process: not-running\ndask: canceled\n", answer
        out, err = procs[0].communicate(timeout=30)
        assert procs[0].returncode == 130 and err.decode().strip().splitlines()[-1] == CANCELED_LINE, err
        assert gone("sleep 33.75")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert lab.run(*queue, second).stdout == b"second\n"  # nothing remembered the cancel


@needs_dask
def test_a_queued_command_canceled_on_dask_ends_as_a_canceled_command(lab):
    """job.canceled() (seamless-queue's stop) while the task runs on Dask: a command's
    cancel, as where it runs (jobdir.CANCELED, exit 130), not a Python transformation's."""
    from seamless.execution import jobdir

    started = lab.base / "started-queued"
    command = f"touch {started}; sleep 34.25; echo late > late.txt"
    submitted = subprocess.run([tool("seamless-run"), "--qsubmit", "-cp", "late.txt", command], cwd=lab.work,
                               env=lab.env, capture_output=True, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    log = lab.base / "queue.err"
    with open(log, "wb") as f:
        queue = subprocess.Popen([tool("seamless-queue")], cwd=lab.work, env=lab.env, stdout=subprocess.DEVNULL,
                                 stderr=f)
    try:
        wait_for(started, queue, timeout=90)
        queue.send_signal(signal.SIGTERM)
        assert queue.wait(60) == 130
    finally:
        if queue.poll() is None:
            queue.kill()
            queue.wait()
    lines = log.read_text().splitlines()
    assert [line for line in lines if line.startswith("seamless-queue: error: job 1 (")] == \
        [line for line in lines if line.endswith(f"): {jobdir.CANCELED}")] != [], lines
    assert gone("sleep 34.25") and not (lab.work / "late.txt").exists()
    assert not (lab.work / "late.txt.FUTURE").exists()
