"""Never a wrong result, never a lost file, never a write outside the target (issue 10).

Each test is a regression test for a defect found by trying the tools as an unlucky or
hostile user would: corrupt or tampered stored buffers, compressed results, poisoned
directory indexes, background processes, symlink cycles, big outputs, killed runs.
"""

import gzip
import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import time

import pytest

from conftest import tool


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["SEAMLESS_CACHE"] = str(tmp_path / "cache")
    return e


@pytest.fixture
def work(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    (d / "data.txt").write_text("hello\n")
    return d


def call(name, *argv, cwd, env, timeout=120, **kw):
    return subprocess.run([tool(name), *argv], cwd=cwd, env=env, capture_output=True, timeout=timeout, **kw)


def run(*argv, cwd, env, **kw):
    return call("seamless-run", *argv, cwd=cwd, env=env, **kw)


def stored(tmp_path, cs):
    """The stored file of a buffer in the SEAMLESS_CACHE of `env`."""
    return tmp_path / "cache" / "__TOPLEVEL__" / cs[:2] / cs


def corrupt(path, data=b"corrupt\n"):
    os.chmod(path, 0o644)
    path.write_bytes(data)


def count_runs(tmp_path):
    path = tmp_path / "count"
    return ["--metavar", f"COUNT={path}"], lambda: len(path.read_text().split()) if path.exists() else 0


# --- 1. integrity -----------------------------------------------------------------------


def test_a_corrupt_stored_input_is_never_used(work, env, tmp_path):
    assert run("cat data.txt", cwd=work, env=env).stdout == b"hello\n"
    corrupt(stored(tmp_path, sha(b"hello\n")), b"jello\n")
    proc = run("tr a-z A-Z < data.txt", cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"HELLO\n"  # re-stored from the user's file, which is right there
    assert stored(tmp_path, sha(b"hello\n")).read_bytes() == b"hello\n"


def test_a_corrupt_stored_input_behind_a_sidecar_is_an_error_not_a_result(work, env, tmp_path):
    assert call("seamless-upload", "--move", "data.txt", cwd=work, env=env).returncode == 0
    corrupt(stored(tmp_path, sha(b"hello\n")), b"jello\n")
    proc = run("tr a-z A-Z < data.txt", cwd=work, env=env)
    assert proc.returncode == 1 and b"JELLO" not in proc.stdout
    assert b"not in any store" in proc.stderr and b"correct sha-256" in proc.stderr
    assert not stored(tmp_path, sha(b"hello\n")).exists()  # the corrupt copy is gone


def test_an_in_place_write_that_restores_the_mtime_is_caught(work, env, tmp_path):
    script = ('m=$(stat -c %y data.txt); printf J | dd of=data.txt conv=notrunc status=none; '
              'touch -d "$m" data.txt; cat data.txt')
    proc = run("-i", "data.txt", script, cwd=work, env=env)
    assert proc.returncode == 1 and b"in place" in proc.stderr
    assert not stored(tmp_path, sha(b"hello\n")).exists()  # the damaged buffer was removed
    proc = run("-i", "data.txt", script, cwd=work, env=env)
    assert proc.returncode == 1  # nothing was cached: it runs (and is caught) again


def test_concurrent_jobs_linking_one_input_are_not_mistaken_for_writers(work, env):
    procs = [subprocess.Popen([tool("seamless-run"), "-i", "data.txt", f"sleep 0.5; cat data.txt; echo {i}"],
                              cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(4)]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and out == f"hello\n{i}\n".encode(), err


@pytest.mark.parametrize("mode", ["stdout", "file"])
def test_a_corrupt_cached_result_is_recomputed(work, env, tmp_path, mode):
    meta, runs = count_runs(tmp_path)
    command = ['echo x >> "$COUNT"; echo result'] if mode == "stdout" else \
              ["-cp", "out.txt", 'echo x >> "$COUNT"; echo result > out.txt']
    assert run(*meta, *command, cwd=work, env=env).returncode == 0
    corrupt(stored(tmp_path, sha(b"result\n")), b"wrong!\n")
    (work / "out.txt").unlink(missing_ok=True)
    proc = run(*meta, *command, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    got = proc.stdout if mode == "stdout" else (work / "out.txt").read_bytes()
    assert got == b"result\n" and runs() == 2
    assert b"correct sha-256" in proc.stderr and b"computing it again" in proc.stderr
    assert stored(tmp_path, sha(b"result\n")).read_bytes() == b"result\n"
    assert run(*meta, *command, cwd=work, env=env).returncode == 0 and runs() == 2  # a hit again


def test_upload_move_over_a_corrupt_stored_copy_keeps_a_good_copy(work, env, tmp_path):
    assert call("seamless-upload", "data.txt", cwd=work, env=env).returncode == 0
    corrupt(stored(tmp_path, sha(b"hello\n")))
    proc = call("seamless-upload", "--move", "data.txt", cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not (work / "data.txt").exists()
    assert stored(tmp_path, sha(b"hello\n")).read_bytes() == b"hello\n"
    assert call("seamless-download", "data.txt", cwd=work, env=env).returncode == 0
    assert (work / "data.txt").read_bytes() == b"hello\n"


def test_a_corrupt_copy_is_not_stored_everywhere(work, tmp_path):
    """What --move asks before it deletes the user's file."""
    from seamless.store.clients import StoreSet
    from seamless.store.directory import DirectoryStore

    store = DirectoryStore(tmp_path / "bufs", writable=True, create=True)
    cs = store.put(b"hello\n")
    corrupt(tmp_path / "bufs" / cs[:2] / cs)
    stores = StoreSet([DirectoryStore(tmp_path / "bufs")], [store])
    store.forget(cs)
    assert stores.stored_everywhere(cs) is False


def test_gz_results_have_exactly_the_bytes_the_command_wrote(work, env):
    assert run("seq 10 | gzip -n > nums.txt.gz", cwd=work, env=env).returncode == 0
    assert gzip.decompress((work / "nums.txt.gz").read_bytes()) == b"".join(b"%d\n" % i for i in range(1, 11))
    proc = run("zcat nums.txt.gz | wc -l", cwd=work, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == b"10"
    assert run("-cp", "out.gz", "seq 3 | gzip -n > out.gz", cwd=work, env=env).returncode == 0
    assert gzip.decompress((work / "out.gz").read_bytes()) == b"1\n2\n3\n"
    assert run("-cp", "d", "mkdir d; seq 2 | gzip -n > d/two.gz", cwd=work, env=env).returncode == 0
    assert gzip.decompress((work / "d" / "two.gz").read_bytes()) == b"1\n2\n"
    (work / "nums.txt.gz").unlink()  # a cache hit delivers the same bytes
    assert run("seq 10 | gzip -n > nums.txt.gz", cwd=work, env=env).returncode == 0
    assert gzip.decompress((work / "nums.txt.gz").read_bytes()).count(b"\n") == 10


def test_a_result_sidecar_belongs_to_the_results_own_name(work, env):
    assert run("gzip -nc data.txt > data.txt.gz", cwd=work, env=env).returncode == 0
    gz = (work / "data.txt.gz").read_bytes()
    assert (work / "data.txt.gz.CHECKSUM").read_text() == sha(gz) + "\n"
    assert not (work / "data.txt.CHECKSUM").exists()
    proc = run("wc -l data.txt", cwd=work, env=env)
    assert proc.returncode == 0 and proc.stdout == b"1 data.txt\n", proc.stderr
    (work / "data.txt.gz").unlink()  # the own-name sidecar downloads the exact bytes
    assert call("seamless-download", "data.txt.gz", cwd=work, env=env).returncode == 0
    assert (work / "data.txt.gz").read_bytes() == gz


# --- 2. security: directory indexes ------------------------------------------------------


def poisoned_index(good_cs, tmp_path):
    return {"ok.txt": good_cs, "../../evil.txt": good_cs, f"{tmp_path}/abs-evil.txt": good_cs}


def test_seamless_download_refuses_index_keys_outside_the_target(work, env, tmp_path):
    (work / "d").mkdir()
    (work / "d" / "ok.txt").write_text("hello\n")
    assert call("seamless-upload", "d", cwd=work, env=env).returncode == 0
    for bad in ("../../evil.txt", f"{tmp_path}/abs-evil.txt", "a/../../evil.txt", "nul\0.txt"):
        index = {"ok.txt": sha(b"hello\n"), bad: sha(b"hello\n")}
        buffer = (json.dumps(index, sort_keys=True, indent=2) + "\n").encode()
        (work / "d.INDEX").write_bytes(buffer)
        (work / "d.CHECKSUM").write_text(sha(buffer) + "\n")
        proc = call("seamless-download", "d", "-o", "out", cwd=work, env=env)
        assert proc.returncode == 1 and b"not a relative path inside" in proc.stderr, proc.stderr
        assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "abs-evil.txt").exists()
        assert not (work / "out").exists()


def test_seamless_run_refuses_a_poisoned_cached_result_index(work, env, tmp_path):
    command = ["-i", "data.txt", "-cp", "out", "mkdir out; cp data.txt out/ok.txt"]
    tf = run("--dry", *command, cwd=work, env=env).stdout.decode().strip()
    assert run(*command, cwd=work, env=env).returncode == 0
    buffer = (json.dumps({f"out/{k}": v for k, v in poisoned_index(sha(b"hello\n"), tmp_path).items()},
                         sort_keys=True, indent=2) + "\n").encode()
    target = stored(tmp_path, sha(buffer))
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(buffer)
    db = sqlite3.connect(tmp_path / "cache" / "__TOPLEVEL__" / "seamless.db")
    db.execute("UPDATE transformation SET result = ? WHERE checksum = ?", (sha(buffer), tf))
    db.commit()
    db.close()
    import shutil

    shutil.rmtree(work / "out")
    for sidecar in ("out.INDEX", "out.CHECKSUM"):
        (work / sidecar).unlink()
    proc = run(*command, cwd=work, env=env)
    assert b"not a relative path inside" in proc.stderr
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "abs-evil.txt").exists()
    # the poisoned row is not served: the command ran again and delivered the real result
    assert proc.returncode == 0 and (work / "out" / "ok.txt").read_text() == "hello\n"


def test_a_symlink_in_the_target_directory_does_not_redirect_a_download(work, env, tmp_path):
    (work / "d" / "sub").mkdir(parents=True)
    (work / "d" / "sub" / "f.txt").write_text("hello\n")
    assert call("seamless-upload", "d", cwd=work, env=env).returncode == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "out").mkdir()
    os.symlink(outside, work / "out" / "sub")
    proc = call("seamless-download", "d", "-o", "out", cwd=work, env=env)
    assert proc.returncode == 1 and b"symlink" in proc.stderr
    assert not list(outside.iterdir())


# --- 3. hangs and resources ---------------------------------------------------------------


def test_background_processes_end_with_the_job(work, env):
    start = time.monotonic()
    proc = run("sleep 25 & echo hi", cwd=work, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"hi\n"
    assert time.monotonic() - start < 15
    assert subprocess.run(["pgrep", "-f", "^sleep 25$"], capture_output=True).returncode == 1


def test_sigterm_after_the_shell_ended_leaves_no_background_process(work, env):
    p = subprocess.Popen([tool("seamless-run"), "sleep 26 & echo hi"], cwd=work, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2)  # the shell has ended; its background sleep has not
    p.send_signal(signal.SIGTERM)
    p.wait(20)
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", "^sleep 26$"], capture_output=True).returncode == 1


def test_sigterm_kills_the_job_and_its_background_processes(work, env):
    p = subprocess.Popen([tool("seamless-run"), "sleep 41 & sleep 42; echo x"], cwd=work, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while subprocess.run(["pgrep", "-f", "^sleep 42$"], capture_output=True).returncode and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 130
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", "^sleep 4[12]$"], capture_output=True).returncode == 1


def test_directory_symlink_cycles_are_refused_at_once(work, env):
    (work / "d" / "sub").mkdir(parents=True)
    (work / "d" / "sub" / "f.txt").write_text("x\n")
    os.symlink(".", work / "d" / "loop")
    os.symlink("..", work / "d" / "sub" / "up")
    for name, argv in (("seamless-run", ["-i", "d", "ls d"]), ("seamless-upload", ["d"])):
        proc = call(name, *argv, cwd=work, env=env, timeout=30)
        assert proc.returncode == 1 and b"cycle" in proc.stderr and b"Traceback" not in proc.stderr


def test_symlinks_that_fan_out_are_refused_at_once(work, env):
    levels = 40  # 2**40 paths if every link were followed
    for i in range(levels + 1):
        (work / f"l{i}").mkdir()
    for i in range(levels):
        for name in ("a", "b"):
            os.symlink(f"../l{i + 1}", work / f"l{i}" / name)
    (work / f"l{levels}" / "f.txt").write_text("x\n")
    proc = call("seamless-upload", "l0", cwd=work, env=env, timeout=30)
    assert proc.returncode == 1 and b"symlinked paths" in proc.stderr


def test_a_non_cyclic_directory_symlink_is_followed(work, env):
    (work / "real").mkdir()
    (work / "real" / "f.txt").write_text("x\n")
    (work / "d").mkdir()
    os.symlink("../real", work / "d" / "one")
    os.symlink("../real", work / "d" / "two")
    proc = run("-i", "d", "find d -type f | sort; cat d/two/f.txt", cwd=work, env=env)
    assert proc.returncode == 0 and proc.stdout == b"d/one/f.txt\nd/two/f.txt\nx\n", proc.stderr


def peak_rss_of(argv, cwd, env, stdout):
    """Peak RSS (bytes) of one child process run to completion."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.chdir(cwd)
            fd = os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss * 1024


def test_a_big_stdout_result_is_streamed_not_held_in_memory(work, env, tmp_path):
    """The peak RSS does not grow with the result: 200 MiB costs what 10 MiB costs (an
    absolute bound would measure the interpreter and the machine's load, not streaming)."""
    peaks = {}
    for size in (10 << 20, 200 << 20):
        command = [tool("seamless-run"), f"head -c {size} /dev/zero | tr '\\0' a"]
        for attempt in ("miss", "hit"):
            out = tmp_path / f"out-{size}-{attempt}"
            peaks[size, attempt] = peak_rss_of(command, work, env, out)
            assert out.stat().st_size == size
    for attempt in ("miss", "hit"):
        grown = peaks[200 << 20, attempt] - peaks[10 << 20, attempt]
        assert grown < 30 << 20, f"{attempt}: {grown >> 20} MiB more for a 200 MiB result than for 10 MiB"


def test_download_stdout_is_streamed(work, env, tmp_path):
    peaks = []
    for name, size in (("small.txt", 10 << 20), ("big.txt", 150 << 20)):
        (work / name).write_bytes(b"b" * size)
        assert call("seamless-upload", "--move", name, cwd=work, env=env).returncode == 0
        out = tmp_path / f"out-{name}"
        peaks.append(peak_rss_of([tool("seamless-download"), "--stdout", name], work, env, out))
        assert out.stat().st_size == size
    assert peaks[1] - peaks[0] < 30 << 20, f"{(peaks[1] - peaks[0]) >> 20} MiB more for 150 MiB than for 10 MiB"


def test_a_killed_runs_job_directory_is_removed_by_the_next_run(work, env, tmp_path):
    jobs = tmp_path / "cache" / "__TOPLEVEL__" / ".seamless-run" / "jobs"
    p = subprocess.Popen([tool("seamless-run"), "sleep 30; echo x"], cwd=work, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (jobs.exists() and any(jobs.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(d.is_dir() for d in jobs.iterdir())
    p.kill()
    p.wait()
    subprocess.run(["pkill", "-f", "^sleep 30$"])
    assert any(d.is_dir() for d in jobs.iterdir())  # left behind by kill -9
    # a live job's directory is never taken for a dead one
    live = subprocess.Popen([tool("seamless-run"), "sleep 3; echo live"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1)
    assert run("echo next", cwd=work, env=env).returncode == 0
    out, err = live.communicate(timeout=60)
    assert live.returncode == 0 and out == b"live\n", err
    assert list(jobs.iterdir()) == []


def test_write_remote_job_leaves_no_lock_behind(work, env, tmp_path):
    target = tmp_path / "remote-job"
    assert run("--write-remote-job", str(target), "cat data.txt", cwd=work, env=env).returncode == 0
    assert (target / "transform.sh").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")] == []


# --- 4. traps ----------------------------------------------------------------------------


def test_verbose_names_the_store_in_force(work, env, tmp_path):
    proc = run("-v", "cat data.txt", cwd=work, env=env)
    assert f"store: buffers in {tmp_path / 'cache' / '__TOPLEVEL__'}".encode() in proc.stderr


def test_upload_and_download_honour_the_stage(work, env, tmp_path):
    assert call("seamless-upload", "--stage", "dev", "--move", "data.txt", cwd=work, env=env).returncode == 0
    assert (tmp_path / "cache" / "__TOPLEVEL__" / "STAGE-dev" / sha(b"hello\n")[:2] / sha(b"hello\n")).exists()
    proc = run("--stage", "dev", "cat data.txt", cwd=work, env=env)
    assert proc.returncode == 0 and proc.stdout == b"hello\n", proc.stderr
    assert run("cat data.txt", cwd=work, env=env).returncode == 1  # not in the unstaged store
    assert call("seamless-download", "data.txt", cwd=work, env=env).returncode == 1
    assert call("seamless-download", "--stage", "dev", "data.txt", cwd=work, env=env).returncode == 0
    assert (work / "data.txt").read_text() == "hello\n"


def test_an_in_place_write_by_a_failing_job_is_caught_too(work, env, tmp_path):
    proc = run("-g1", "-i", "data.txt", "printf J | dd of=data.txt conv=notrunc status=none; exit 3", cwd=work, env=env)
    assert proc.returncode == 3 and b"in place" in proc.stderr
    assert not stored(tmp_path, sha(b"hello\n")).exists()  # the damaged copy did not stay


def pgrep(pattern):
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


@pytest.mark.parametrize("escape", ["setsid sleep 37 & echo hi", "setsid -f sleep 37; echo hi",
                                    "(setsid sleep 37 > /dev/null 2>&1 &); echo hi"])
def test_processes_that_leave_the_job_session_end_with_it(work, env, escape):
    start = time.monotonic()
    proc = run(escape, cwd=work, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"hi\n", proc.stderr
    assert time.monotonic() - start < 10
    time.sleep(0.3)
    assert not pgrep("^sleep 37$")


def test_what_a_killed_run_left_running_is_ended_by_the_next_run(work, env, tmp_path):
    p = subprocess.Popen([tool("seamless-run"), "setsid sleep 38 & sleep 39; echo x"], cwd=work, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not pgrep("^sleep 39$") and time.monotonic() < deadline:
        time.sleep(0.05)
    p.kill()
    p.wait()
    assert pgrep("^sleep 38$")  # kill -9 gave seamless-run no chance to end it
    assert run("echo next", cwd=work, env=env).returncode == 0
    time.sleep(0.3)
    assert not pgrep("^sleep 3[89]$")


@pytest.mark.parametrize("index", [{".": "X"}, {"": "X"}, {"a": "X", "a/b": "X"}, {"a": "X", "./a": "X"}])
def test_index_entries_that_cannot_be_files_are_refused_before_writing(work, env, index):
    index = {k: sha(b"hello\n") for k in index}
    buffer = (json.dumps(index, sort_keys=True, indent=2) + "\n").encode()
    (work / "d.INDEX").write_bytes(buffer)
    (work / "d.CHECKSUM").write_text(sha(buffer) + "\n")
    proc = call("seamless-download", "d", "-o", "tgt", cwd=work, env=env)
    assert proc.returncode == 1 and b"refusing" in proc.stderr, proc.stderr
    assert not (work / "tgt").exists()


def test_an_unusable_cached_result_is_reported_once_and_recomputed(work, env, tmp_path):
    """Issue 11 review: the cached result is looked up before and after the run-once
    latch; its warning is said once, and the command runs again."""
    argv = ["-cp", "a.txt", "-cp", "b.txt", "echo a > a.txt; echo b > b.txt"]
    assert run(*argv, cwd=work, env=env).returncode == 0
    tf = run("--dry", *argv, cwd=work, env=env).stdout.decode().strip()
    bad = b"[1,2]"  # a valid buffer under its own checksum, but no directory index
    path = stored(tmp_path, sha(bad))
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(bad)
    db = sqlite3.connect(tmp_path / "cache" / "__TOPLEVEL__" / "seamless.db")
    with db:
        db.execute("UPDATE transformation SET result = ? WHERE checksum = ?", (sha(bad), tf))
    db.close()
    for name in ("a.txt", "b.txt"):
        (work / name).unlink()
    proc = run(*argv, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(b"ignoring the cached result") == 1, proc.stderr
    assert (work / "a.txt").read_text() == "a\n" and (work / "b.txt").read_text() == "b\n"
