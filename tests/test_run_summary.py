"""seamless-run says what happened: -v per step (executed / cache hit / waiting for a
.FUTURE), and SEAMLESS_SUMMARY=1's one line at the end of a script (real processes: a
script started in a session of its own is its own job, as job control or sbatch make it)."""

import os
import re
import subprocess
import sys
import time

import pytest

from conftest import cache_env, tool
from test_jobserver import remote  # noqa: F401 (the fixture: a project with execution: remote on a job server)

SUMMARY = re.compile(r"^seamless: (\d+) steps?: (.*)$")
# run as the script's last step: how many summary watchers are in this session now
WATCHERS = (f"{sys.executable} -c \"import os; s = os.getsid(0); print('watchers:', sum("
            "1 for p in os.listdir('/proc') if p.isdigit() and p != str(os.getpid()) and os.path.exists(f'/proc/{p}/cmdline') "
            "and b'seamless.run.summary' in open(f'/proc/{p}/cmdline', 'rb').read() "
            "and int(open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[3]) == s))\"")


@pytest.fixture
def env(tmp_path):
    e = cache_env(tmp_path)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    e["XDG_RUNTIME_DIR"] = str(runtime)
    return e


def run(argv, cwd, env, **kw):
    return subprocess.run([tool("seamless-run"), *argv], cwd=cwd, env=env, capture_output=True, timeout=60, **kw)


def script(work, text, env, **kw):
    """Run a bash script as its own job (a session of its own); its stderr is a pipe, held by
    a watcher until it has printed, so this returns after the summary line."""
    (work / "script.sh").write_text(text)
    proc = subprocess.Popen(["bash", "script.sh"], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, **kw)
    proc.stdout, proc.stderr = proc.communicate(timeout=60)
    return proc


def summaries(stderr: bytes):
    return [line for line in stderr.decode().splitlines() if SUMMARY.match(line)]


def session_processes(sid):
    """The live processes of a session (a watcher that has just exited may be a zombie for a moment)."""
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append(pid)
    return found


def test_verbose_says_executed_then_cache_hit_and_quiet_says_nothing(work, env):
    command = "sleep 0.2; sort -r data.txt"
    first = run(["-v", command], work, env)
    assert first.returncode == 0 and first.stdout == b"c\nb\na\n", first.stderr
    lines = first.stderr.decode().splitlines()
    assert any(line.startswith("seamless-run: store: buffers in ") for line in lines)
    executed = [line for line in lines if "executed in" in line]
    assert len(executed) == 1 and re.fullmatch(r"seamless-run: executed in \d+\.\d s \(process\)", executed[0])
    assert not any("cache hit" in line for line in lines)

    again = run(["-v", command], work, env)
    assert again.stdout == b"c\nb\na\n"
    hits = [line for line in again.stderr.decode().splitlines() if "cache hit" in line]
    # the hit names the result and, from the execution record, how long computing it took
    assert len(hits) == 1 and re.fullmatch(r"seamless-run: cache hit: result [0-9a-f]{64} "
                                           r"\(computing it took \d+\.\d s\)", hits[0]), hits
    assert float(hits[0].split("took ")[1].split()[0]) >= 0.2
    assert not any("executed in" in line for line in again.stderr.decode().splitlines())

    quiet = run(["-q", command], work, env)
    assert quiet.stdout == b"c\nb\na\n" and quiet.stderr == b""
    quiet_miss = run(["-q", "sort data.txt"], work, {**env, "SEAMLESS_SUMMARY": "1"}, start_new_session=True)
    assert quiet_miss.stdout == b"a\nb\nc\n" and quiet_miss.stderr == b""  # -q silences the summary too
    plain = run(["sort data.txt"], work, env)
    assert plain.stderr == b""  # no summary without the variable


def test_summary_of_a_script(work, env):
    text = ("seamless-run 'sleep 0.3; sort -r data.txt'\n"
            "seamless-run 'wc -l data.txt'\n"
            "seamless-run 'sleep 0.3; sort -r data.txt'\n"
            "echo script done >&2\n" + WATCHERS + "\n")
    proc = script(work, text, {**env, "SEAMLESS_SUMMARY": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines() == ["c", "b", "a", "3 data.txt", "c", "b", "a", "watchers: 1"]
    lines = proc.stderr.decode().splitlines()
    assert lines[0] == "script done" and len(lines) == 2, lines  # one line, after the script's own
    found = SUMMARY.match(lines[1])
    assert found and found.group(1) == "3", lines[1]
    assert re.fullmatch(r"1 cached, 2 executed \(\d+\.\d s\); about \d+\.\d s saved", found.group(2)), lines[1]
    assert float(found.group(2).split("about ")[1].split()[0]) >= 0.1  # the repeat saved its 0.3 s
    # the watcher has printed and gone (its descriptors close a moment before it is gone), and its file with it
    for _ in range(100):
        if not session_processes(proc.pid):
            break
        time.sleep(0.05)
    assert session_processes(proc.pid) == []
    assert os.listdir(os.path.join(env["XDG_RUNTIME_DIR"], "seamless-summary")) == []


def test_no_summary_and_no_watcher_without_the_variable(work, env):
    text = "seamless-run 'sort data.txt'\nseamless-run 'sort data.txt'\n" + WATCHERS + "\n"
    for value in (None, "0"):
        e = dict(env) if value is None else {**env, "SEAMLESS_SUMMARY": value}
        proc = script(work, text, e)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.decode().splitlines()[-1] == "watchers: 0"
        assert proc.stderr == b""
        assert not os.path.exists(os.path.join(env["XDG_RUNTIME_DIR"], "seamless-summary"))


def test_summary_goes_to_the_scripts_log_and_counts_failures(work, env, tmp_path):
    """`bash script.sh 2>log`: the line is appended to the log, after what the script wrote;
    a step that fails counts as failed (stderr of one step redirected elsewhere changes nothing)."""
    (work / "script.sh").write_text("seamless-run 'sort data.txt' 2>/dev/null\n"
                                    "seamless-run 'echo broken >&2; exit 3' || echo failed as expected >&2\n"
                                    "echo last words >&2\n")
    log = tmp_path / "log"
    with open(log, "wb") as err:
        proc = subprocess.run(["bash", "script.sh"], cwd=work, env={**env, "SEAMLESS_SUMMARY": "1"},
                              stdout=subprocess.PIPE, stderr=err, start_new_session=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"a\nb\nc\n"
    for _ in range(200):  # the watcher writes just after the script's end
        if summaries(log.read_bytes()):
            break
        time.sleep(0.05)
    lines = log.read_text().splitlines()
    assert lines[-2] == "last words" and "failed as expected" in lines
    assert re.fullmatch(r"seamless: 2 steps: 1 executed \(\d+\.\d s\), 1 failed", lines[-1]), lines


def test_a_last_step_the_shell_execs_prints_the_scripts_line(work, env):
    """`bash -c 'a; b; c'` execs c in place: c is the job's leader itself, finds the steps
    before it and prints the script's line at its end, even with -q (which silences the
    step's own messages, not the script's summary)."""
    proc = subprocess.run(["bash", "-c", "seamless-run 'echo h4'; seamless-run 'echo h4'; seamless-run -q 'echo h4'"],
                          cwd=work, env={**env, "SEAMLESS_SUMMARY": "1"}, capture_output=True, timeout=60,
                          start_new_session=True)  # as setsid -w bash -c '...' does
    assert proc.returncode == 0 and proc.stdout == b"h4\n" * 3, proc.stderr
    assert re.fullmatch(r"seamless: 3 steps: 2 cached, 1 executed \(\d+\.\d s\); about \d+\.\d s saved\n",
                        proc.stderr.decode()), proc.stderr
    assert os.listdir(os.path.join(env["XDG_RUNTIME_DIR"], "seamless-summary")) == []


def test_nested_scripts_without_job_control_merge_into_the_outer_line(work, env):
    """A script that runs `bash inner.sh 2>log` makes no job of inner.sh (a non-interactive
    shell has no job control): the inner steps count in the outer script's one line, on the
    outer script's stderr, and nothing goes to the inner logs."""
    (work / "inner.sh").write_text("seamless-run 'sort data.txt'\nseamless-run 'wc -l data.txt'\n")
    text = ("".join(f"bash inner.sh 2>log{i}\n" for i in range(3)) + "echo outer done >&2\n"
            "setsid -w bash inner.sh 2>job.log\n")  # a job of its own: its line in its log, not counted above
    proc = script(work, text, {**env, "SEAMLESS_SUMMARY": "1"})
    assert proc.returncode == 0, proc.stderr
    assert [(work / f"log{i}").read_bytes() for i in range(3)] == [b""] * 3
    for _ in range(200):  # the inner job's watcher writes just after it ends
        if summaries((work / "job.log").read_bytes()):
            break
        time.sleep(0.05)
    assert re.fullmatch(r"seamless: 2 steps: 2 cached; about \d+\.\d s saved\n", (work / "job.log").read_text())
    lines = proc.stderr.decode().splitlines()
    assert lines[0] == "outer done" and len(lines) == 2, lines
    assert re.fullmatch(r"seamless: 6 steps: 4 cached, 2 executed \(\d+\.\d s\); about \d+\.\d s saved",
                        lines[1]), lines


def test_a_single_run_that_is_its_own_job_prints_its_own_line(work, env):
    e = {**env, "SEAMLESS_SUMMARY": "1"}
    first = run(["sleep 0.2; sort data.txt"], work, e, start_new_session=True)
    assert first.stdout == b"a\nb\nc\n"
    assert re.fullmatch(r"seamless: 1 step: 1 executed \(\d+\.\d s\)\n", first.stderr.decode())
    second = run(["sleep 0.2; sort data.txt"], work, e, start_new_session=True)
    assert re.fullmatch(r"seamless: 1 step: 1 cached; about \d+\.\d s saved\n", second.stderr.decode())
    assert os.listdir(os.path.join(env["XDG_RUNTIME_DIR"], "seamless-summary")) == []


@pytest.mark.parametrize("planted", ["open", "link"])
def test_a_directory_that_is_not_private_is_not_used(work, env, tmp_path, planted):
    """Someone else's (or a world-writable, or a symlinked) summary directory gets nothing."""
    target = os.path.join(env["XDG_RUNTIME_DIR"], "seamless-summary")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    os.chmod(elsewhere, 0o777)
    if planted == "open":
        os.mkdir(target)
        os.chmod(target, 0o777)
    else:
        os.symlink(elsewhere, target)
    proc = script(work, "seamless-run 'sort data.txt'\nseamless-run 'sort data.txt'\n",
                  {**env, "SEAMLESS_SUMMARY": "1"})
    assert proc.returncode == 0
    assert b"is not a private directory" in proc.stderr
    assert len(summaries(proc.stderr)) == 2  # each step said what it did, nothing was written there
    assert os.listdir(elsewhere) == [] and (planted == "link" or os.listdir(target) == [])


def test_waiting_for_a_future_is_said_under_verbose(work, env):
    first = subprocess.Popen([tool("seamless-run"), "-cp", "mid.txt", "sleep 1.5; seq 3 > mid.txt"], cwd=work,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(100):
        if (work / "mid.txt.FUTURE").exists():
            break
        time.sleep(0.05)
    second = run(["-v", "wc -l mid.txt"], work, env)
    assert first.wait(30) == 0
    assert second.returncode == 0 and second.stdout == b"3 mid.txt\n"
    said = [line for line in second.stderr.decode().splitlines() if "FUTURE" in line]
    assert said == ["seamless-run: waiting for mid.txt.FUTURE (another seamless-run is still producing mid.txt)"]


@pytest.mark.parametrize("how", ["script", "wrap"])
def test_summary_at_the_end_of_an_sbatch_job(slurm, work, env, tmp_path, how):
    """An sbatch script is its own job (slurmstepd makes it a session leader without a
    terminal): its summary line ends the job's output file, even though SLURM ends what
    the job leaves running as soon as the script exits; so does `sbatch --wrap`'s, its
    last step -q."""
    (work / "job.sh").write_text("#!/bin/bash\nseamless-run 'sort data.txt'\nseamless-run 'sort data.txt'\n"
                                 "echo job done >&2\n")
    job = (["job.sh"] if how == "script" else
           ["--wrap", "seamless-run 'sort data.txt'; seamless-run 'sort data.txt'; echo job done >&2; "
                      "seamless-run -q 'sort data.txt' > /dev/null"])
    out = tmp_path / "job.out"
    proc = slurm.run(["sbatch", "--parsable", "-o", str(out), *job], cwd=work, capture_output=True, text=True,
                     env={**env, "SEAMLESS_SUMMARY": "1"}, check=True)
    job_id = proc.stdout.strip().split(";")[0]
    assert slurm.wait_until(lambda: (slurm.job(job_id) or {}).get("JobState") == "COMPLETED", 60)

    def summarised():
        lines = out.read_text().splitlines() if out.exists() else []
        return lines if lines and SUMMARY.match(lines[-1]) else None

    lines = slurm.wait_until(summarised, 30, what="the summary line in the job's output")
    assert lines[:-1] == ["a", "b", "c", "a", "b", "c", "job done"]
    steps = 2 if how == "script" else 3
    assert re.fullmatch(rf"seamless: {steps} steps: {steps - 1} cached, 1 executed \(\d+\.\d s\); "
                        r"about \d+\.\d s saved", lines[-1]), lines


def test_verbose_says_where_it_ran_on_a_job_server(remote):  # noqa: F811
    work, env, _ = remote
    proc = run(["-v", "sort data.txt"], work, env)
    assert proc.returncode == 0 and proc.stdout == b"a\nb\n", proc.stderr
    assert re.search(r"^seamless-run: executed in \d+\.\d s \(jobserver\)$", proc.stderr.decode(), re.M), proc.stderr
