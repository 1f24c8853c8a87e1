"""seamless-fingertip and seamless-resolve on a real cache (SEAMLESS_CACHE=tmpdir): a
result buffer deleted from the cache is recomputed from the transformation that made
it; clear errors when it cannot be."""

import hashlib
import json
import os
import sqlite3
import subprocess

import pytest

from conftest import cache_env, tool


@pytest.fixture
def cache(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    return work, cache_env(tmp_path), tmp_path / "cache"


def call(name, *argv, cwd, env):
    return subprocess.run([tool(name), *argv], cwd=cwd, env=env, capture_output=True, timeout=120)


def printed(work, env, command):
    """Run a command whose result is what it prints; that result's checksum."""
    proc = call("seamless-run", command, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    return hashlib.sha256(proc.stdout).hexdigest()


def only_result(cache_dir):
    """The result checksum of the one transformation this cache has computed."""
    db = next(cache_dir.rglob("seamless.db"))
    with sqlite3.connect(db) as c:
        ((result,),) = c.execute("SELECT result FROM transformation").fetchall()
    return result


def stored(cache_dir, cs):
    return [p for p in cache_dir.rglob(cs) if p.is_file()]


def forget(cache_dir, cs):
    """Delete a buffer's file from the cache (as an eviction or a lost disk would)."""
    (path,) = stored(cache_dir, cs)
    path.chmod(0o644)
    path.unlink()


def test_a_deleted_result_is_recomputed_stored_and_delivered(cache):
    work, env, cache_dir = cache
    (work / "data.txt").write_text("b\na\nc\n")
    cs = printed(work, env, "sort data.txt")
    assert cs == hashlib.sha256(b"a\nb\nc\n").hexdigest()
    (work / "out.txt.CHECKSUM").write_text(cs + "\n")
    forget(cache_dir, cs)
    gone = call("seamless-resolve", cs, cwd=work, env=env)
    assert gone.returncode == 1 and gone.stdout == b""
    assert gone.stderr.decode().startswith(f"seamless-resolve: error: buffer {cs} is not in any store")
    again = call("seamless-fingertip", "out.txt", cwd=work, env=env)  # the file's sidecar names it
    assert again.returncode == 0 and again.stdout == b"a\nb\nc\n", again.stderr
    assert stored(cache_dir, cs)  # kept: resolve finds it now
    assert call("seamless-resolve", "out.txt.CHECKSUM", cwd=work, env=env).stdout == b"a\nb\nc\n"
    out = work / "copy.txt"
    assert call("seamless-resolve", cs, "-o", str(out), cwd=work, env=env).returncode == 0
    assert out.read_bytes() == b"a\nb\nc\n" and not (work / "copy.txt.CHECKSUM").exists()


def test_a_present_buffer_is_just_delivered_and_a_lost_result_directory_comes_back(cache):
    work, env, cache_dir = cache
    made = call("seamless-run", "-cp", "res", "mkdir -p res; seq 3 > res/a; echo hi > res/b", cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    index = only_result(cache_dir)  # the index of its result files, res/a and res/b
    member = hashlib.sha256(b"hi\n").hexdigest()
    present = call("seamless-fingertip", "-v", member, cwd=work, env=env)
    assert present.returncode == 0 and present.stdout == b"hi\n" and b"recomputing" not in present.stderr
    forget(cache_dir, index)
    forget(cache_dir, member)
    out = work / "index.json"
    back = call("seamless-fingertip", "-v", index, "-o", str(out), cwd=work, env=env)
    assert back.returncode == 0 and back.stdout == b"" and b"recomputing" in back.stderr, back.stderr
    assert json.loads(out.read_bytes()) == {"res/a": hashlib.sha256(b"1\n2\n3\n").hexdigest(), "res/b": member}
    assert stored(cache_dir, index) and stored(cache_dir, member)  # the re-run put its files back too
    # one file of the result files, by itself: found through its entry in the index
    forget(cache_dir, member)
    alone = call("seamless-fingertip", member, cwd=work, env=env)
    assert alone.returncode == 0 and alone.stdout == b"hi\n", alone.stderr
    assert stored(cache_dir, member)


def test_a_python_result_is_recomputed_and_stored(cache):
    work, env, cache_dir = cache
    script = work / "script.py"
    script.write_text("""
import seamless.config
from seamless.transformer import delayed
seamless.config.init()

@delayed
def square(x):
    return x * x

t = square(12)
t.compute()
print(t.result_checksum.hex())
""")
    python = os.path.join(os.path.dirname(tool("seamless-run")), "python")
    proc = subprocess.run([python, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    cs = proc.stdout.strip()
    forget(cache_dir, cs)
    back = call("seamless-fingertip", cs, cwd=work, env=env)
    assert back.returncode == 0 and back.stdout.strip() == b"144", back.stderr
    assert stored(cache_dir, cs)


def test_clear_errors_when_it_cannot_be_recomputed(cache):
    work, env, cache_dir = cache
    unknown = call("seamless-fingertip", "ab" * 32, cwd=work, env=env)
    assert unknown.returncode == 1 and unknown.stdout == b""
    assert b"no known transformation made it" in unknown.stderr and unknown.stderr.count(b"\n") == 1

    cs = printed(work, env, "date +%s%N")  # not deterministic
    forget(cache_dir, cs)
    changed = call("seamless-fingertip", cs, cwd=work, env=env)
    assert changed.returncode == 1 and changed.stdout == b""
    assert b"it is not deterministic" in changed.stderr, changed.stderr
    assert not stored(cache_dir, cs)

    (work / "x.txt").write_text("x\n")
    cs = printed(work, env, "cat x.txt x.txt")
    db = next(cache_dir.rglob("seamless.db"))
    with sqlite3.connect(db) as c:
        (tf,) = c.execute("SELECT checksum FROM transformation WHERE result = ?", (cs,)).fetchone()
    forget(cache_dir, cs)
    forget(cache_dir, tf)  # the transformation dict is gone too
    lost = call("seamless-fingertip", cs, cwd=work, env=env)
    assert lost.returncode == 1 and b"its transformation dict is gone from the stores too" in lost.stderr, lost.stderr

    assert call("seamless-fingertip", "nothing", cwd=work, env=env).stderr == \
        b"seamless-fingertip: error: nothing: neither a checksum (64 hex digits) nor a file holding one\n"
    (work / "junk").write_text("not a checksum\n")
    assert call("seamless-resolve", "junk", cwd=work, env=env).stderr == \
        b"seamless-resolve: error: junk does not hold a checksum (64 hex digits, alone or as the first word of " \
        b"a seamless-checksum line)\n"


def test_a_seamless_checksum_line_names_its_checksum_as_the_man_page_example_does(cache):
    work, env, cache_dir = cache
    (work / "data.txt").write_text("b\na\nc\n")
    sort = call("seamless-run", "sort data.txt", cwd=work, env=env)
    (work / "sorted.txt").write_bytes(sort.stdout)
    line = call("seamless-checksum", "sorted.txt", cwd=work, env=env).stdout
    (work / "sorted.CHECKSUM").write_bytes(line)
    cs = hashlib.sha256(b"a\nb\nc\n").hexdigest()
    assert line == f"{cs}  sorted.txt\n".encode()
    assert call("seamless-resolve", "sorted.CHECKSUM", cwd=work, env=env).stdout == b"a\nb\nc\n"
    forget(cache_dir, cs)
    again = call("seamless-fingertip", "sorted.CHECKSUM", cwd=work, env=env)
    assert again.returncode == 0 and again.stdout == b"a\nb\nc\n", again.stderr
    (work / "escaped").write_text(f"\\{cs.upper()}  odd\\nname\n")  # sha256sum escapes such a name
    assert call("seamless-resolve", "escaped", cwd=work, env=env).stdout == b"a\nb\nc\n"
    assert call("seamless-cancel", "sorted.CHECKSUM", cwd=work, env=env).stdout == b"process: not-running\n"
    # several lines (sha256sum of several files) do not name one checksum
    (work / "two").write_text(f"{cs}  sorted.txt\n{'ab' * 32}  other.txt\n")
    two = call("seamless-resolve", "two", cwd=work, env=env)
    assert two.returncode == 1 and two.stderr.startswith(b"seamless-resolve: error: two does not hold a checksum")


def expressions(cache_dir):
    db = next(cache_dir.rglob("seamless.db"))
    with sqlite3.connect(db) as c:
        return c.execute("SELECT input_checksum, path, celltype, target_celltype, result FROM expression "
                         "ORDER BY path").fetchall()


def test_a_result_target_file_is_recomputed_through_its_index_even_when_the_index_is_gone(cache):
    work, env, cache_dir = cache
    (work / "data.txt").write_text("b\na\nc\n")
    made = call("seamless-run", "-cp", "out.txt", "sort data.txt > out.txt", cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    cs = (work / "out.txt.CHECKSUM").read_text().strip()
    assert cs == hashlib.sha256(b"a\nb\nc\n").hexdigest()
    index = only_result(cache_dir)
    # one row per entry: path ["out.txt"] of the (plain) deep index is the file's bytes
    assert expressions(cache_dir) == [(index, '["out.txt"]', "plain", "bytes", cs)]
    forget(cache_dir, cs)
    again = call("seamless-fingertip", "out.txt", cwd=work, env=env)  # the sidecar names it
    assert again.returncode == 0 and again.stdout == b"a\nb\nc\n", again.stderr
    assert stored(cache_dir, cs)
    forget(cache_dir, cs)
    forget(cache_dir, index)  # the index is gone too: recomputed first, then its entry is read
    out = work / "copy.txt"
    back = call("seamless-fingertip", "-v", cs, "-o", str(out), cwd=work, env=env)
    assert back.returncode == 0 and out.read_bytes() == b"a\nb\nc\n", back.stderr
    assert stored(cache_dir, cs) and stored(cache_dir, index)


def test_seamless_run_fingertip_recomputes_an_input_that_was_a_result_file(cache):
    work, env, cache_dir = cache
    (work / "data.txt").write_text("b\na\nc\n")
    made = call("seamless-run", "-cp", "res", "mkdir res; sort data.txt > res/sorted; wc -l < data.txt > res/n",
                cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    index = only_result(cache_dir)
    sorted_cs = hashlib.sha256(b"a\nb\nc\n").hexdigest()
    assert [row[1:] for row in expressions(cache_dir)] == [
        ('["res/n"]', "plain", "bytes", hashlib.sha256(b"3\n").hexdigest()),
        ('["res/sorted"]', "plain", "bytes", sorted_cs)]
    (work / "sorted.CHECKSUM").write_text(sorted_cs + "\n")  # the input is known by its checksum only
    forget(cache_dir, sorted_cs)
    forget(cache_dir, index)
    missing = call("seamless-run", "tr a-z A-Z < sorted", cwd=work, env=env)
    assert missing.returncode == 1 and b"--fingertip recomputes" in missing.stderr, missing.stderr
    run = call("seamless-run", "--fingertip", "tr a-z A-Z < sorted", cwd=work, env=env)
    assert run.returncode == 0 and run.stdout == b"A\nB\nC\n", run.stderr
    assert stored(cache_dir, sorted_cs)


def test_an_entry_is_taken_only_when_the_recomputed_index_says_so(cache):
    work, env, cache_dir = cache
    made = call("seamless-run", "-cp", "out.txt", "echo one > out.txt", cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    index = only_result(cache_dir)
    # a row that claims another file for the same entry (written by anyone): never believed
    claimed = hashlib.sha256(b"two\n").hexdigest()
    db = next(cache_dir.rglob("seamless.db"))
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO expression (input_checksum, path, celltype, target_celltype, result) "
                  "VALUES (?, ?, 'plain', 'bytes', ?)", (index, '["elsewhere"]', claimed))
    wrong = call("seamless-fingertip", claimed, cwd=work, env=env)
    assert wrong.returncode == 1 and wrong.stdout == b"", wrong.stderr
    assert f"file 'elsewhere' of result index {index}: the recomputed index has no such file".encode() \
        in wrong.stderr, wrong.stderr
    with sqlite3.connect(db) as c:  # the real entry's row, rewritten to claim another file
        c.execute("UPDATE expression SET result=? WHERE path='[\"out.txt\"]'", (claimed,))
    real = hashlib.sha256(b"one\n").hexdigest()
    wrong = call("seamless-fingertip", claimed, cwd=work, env=env)
    assert wrong.returncode == 1 and f"says that file is {real}, not {claimed}".encode() in wrong.stderr
    assert not stored(cache_dir, claimed)


@pytest.mark.skipif(not os.path.exists(os.path.join(os.environ.get("SEAMLESS_UPSTREAM_VENV", "/nonexistent"),
                                                    "bin", "seamless-database")),
                    reason="no upstream virtualenv (SEAMLESS_UPSTREAM_VENV)")
def test_upstream_database_serves_and_accepts_the_entry_rows(cache, start_service):
    import urllib.request

    work, env, cache_dir = cache
    made = call("seamless-run", "-cp", "out.txt", "echo one > out.txt", cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    index, cs = only_result(cache_dir), hashlib.sha256(b"one\n").hexdigest()
    db = next(cache_dir.rglob("seamless.db"))
    upstream = os.path.join(os.environ["SEAMLESS_UPSTREAM_VENV"], "bin", "seamless-database")
    server = start_service(upstream, db, "--writable", "--host", "127.0.0.1", "--port-range", 20000, 40000)

    def ask(method, request):
        rq = urllib.request.Request(server.url, data=json.dumps(request).encode(), method=method)
        with urllib.request.urlopen(rq, timeout=30) as response:
            return response.read().decode()

    row = {"checksum": index, "path": ["out.txt"], "celltype": "plain", "target_celltype": "bytes", "result": cs}
    assert json.loads(ask("GET", {"type": "rev_expression", "checksum": cs})) == [row]
    assert ask("GET", {"type": "expression", "checksum": index, "path": ["out.txt"], "celltype": "plain",
                       "target_celltype": "bytes"}) == cs
    # upstream's own constraint check accepts what we write (a non-empty path needs plain, mixed or binary)
    assert ask("PUT", {"type": "expression", "checksum": index, "path": ["out.txt"], "celltype": "plain",
                       "target_celltype": "bytes", "value": cs}) == "OK"
    # and our HTTP client speaks it to upstream's server
    from seamless.store.httpdb import HttpResultDB

    client = HttpResultDB(server.url, writable=True)
    client.set_expression(index, ["out.txt"], "plain", "bytes", cs)
    assert client.get_expression(index, ["out.txt"], "plain", "bytes") == cs
    assert client.get_rev_expression(cs) == [row]
    assert client.get_expression(index, ["nothing"], "plain", "bytes") is None
