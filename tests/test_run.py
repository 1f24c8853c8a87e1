"""seamless-run end to end: caching, the job directory, results, failures, signals."""

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from conftest import tool


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if k not in ("SEAMLESS_REMOTE_CLIENTS", "SEAMLESS_CACHE")}
    e["SEAMLESS_CACHE"] = str(tmp_path / "cache")
    return e


def run(argv, cwd, env, **kw):
    return subprocess.run([tool("seamless-run"), *argv], cwd=cwd, env=env, capture_output=True,
                          timeout=kw.pop("timeout", 120), **kw)


def counter(tmp_path):
    """A metavar that counts executions without changing the transformation."""
    path = tmp_path / "count"
    return ["--metavar", f"COUNT={path}"], lambda: len(path.read_text().split()) if path.exists() else 0


# --- caching ---------------------------------------------------------------------------


def test_run_then_cache_hit(work, env, tmp_path):
    meta, count = counter(tmp_path)
    command = 'sort -r data.txt | head -3; echo x >> "$COUNT"'
    first = run([*meta, command], work, env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == b"c\nb\na\n" and count() == 1
    second = run([*meta, command], work, env)
    assert second.stdout == b"c\nb\na\n" and count() == 1  # not run again
    (work / "data.txt").write_text("x\ny\n")
    third = run([*meta, command], work, env)
    assert third.stdout == b"y\nx\n" and count() == 2  # new input, new transformation


def test_zero_config_cache_location(work, tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    e["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    proc = run(["echo", "hello"], work, e)
    assert proc.returncode == 0 and proc.stdout == b"hello\n"
    top = tmp_path / "xdg" / "seamless" / "__TOPLEVEL__"
    assert (top / ".HASHSERVER_PREFIX").read_text() == "1\n"
    result = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    assert (top / result[:2] / result).read_bytes() == b"hello\n"
    conn = sqlite3.connect(top / "seamless.db")
    row = conn.execute("SELECT result FROM transformation WHERE checksum=?",
                       ("706b247db5f69ec5dc5b452a1a9164089faed42eaab3d461b8dfdf3217a36550",)).fetchone()
    assert row == (result,)
    record = json.loads(conn.execute("SELECT metadata FROM meta_data").fetchone()[0])
    assert record["result_checksum"] == result and record["execution_mode"] == "process"


def test_missing_result_buffer_is_recomputed(work, env, tmp_path):
    meta, count = counter(tmp_path)
    assert run([*meta, 'echo x >> "$COUNT"; echo hi'], work, env).stdout == b"hi\n"
    result = "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"
    path = tmp_path / "cache" / "__TOPLEVEL__" / result[:2] / result
    path.unlink()
    assert run([*meta, 'echo x >> "$COUNT"; echo hi'], work, env).stdout == b"hi\n"
    assert count() == 2 and path.exists()


def test_identical_runs_at_once_execute_once(work, env, tmp_path):
    meta, count = counter(tmp_path)
    command = 'echo x >> "$COUNT"; sleep 1; echo done'
    procs = [subprocess.Popen([tool("seamless-run"), *meta, command], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert outs == [b"done\n"] * 3
    assert count() == 1


# --- stdout ------------------------------------------------------------------------------


@pytest.mark.parametrize("printf,expected", [
    (r"\n\nabc\n\n\n", b"abc\n"), ("abc", b"abc"), (r"a\n\nb\n", b"a\n\nb\n"), (r"a\r\n\r\n", b"a\r\n\r\n"),
    (r"\n\n", b""), (r"  \n\tabc  \n \n", b"  \n\tabc  \n \n"), (r"\xff\xfe", b"\xff\xfe"),
])
def test_stdout_printing_rules(work, env, printf, expected):
    proc = run([f"printf '{printf}'"], work, env)
    assert proc.returncode == 0 and proc.stdout == expected and proc.stderr == b""


def test_empty_output_prints_nothing(work, env):
    proc = run(["true"], work, env)
    assert (proc.returncode, proc.stdout) == (0, b"")


# --- failures and stderr --------------------------------------------------------------------


def test_failure_exit_code_and_nothing_cached(work, env, tmp_path):
    meta, count = counter(tmp_path)
    command = "echo x >> \"$COUNT\"; echo oops >&2; exit 3"
    proc = run([*meta, command], work, env)
    assert proc.returncode == 3
    assert b"oops" in proc.stderr and b"exit code 3" in proc.stderr
    assert run([*meta, command], work, env).returncode == 3 and count() == 2  # not cached


def test_quiet_failure_prints_the_stderr_tail(work, env):
    proc = run(["-q", "echo first >&2; echo last >&2; false"], work, env)
    assert proc.returncode == 1
    assert proc.stderr.decode().splitlines()[-3:] == ["first", "last", "seamless-run: error: the command failed with exit code 1"]


def test_stderr_is_shown_live(work, env):
    proc = subprocess.Popen([tool("seamless-run"), "echo early >&2; sleep 3; echo out"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    start = time.monotonic()
    line = proc.stderr.readline()
    assert line == b"early\n" and time.monotonic() - start < 2.5
    assert proc.communicate(timeout=30)[0] == b"out\n"


def test_lots_of_stderr_never_blocks(work, env):
    proc = run(["-q", "head -c 100000000 /dev/zero | tr '\\0' e >&2; echo fine"], work, env, timeout=120)
    assert proc.returncode == 0 and proc.stdout == b"fine\n"


def test_sigint_kills_the_job_and_caches_nothing(work, env, tmp_path):
    marker = tmp_path / "pid"
    proc = subprocess.Popen([tool("seamless-run"), "--metavar", f"M={marker}", 'echo $$ > "$M"; sleep 60'],
                            cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(100):
        if marker.exists() and marker.read_text().strip():
            break
        time.sleep(0.1)
    job_pid = int(marker.read_text())
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(job_pid, 0)
    jobs = tmp_path / "cache" / "__TOPLEVEL__" / ".seamless-run" / "jobs"
    assert not jobs.exists() or list(jobs.iterdir()) == []
    db = sqlite3.connect(tmp_path / "cache" / "__TOPLEVEL__" / "seamless.db")
    assert db.execute("SELECT COUNT(*) FROM transformation").fetchone()[0] == 0


# --- the job directory ------------------------------------------------------------------


def test_job_sees_inputs_values_and_env(work, env):
    (work / "indir" / "sub").mkdir(parents=True)
    (work / "indir" / "x.txt").write_text("x\n")
    (work / "indir" / "sub" / "y.txt").write_text("y\n")
    proc = run(["--var", "N=2", "-i", "indir", "-i", "data.txt", "find -type f | sort; cat N; echo $N; head -n $N data.txt"],
               work, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split("\n") == [
        "./N", "./RESULT", "./data.txt", "./indir/sub/y.txt", "./indir/x.txt", "2", "2", "a", "b", ""]


def test_chmod_of_an_input_script_leaves_the_store_alone(work, env, tmp_path):
    (work / "script.sh").write_text("#!/bin/sh\necho ran\n")
    proc = run(["./script.sh"], work, env)
    assert proc.returncode == 0 and proc.stdout == b"ran\n", proc.stderr
    import hashlib

    cs = hashlib.sha256(b"#!/bin/sh\necho ran\n").hexdigest()
    stored = tmp_path / "cache" / "__TOPLEVEL__" / cs[:2] / cs
    assert oct(stored.stat().st_mode & 0o777) == "0o444"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can write through a read-only input")
def test_writing_into_a_linked_input_is_caught(work, env, tmp_path):
    proc = run(["cat data.txt > /dev/null; echo more >> data.txt"], work, env)
    assert proc.returncode == 1 and b"in place" in proc.stderr
    import hashlib

    cs = hashlib.sha256(b"a\nb\nc\n").hexdigest()
    assert not (tmp_path / "cache" / "__TOPLEVEL__" / cs[:2] / cs).exists()  # the damaged copy is gone
    assert run(["cat data.txt"], work, env).stdout == b"a\nb\nc\n"  # and comes back intact


def test_nothing_escapes_the_job_dir(work, env):
    (work / "w").mkdir()
    proc = run(["cat ../data.txt"], work / "w", env)
    assert proc.returncode == 1 and b"-w DIR or -W" in proc.stderr
    assert not (work / "data.txt.lnk").exists()


# --- results as files ------------------------------------------------------------------


def test_capture_files_and_sidecars(work, env):
    proc = run(["-cp", "res", "-cp", ":so.txt", "mkdir -p res/s; echo 1 > res/a.txt; echo 2 > res/s/b.txt; "
                "echo hi; seq 3 > out.txt"], work, env)
    assert proc.returncode == 0, proc.stderr
    assert (work / "so.txt").read_text() == "hi\n"
    assert (work / "out.txt").read_text() == "1\n2\n3\n"
    assert (work / "out.txt.CHECKSUM").read_text() == \
        "14c5e74c4b96ccef41cd94db73a9ec3348038ac094feca4fd897cecffa07cdae\n"
    assert (work / "res" / "s" / "b.txt").read_text() == "2\n"
    index = json.loads((work / "res.INDEX").read_text())
    assert sorted(index) == ["a.txt", "s/b.txt"]
    import hashlib

    assert (work / "res.CHECKSUM").read_text() == hashlib.sha256((work / "res.INDEX").read_bytes()).hexdigest() + "\n"
    assert not list(work.glob("*.FUTURE"))


def test_capture_rename_and_nested_local(work, env):
    proc = run(["-cp", "o.txt:deep/er/l.txt", "-g1", "seq 2 > o.txt"], work, env)
    assert proc.returncode == 0, proc.stderr
    assert (work / "deep" / "er" / "l.txt").read_text() == "1\n2\n"


def test_no_download_and_scratch_write_checksums_only(work, env):
    assert run(["-nd", "-cp", "out.txt", "seq 3 > out.txt"], work, env).returncode == 0
    assert not (work / "out.txt").exists() and (work / "out.txt.CHECKSUM").exists()
    (work / "out.txt.CHECKSUM").unlink()
    assert run(["--scratch", "-cp", "out.txt", "seq 4 > out.txt"], work, env).returncode == 0
    assert not (work / "out.txt").exists()
    assert (work / "out.txt.CHECKSUM").read_text() == \
        "16fbd7d1f18d2fedb247d73edc3bc6aa040f5ab99bd3b48c35b79e543d22179b\n"


def test_refuse_to_print_without_download(work, env):
    for flag in ("-nd", "--scratch"):
        proc = run([flag, "echo", "hi"], work, env)
        assert proc.returncode == 1 and b"-cp" in proc.stderr


def test_future_markers_while_running_and_after_failure(work, env):
    proc = subprocess.Popen([tool("seamless-run"), "-cp", "out.txt", "sleep 2; seq 3 > out.txt"], cwd=work,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    future = work / "out.txt.FUTURE"
    for _ in range(50):
        if future.exists():
            break
        time.sleep(0.05)
    assert future.read_text().endswith(".out.txt\n")
    assert proc.wait(30) == 0 and not future.exists()
    assert run(["-cp", "bad.txt", "exit 4"], work, env).returncode == 4
    assert not (work / "bad.txt.FUTURE").exists()


def test_a_later_run_waits_for_a_future(work, env):
    """A pipeline step started before its input exists waits on the .FUTURE marker."""
    first = subprocess.Popen([tool("seamless-run"), "-cp", "mid.txt", "sleep 2; seq 3 > mid.txt"], cwd=work,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(50):
        if (work / "mid.txt.FUTURE").exists():
            break
        time.sleep(0.05)
    second = run(["wc -l mid.txt"], work, env)
    assert first.wait(30) == 0
    assert second.returncode == 0 and second.stdout == b"3 mid.txt\n"


# --- sidecars as inputs, fingertip -----------------------------------------------------------


def test_sidecar_stands_for_a_missing_file(work, env):
    assert run(["-cp", "out.txt", "seq 3 > out.txt"], work, env).returncode == 0
    (work / "out.txt").unlink()  # only out.txt.CHECKSUM is left
    proc = run(["wc -l out.txt"], work, env)
    assert proc.returncode == 0 and proc.stdout == b"3 out.txt\n"


def test_fingertip_recomputes_a_missing_input(work, env, tmp_path):
    proc = run(["seq 5"], work, env)
    import hashlib

    cs = hashlib.sha256(b"1\n2\n3\n4\n5\n").hexdigest()
    (tmp_path / "cache" / "__TOPLEVEL__" / cs[:2] / cs).unlink()
    (work / "five.txt.CHECKSUM").write_text(cs + "\n")
    gone = run(["wc -l five.txt"], work, env)
    assert gone.returncode == 1 and b"--fingertip" in gone.stderr
    proc = run(["--fingertip", "wc -l five.txt"], work, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"5 five.txt\n"


# --- dry runs, uploads, remote jobs ------------------------------------------------------------


def test_dry_job_dir(work, env):
    proc = run(["--dry", "-j", "job", "head -n 2 data.txt"], work, env)
    assert proc.stdout.decode().strip() == "23f0206e62f8993306a2cb33dfc809573f6d55b2d3e42bf79af7266ce7303b99"
    assert (work / "job" / "command.txt").read_text() == "(\nhead -n 2 data.txt\n) > RESULT\n"
    import hashlib

    assert hashlib.sha256((work / "job" / "transformation.json").read_bytes()).hexdigest() == proc.stdout.decode().strip()
    again = run(["--dry", "-j", "job", "echo"], work, env)
    assert again.returncode == 1 and b"already exists" in again.stderr


def test_upload_stores_inputs_and_transformation(work, env, tmp_path):
    proc = run(["--dry", "--upload", "-j", "job", "head -n 2 data.txt"], work, env)
    tf = proc.stdout.decode().strip()
    assert (work / "job" / "transformation.json.CHECKSUM").read_text() == tf
    top = tmp_path / "cache" / "__TOPLEVEL__"
    import hashlib

    data = hashlib.sha256(b"a\nb\nc\n").hexdigest()
    assert (top / data[:2] / data).exists() and (top / tf[:2] / tf).exists()


def test_write_remote_job(work, env, tmp_path):
    proc = run(["--var", "N=2", "--metavar", "T=4", "--write-remote-job", "rjob",
                "head -n $N data.txt; echo $T"], work, env)
    assert proc.returncode == 0, proc.stderr
    job = work / "rjob"
    script = (job / "transform.sh").read_text()
    assert script.startswith("#!/bin/bash\n") and "export N=2\n" in script and "export META__T=4\n" in script
    assert os.access(job / "transform.sh", os.X_OK)
    done = subprocess.run(["bash", "transform.sh"], cwd=job, capture_output=True)
    assert done.returncode == 0 and (job / "RESULT").read_text() == "a\nb\n4\n"
    db = sqlite3.connect(tmp_path / "cache" / "__TOPLEVEL__" / "seamless.db")
    assert db.execute("SELECT COUNT(*) FROM transformation").fetchone()[0] == 0  # nothing recorded


# --- remote stores through SEAMLESS_REMOTE_CLIENTS ----------------------------------------------


def test_remote_clients(work, hashserver, dbserver, tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    e["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    e["SEAMLESS_REMOTE_CLIENTS"] = json.dumps({
        "buffer": [{"url": hashserver.url, "readonly": False}],
        "database": [{"url": dbserver.url, "readonly": False}]})
    meta, count = counter(tmp_path)
    proc = run([*meta, 'head -n 2 data.txt; echo x >> "$COUNT"'], work, e)
    assert proc.returncode == 0 and proc.stdout == b"a\nb\n", proc.stderr
    from seamless.store.httpdb import HttpResultDB

    tf = "23f0206e62f8993306a2cb33dfc809573f6d55b2d3e42bf79af7266ce7303b99"
    # a metavar changes the code (its export line), so look the transformation up by a plain run
    plain = run(["head -n 2 data.txt"], work, e)
    assert plain.stdout == b"a\nb\n"
    assert HttpResultDB(dbserver.url).get_transformation(tf) is not None
    assert run([*meta, 'head -n 2 data.txt; echo x >> "$COUNT"'], work, e).stdout == b"a\nb\n"
    assert count() == 1
    assert not (tmp_path / "xdg" / "seamless" / "__TOPLEVEL__").exists()  # no local store used


def test_a_compressed_input_is_its_exact_bytes_in_the_job(work, env):
    import gzip
    import hashlib

    gz = gzip.compress(b"zipped\n", compresslevel=1)
    (work / "z.txt.gz").write_bytes(gz)
    proc = run(["zcat z.txt.gz; wc -c < z.txt.gz; sha256sum z.txt.gz"], work, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"zipped\n%d\n%s  z.txt.gz\n" % (len(gz), hashlib.sha256(gz).hexdigest().encode())
    # the same contents compressed otherwise are another input: no result of the first applies
    (work / "z.txt.gz").write_bytes(gzip.compress(b"zipped\n", compresslevel=9, mtime=1))
    other = run(["zcat z.txt.gz; wc -c < z.txt.gz; sha256sum z.txt.gz"], work, env)
    assert other.returncode == 0 and other.stdout != proc.stdout


def test_compressed_files_in_a_result_directory_are_reused_as_they_are(work, env):
    """A -cp directory with a .gz in it, used again: from the directory, then from its sidecars."""
    assert run(["-cp", "out", "mkdir out; seq 10 | gzip -n > out/nums.gz"], work, env).returncode == 0
    proc = run(["ls out; zcat out/nums.gz | wc -l"], work, env)
    assert proc.returncode == 0 and proc.stdout == b"nums.gz\n10\n", proc.stderr
    import shutil

    shutil.rmtree(work / "out")
    proc = run(["-i", "out", "ls out; zcat out/nums.gz | wc -l; true"], work, env)
    assert proc.returncode == 0 and proc.stdout == b"nums.gz\n10\n", proc.stderr


def test_a_directory_with_a_compressed_file_keeps_its_names(work, env):
    import gzip

    (work / "d").mkdir()
    (work / "d" / "x.gz").write_bytes(gzip.compress(b"1\n2\n"))
    proc = run(["ls d; zcat d/x.gz | wc -l; true"], work, env)
    assert proc.returncode == 0 and proc.stdout == b"x.gz\n2\n", proc.stderr


def test_compressed_result_sidecars_chain(work, env):
    assert run(["-cp", "keep.gz", "seq 4 | gzip -n > keep.gz"], work, env).returncode == 0
    (work / "keep.gz").unlink()
    proc = run(["zcat keep.gz | wc -l"], work, env)
    assert proc.returncode == 0 and proc.stdout.strip() == b"4", proc.stderr


def test_a_zst_result_is_usable_on_any_python(work, env):
    """Reading zstd needs Python 3.14 or a backport; a .zst is never decoded to be an input."""
    frame = "KLUv/SACEQAAYwo="  # "c\n", zstd-compressed
    assert run(["-cp", "d", f"mkdir d; echo {frame} | base64 -d > d/n.zst"], work, env).returncode == 0
    proc = run(["wc -c < d/n.zst; ls d"], work, env)
    assert proc.returncode == 0 and proc.stdout == b"11\nn.zst\n", proc.stderr


def test_repeated_scratch_run_is_a_hit(work, env, tmp_path):
    meta, count = counter(tmp_path)
    for _ in range(2):
        assert run([*meta, "--scratch", "-cp", "o.txt", 'seq 3 > o.txt; echo x >> "$COUNT"'], work, env).returncode == 0
    assert count() == 1


def test_no_database_is_said_before_running(work, hashserver, tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    e["SEAMLESS_REMOTE_CLIENTS"] = json.dumps({"buffer": [{"url": hashserver.url, "readonly": False}]})
    proc = run(["echo", "hi"], work, e)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.decode().startswith("seamless-run: error: no writable database is configured")


def test_conda_without_conda_is_a_clear_error(work, env):
    e = {**env, "PATH": "/usr/bin:/bin"}
    e.pop("CONDA_ROOT", None)
    proc = run(["--conda", "myenv", "echo", "hi"], work, e)
    assert proc.returncode == 1 and b"conda is not found" in proc.stderr


def test_a_symlink_at_a_future_marker_is_never_written_through(work, env, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    os.symlink(victim, work / "out.txt.FUTURE")
    proc = run(["-cp", "out.txt", "echo hi > out.txt"], work, env)
    assert proc.returncode == 1 and victim.read_text() == "mine\n"
    assert b"a symbolic link is where a .FUTURE marker belongs (remove it): out.txt.FUTURE" in proc.stderr
