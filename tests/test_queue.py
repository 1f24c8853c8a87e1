"""seamless-run --qsubmit, seamless-queue, seamless-queue-finish: real processes on a real
queue file (upstream's protocol: JSON records separated by NUL bytes, QUEUEFILE.LOCK)."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import tool

VENV = os.environ.get("SEAMLESS_UPSTREAM_VENV", "")


def run(name, argv, cwd, env, timeout=120):
    return subprocess.run([tool(name), *argv], cwd=cwd, env=env, capture_output=True, timeout=timeout)


def submit(argv, cwd, env):
    proc = run("seamless-run", ["--qsubmit", *argv], cwd, env)
    assert proc.returncode == 0, proc.stderr
    return proc


class Queue:
    """A seamless-queue in the background, as in `seamless-queue & ...; seamless-queue-finish`."""

    def __init__(self, cwd, env, *argv):
        self.log = cwd.parent / f"queue-{time.monotonic_ns()}.err"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([tool("seamless-queue"), *argv], cwd=cwd, env=env,
                                         stdout=subprocess.DEVNULL, stderr=log)
        self.cwd, self.env = cwd, env

    def finish(self):
        fin = run("seamless-queue-finish", [], self.cwd, self.env)
        code = self.proc.wait(60)
        return fin, code, self.log.read_text()


def record_file(path, *records):
    with open(path, "ab") as f:
        for record in records:
            f.write(json.dumps(record, indent=2).encode() + b"\0")


def upstream_record(work, env, code, targets, workdir=None):
    """A SUBMIT record written by hand as upstream's seamless-run writes it (§1.8), its code
    buffer stored with seamless-upload; no key of ours."""
    from seamless.identity import transformation_checksum

    (work.parent / "code.txt").write_text(code)
    assert run("seamless-upload", [str(work.parent / "code.txt")], work, env).returncode == 0
    code_cs = (work.parent / "code.txt.CHECKSUM").read_text().strip()
    transformation = {"__language__": "bash", "__output__": ["result", "deepfolder", None],
                      "code": ["text", None, code_cs]}
    return {"queue_command": "SUBMIT", "original_command": "seamless-run " + code.replace("\n", "; "),
            "transformation_checksum": transformation_checksum(transformation),
            "transformation_dict": transformation, "result_targets": targets,
            "params": {"undo": False, "scratch": False, "workdir": str(workdir or work), "download": True,
                       "auto_confirm": "no", "capture_stdout": False, "max_download_size": 500000000,
                       "max_download_files": 2000}}


def test_jobs_run_concurrently_and_leave_results_not_futures(work, env):
    for name in ("one", "two"):  # each job: when it started and ended
        submit(["-cp", f"{name}.txt", f'start=$(date +%s.%N); sleep 2; echo $start $(date +%s.%N) > {name}.txt'],
               work, env)
    submit(["-cp", "res", "-cp", ":so.txt", "mkdir -p res/s; sort -r data.txt > res/s/sorted.txt; echo hi"],
           work, env)
    queue = Queue(work, env, "--workers", "2")  # queued before it starts: a slow submit cannot serialize them
    fin, code, log = queue.finish()
    assert fin.returncode == 0 and code == 0, (fin.stderr, log)
    (s1, e1), (s2, e2) = [map(float, (work / f"{n}.txt").read_text().split()) for n in ("one", "two")]
    assert max(s1, s2) < min(e1, e2), "the two 2-second jobs did not overlap"
    assert (work / "one.txt.CHECKSUM").read_text().strip()
    assert (work / "res" / "s" / "sorted.txt").read_text() == "c\nb\na\n"
    assert json.loads((work / "res.INDEX").read_text()).keys() == {"s/sorted.txt"}
    assert (work / "so.txt").read_text() == "hi\n" and (work / "so.txt.CHECKSUM").exists()
    assert not list(work.rglob("*.FUTURE"))
    assert not (work / ".seamless-queue").exists() and not list(work.glob(".seamless-queue.*"))


def test_futures_from_submission_until_written(work, env):
    """A later step waits for a queued result: the marker is there from --qsubmit on."""
    submit(["-cp", "mid.txt", "sleep 1; seq 3 > mid.txt"], work, env)
    assert (work / "mid.txt.FUTURE").read_text().endswith(".mid.txt\n")
    queue = Queue(work, env)
    later = run("seamless-run", ["wc -l mid.txt"], work, env)  # waits on mid.txt.FUTURE
    assert later.returncode == 0 and later.stdout == b"3 mid.txt\n", later.stderr
    fin, code, log = queue.finish()
    assert fin.returncode == 0 and code == 0, log
    assert not (work / "mid.txt.FUTURE").exists()


def test_cache_hit_through_the_queue(work, env, tmp_path):
    count = tmp_path / "count"
    argv = ["--metavar", f"COUNT={count}", "-cp", "x.txt", 'seq 3 > x.txt; echo run >> "$COUNT"']
    assert run("seamless-run", argv, work, env).returncode == 0
    (work / "x.txt").unlink()
    queue = Queue(work, env)
    submit(argv, work, env)
    fin, code, log = queue.finish()
    assert fin.returncode == 0 and code == 0, log
    assert (work / "x.txt").read_text() == "1\n2\n3\n" and count.read_text() == "run\n"  # not run again


def test_a_failing_job_fails_the_queue_not_the_others(work, env):
    queue = Queue(work, env, "--workers", "2")
    submit(["-cp", "bad.txt", "sleep 0.5; exit 3"], work, env)
    # upstream's key joins the argv unquoted (§1.8); ours keeps the words, and messages quote them
    records = [json.loads(c) for c in (work / ".seamless-queue").read_bytes().split(b"\0") if c.strip()]
    assert records[0]["original_command"] == "seamless-run --qsubmit -cp bad.txt sleep 0.5; exit 3"
    assert records[0]["original_argv"] == ["seamless-run", "--qsubmit", "-cp", "bad.txt", "sleep 0.5; exit 3"]
    submit(["-cp", "good.txt", "sleep 1; echo ok > good.txt"], work, env)
    fin, code, log = queue.finish()
    assert code == 1 and fin.returncode == 1, fin.stderr
    assert b"2 records: 2 jobs run (1 failed), 0 refused" in fin.stderr
    errors = [line for line in log.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "exit code 3" in errors[0], log
    assert errors[0].startswith("seamless-queue: error: job 1 (seamless-run --qsubmit -cp bad.txt 'sleep 0.5; exit 3'): ")
    assert (work / "good.txt").read_text() == "ok\n"
    assert not list(work.glob("*.FUTURE"))


def test_upstream_format_and_malformed_records(work, env):
    """A hand-written upstream record runs; garbage and a lying checksum are error lines."""
    good = upstream_record(work, env, "mkdir -p RESULT/\necho hi > out.txt\nmv out.txt RESULT/\n",
                           {"out.txt": None})
    lying = {**good, "transformation_checksum": "0" * 64, "result_targets": {"out.txt": "lie.txt"}}
    queue_file = work / ".seamless-queue"
    with open(queue_file, "wb") as f:
        f.write(b"this is not json\0" + b"\xff\xfe\0" + json.dumps({"no": "command"}).encode() + b"\0")
    late = {**good, "result_targets": {"out.txt": "late.txt"}}
    record_file(queue_file, {"queue_command": "SUBMIT"}, lying, good, {"queue_command": "EOF"}, late)
    proc = run("seamless-queue", [], work, env, timeout=60)
    log = proc.stderr.decode()
    assert proc.returncode == 1, log
    assert (work / "out.txt").read_text() == "hi\n" and (work / "out.txt.CHECKSUM").exists()
    assert not (work / "lie.txt").exists() and "is not that of its transformation_dict" in log
    assert "not valid JSON" in log and "not valid text" in log and "not a queue command" in log
    assert "params is missing" in log
    assert "refused: submitted after seamless-queue-finish, not run" in log and not (work / "late.txt").exists()
    assert not queue_file.exists()


def test_targets_must_stay_inside_the_workdir(work, env, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "link").symlink_to(outside)
    code = "mkdir -p RESULT/\necho evil > x.txt\nmv x.txt RESULT/\n"
    records = [upstream_record(work, env, code, targets) for targets in
               ({"x.txt": "../outside/x.txt"}, {"x.txt": str(outside / "x.txt")}, {"x.txt": "link/x.txt"},
                {"../x.txt": "x.txt"}, {"": None}, {".": None}, {"x.txt": "."}, {"x.txt": "./"}, {"x.txt": ""})]
    record_file(work / ".seamless-queue", *records, {"queue_command": "EOF"})
    proc = run("seamless-queue", [], work, env, timeout=60)
    log = proc.stderr.decode()
    assert proc.returncode == 1
    assert log.count("outside the workdir") == 3 and log.count("through a symlink") == 1, log
    # an empty target or the workdir itself is not "outside": it is no file at all
    assert log.count("an empty path, not a file in it, cannot be a result target") == 2, log
    assert log.count("is the workdir itself, not a file in it, cannot be a result target") == 3, log
    assert "9 records: 0 jobs run (0 failed), 9 refused" in log
    assert not list(outside.iterdir()) and not (work / "x.txt").exists()
    # and --qsubmit refuses them before anything is queued
    refused = run("seamless-run", ["--qsubmit", "-cp", f"x.txt:{outside}/y.txt", "echo y > x.txt"], work, env)
    assert refused.returncode == 1 and b"outside the current directory" in refused.stderr
    assert not (work / ".seamless-queue").exists()


def test_refused_records_leave_no_future_markers(work, env, tmp_path):
    """A record the queue refuses removes the .FUTURE markers --qsubmit wrote for it, so a
    later step does not wait for it; only its own (their text names its transformation),
    only inside its workdir, never through a symlink out of it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("victim\n")
    submit(["-cp", "g2.txt", "echo overwritten > g2.txt"], work, env)
    assert (work / "g2.txt.FUTURE").exists()
    (work / "g2.txt").symlink_to(outside / "victim.txt")  # after --qsubmit, which refuses it (below)
    (work / "sub").mkdir()
    (work / "inner").symlink_to("sub")  # a link that stays inside the workdir
    (work / "link").symlink_to(outside)
    lying = upstream_record(work, env, "mkdir -p RESULT/\necho x > y.txt\nmv y.txt RESULT/\n",
                            {"y.txt": None, "z.txt": None, "s.txt": None, "i.txt": "inner/i.txt",
                             "o.txt": "link/o.txt", "STDOUT": "out.txt"})
    claimed = lying["transformation_checksum"] = "0" * 64  # refused: not its transformation's checksum
    for name in ("y.txt", "inner/i.txt", "out.txt"):  # as --qsubmit writes them for this record
        (work / f"{name}.FUTURE").write_text(f"{claimed}.{name.split('/')[-1]}\n")
    (work / "out.txt.FUTURE").write_text(f"{claimed}.STDOUT\n")
    (work / "z.txt.FUTURE").write_text("1" * 64 + ".z.txt\n")  # another job's marker at the same place
    (outside / "s.txt.FUTURE").write_text(f"{claimed}.s.txt\n")
    (work / "s.txt.FUTURE").symlink_to(outside / "s.txt.FUTURE")  # a marker that is a link out
    (outside / "o.txt.FUTURE").write_text(f"{claimed}.o.txt\n")  # reached through a link out
    record_file(work / ".seamless-queue", lying, {"queue_command": "EOF"})
    submit(["-cp", "late.txt", "echo late > late.txt"], work, env)  # after the EOF: refused, not run
    assert (work / "late.txt.FUTURE").exists()
    proc = run("seamless-queue", [], work, env, timeout=60)
    log = proc.stderr.decode()
    assert proc.returncode == 1, log
    assert "record 1 (seamless-run --qsubmit -cp g2.txt 'echo overwritten > g2.txt') refused: " in log
    assert log.count("through a symlink") == 2, log
    assert "record 3 (seamless-run --qsubmit -cp late.txt 'echo late > late.txt') refused: submitted after" in log
    assert "3 records: 0 jobs run (0 failed), 3 refused" in log
    assert (outside / "victim.txt").read_text() == "victim\n"
    for gone in ("g2.txt", "y.txt", "sub/i.txt", "out.txt", "late.txt"):
        assert not os.path.lexists(work / f"{gone}.FUTURE"), gone
    assert (work / "z.txt.FUTURE").read_text() == "1" * 64 + ".z.txt\n"
    assert os.path.islink(work / "s.txt.FUTURE") and (outside / "s.txt.FUTURE").exists()
    assert (outside / "o.txt.FUTURE").exists()
    later = run("seamless-run", ["cat g2.txt"], work, env, timeout=30)  # does not wait for the refused job
    assert later.returncode == 0 and later.stdout == b"victim\n", later.stderr
    # --qsubmit itself refuses a result reached through a symlink out of the directory
    refused = run("seamless-run", ["--qsubmit", "-cp", "g2.txt", "echo overwritten > g2.txt"], work, env)
    assert refused.returncode == 1 and b"through a symlink that leaves the current directory" in refused.stderr
    assert not (work / "g2.txt.FUTURE").exists() and not (work / ".seamless-queue").exists()


def test_counts_of_records_jobs_refusals_and_failures(work, env):
    """18 records, 5 malformed, 3 failing: each count on its own, the same in both tools."""
    good = upstream_record(work, env, "mkdir -p RESULT/\necho hi > out.txt\nmv out.txt RESULT/\n",
                           {"out.txt": None})
    bad = upstream_record(work, env, "exit 3\n", {"bad.txt": None})
    queue_file = work / ".seamless-queue"
    with open(queue_file, "wb") as f:
        f.write(b"not json\0" + b"\xff\xfe\0" + json.dumps({"no": "command"}).encode() + b"\0")
    record_file(queue_file, {"queue_command": "BOGUS"}, {"queue_command": "SUBMIT"},
                *({**good, "result_targets": {"out.txt": f"out{i}.txt"}} for i in range(10)),
                *({**bad, "result_targets": {"bad.txt": f"bad{i}.txt"}} for i in range(3)))
    queue = Queue(work, env, "--workers", "2")
    fin, code, log = queue.finish()
    assert code == 1 and fin.returncode == 1, log
    assert "seamless-queue: 18 records: 13 jobs run (3 failed), 5 refused" in log.splitlines(), log
    assert b"18 records: 13 jobs run (3 failed), 5 refused" in fin.stderr, fin.stderr
    assert sum(" refused: " in line for line in log.splitlines()) == 5, log
    assert sum(line.startswith("seamless-queue: error: job ") for line in log.splitlines()) == 3, log
    assert [(work / f"out{i}.txt").read_text() for i in range(10)] == ["hi\n"] * 10
    assert not list(work.glob("*.FUTURE"))


def test_qsubmit_refuses_stdout_and_dry(work, env):
    proc = run("seamless-run", ["--qsubmit", "cat", "data.txt"], work, env)
    assert proc.returncode == 1 and b"-cp" in proc.stderr and b"error:" in proc.stderr
    proc = run("seamless-run", ["--qsubmit", "--dry", "-cp", "o.txt", "cat data.txt > o.txt"], work, env)
    assert proc.returncode == 1 and b"--dry" in proc.stderr
    assert not (work / ".seamless-queue").exists()


def test_finish_without_a_queue(work, env):
    (work / ".seamless-queue.RUNNING").write_text(json.dumps({"pid": 999999999, "hostname": os.uname().nodename}))
    started = time.monotonic()
    proc = run("seamless-queue-finish", [], work, env)
    assert proc.returncode == 1 and b"no seamless-queue is serving" in proc.stderr, proc.stderr
    assert time.monotonic() - started < 60
    assert not (work / ".seamless-queue").exists()  # no EOF left to stop a queue started later


def test_one_queue_per_file(work, env):
    queue = Queue(work, env)
    for _ in range(100):
        if (work / ".seamless-queue.RUNNING").exists():
            break
        time.sleep(0.1)
    second = run("seamless-queue", [], work, env, timeout=60)
    assert second.returncode == 1 and b"another seamless-queue" in second.stderr
    fin, code, log = queue.finish()
    assert fin.returncode == 0 and code == 0, log


def test_sigterm_cancels_running_jobs(work, env, tmp_path):
    queue = Queue(work, env)
    submit(["--metavar", f"PIDFILE={tmp_path / 'pid'}", "-cp", "slow.txt", 'echo $$ > "$PIDFILE"; sleep 60'],
           work, env)
    for _ in range(300):
        if (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip():
            break
        time.sleep(0.1)
    pid = int((tmp_path / "pid").read_text())
    queue.proc.send_signal(signal.SIGTERM)
    assert queue.proc.wait(30) == 130
    assert not (work / "slow.txt.FUTURE").exists() and not (work / ".seamless-queue.RUNNING").exists()
    for _ in range(50):  # the job's shell was killed with its queue
        if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the canceled job's process is still running")


def test_lock_file_and_concurrent_submits(work, env):
    lock = work / ".seamless-queue.LOCK"
    lock.touch()
    os.utime(lock, (time.time() - 60, time.time() - 60))  # stale: its writer died
    submit(["-cp", "s.txt", "echo s > s.txt"], work, env)
    lock.touch()  # fresh: an upstream writer is appending
    waiting = subprocess.Popen([tool("seamless-run"), "--qsubmit", "-cp", "w.txt", "echo w > w.txt"], cwd=work,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2)
    records = (work / ".seamless-queue").read_bytes().count(b"\0")
    assert records == 1, "a record was appended while another writer held the lock"
    lock.unlink()
    assert waiting.wait(60) == 0
    procs = [subprocess.Popen([tool("seamless-run"), "--qsubmit", "-cp", f"p{i}.txt", f"echo {i} > p{i}.txt"],
                              cwd=work, env=env) for i in range(6)]
    assert all(p.wait(120) == 0 for p in procs)
    chunks = [c for c in (work / ".seamless-queue").read_bytes().split(b"\0") if c]
    assert len(chunks) == 8 and all(json.loads(c)["queue_command"] == "SUBMIT" for c in chunks)
    assert not lock.exists()
    queue = Queue(work, env, "--workers", "3")
    fin, code, log = queue.finish()
    assert fin.returncode == 0 and code == 0, log
    assert [(work / f"p{i}.txt").read_text() for i in range(6)] == [f"{i}\n" for i in range(6)]


@pytest.mark.skipif(not (VENV and os.path.exists(os.path.join(VENV, "bin", "seamless-run"))),
                    reason="no upstream virtualenv (SEAMLESS_UPSTREAM_VENV)")
def test_upstream_qsubmit_runs_in_our_queue(work, env, tmp_path):
    upstream_env = {**env, "PATH": os.path.join(VENV, "bin") + os.pathsep + env["PATH"],
                    "HOME": str(tmp_path / "upstream-home")}
    proc = subprocess.run([os.path.join(VENV, "bin", "seamless-run"), "--qsubmit", "-cp", "up.txt",
                           "cat data.txt | tr a-z A-Z > up.txt"], cwd=work, env=upstream_env, capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record_file(work / ".seamless-queue", {"queue_command": "EOF"})
    ours = run("seamless-queue", [], work, env, timeout=60)
    assert ours.returncode == 0, ours.stderr
    assert (work / "up.txt").read_text() == "A\nB\nC\n" and not list(work.glob("*.FUTURE"))
