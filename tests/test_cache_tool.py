"""seamless-cache: stats, ls, show, gc (alone and racing writers), verify, max_size trimming,
access times and hit/miss counters, on real caches filled by real seamless-run processes."""

import glob
import json
import os
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import tool

OLD = 8 * 86400  # seconds: how long ago "old" buffers were last used (beyond gc's ORPHAN_AGE too)


def root(env):
    return os.path.join(env["SEAMLESS_CACHE"], "__TOPLEVEL__")


def run(argv, cwd, env, check=True):
    proc = subprocess.run([tool("seamless-run"), *argv], cwd=cwd, env=env, capture_output=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def cache(argv, env, cwd=None, check=True):
    proc = subprocess.run([tool("seamless-cache"), *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def disk(path):
    """Bytes on disk, what seamless-cache counts (a small buffer takes a whole block)."""
    return os.stat(path).st_blocks * 512


def stats(env):
    return json.loads(cache(["stats", "--json"], env).stdout)


def buffer_files(env):
    return [p for p in glob.glob(os.path.join(root(env), "??", "*")) if len(os.path.basename(p)) == 64]


def age_everything(env, seconds=OLD):
    """Pretend every buffer was last used `seconds` ago."""
    then = time.time() - seconds
    for path in buffer_files(env):
        os.utime(path, (then, then))


def rows(env):
    with sqlite3.connect(os.path.join(root(env), "seamless.db")) as conn:
        return conn.execute("SELECT checksum, result FROM transformation").fetchall()


def dangling(env):
    """Result rows whose result buffer is not stored: what must never exist after gc."""
    stored = {os.path.basename(p) for p in buffer_files(env)}
    return [(tf, r) for tf, r in rows(env) if r not in stored]


def counted(tmp_path, name="count"):
    path = tmp_path / name
    return ["--metavar", f"COUNT={path}"], lambda: len(path.read_text().split()) if path.exists() else 0


# --- stats, ls, show ------------------------------------------------------------------


def test_stats_counts_buffers_results_hits_and_misses(work, env):
    run(["cat", "data.txt"], work, env)
    run(["wc", "-l", "data.txt"], work, env)
    run(["cat", "data.txt"], work, env)
    info = stats(env)
    assert info["results"] == 2 and info["records"] == 2
    assert info["hits"] == 1 and info["misses"] == 2
    files = buffer_files(env)
    assert info["buffers"] == len(files) and info["bytes"] == sum(disk(p) for p in files)
    assert info["buffer_directory"] == root(env) and info["max_size"] is None
    text = cache(["stats"], env).stdout
    assert "hit rate:" in text and "33.3%" in text


def test_stats_sees_buffers_added_after_it_remembered_the_directories(work, env):
    run(["cat", "data.txt"], work, env)
    first = stats(env)
    summary = os.path.join(root(env), ".seamless-summary.json")
    time.sleep(2.2)  # directories settle: now they are remembered
    assert stats(env) == first and os.path.exists(summary)
    (work / "data.txt").write_text("new\n")
    run(["cat", "data.txt"], work, env)
    after = stats(env)
    assert after["buffers"] == len(buffer_files(env)) > first["buffers"]


def test_ls_lists_commands_with_their_records_and_filters(work, env):
    run(["cat", "data.txt"], work, env)
    run(["-cp", "out", "mkdir -p out; sort -r data.txt > out/sorted"], work, env)
    listed = [json.loads(line) for line in cache(["ls", "--json"], env).stdout.splitlines()]
    commands = {e["command"] for e in listed}
    assert commands == {"cat data.txt", "mkdir -p out; sort -r data.txt > out/sorted"}
    for e in listed:
        assert e["language"] == "bash" and e["wall_time_seconds"] > 0 and e["finished_at"].endswith("Z")
        assert e["result_bytes"] > 0 and len(e["transformation"]) == 64
    only = cache(["ls", "--json", "--command", "cat *"], env).stdout.splitlines()
    assert [json.loads(line)["command"] for line in only] == ["cat data.txt"]
    assert cache(["ls", "--json", "--since", "1h"], env).stdout.count("\n") == 2
    assert cache(["ls", "--json", "--since", "2999-01-01"], env).stdout == ""
    table = cache(["ls"], env).stdout.splitlines()
    assert table[0].split()[:2] == ["FINISHED", "WALL"] and len(table) == 3
    bad = cache(["ls", "--since", "yesterday-ish"], env, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("seamless-cache: error: --since")


def test_ls_names_python_functions(tmp_path, env):
    script = tmp_path / "script.py"
    script.write_text(
        "import seamless.config\nseamless.config.init()\nfrom seamless.transformer import direct\n"
        "@direct\ndef add_one(x):\n    return x + 1\n"
        "print(add_one(41))\n")
    proc = subprocess.run([os.environ.get("PYTHON", "python3"), str(script)], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "42", proc.stderr
    listed = [json.loads(line) for line in cache(["ls", "--json"], env).stdout.splitlines()]
    assert [(e["language"], e["command"]) for e in listed] == [("python", "add_one()")]
    assert stats(env)["misses"] == 1


def test_show_by_prefix_prints_record_and_transformation(work, env):
    run(["cat", "data.txt"], work, env)
    (tf, result), = rows(env)
    shown = json.loads(cache(["show", tf[:10], "--json"], env).stdout)
    assert shown["transformation"] == tf and shown["result"] == result and shown["result_stored"]
    assert shown["transformation_dict"]["__language__"] == "bash"
    assert shown["execution_record"]["tf_checksum"] == tf
    assert json.loads(cache(["show", result, "--json"], env).stdout)["transformation"] == tf
    text = cache(["show", tf], env).stdout
    assert f"transformation: {tf}" in text and "bash:           cat data.txt" in text
    missing = cache(["show", "0" * 64], env, check=False)
    assert missing.returncode == 1 and "no cached result" in missing.stderr
    assert cache(["show", "xyz"], env, check=False).returncode == 1


# --- access times ---------------------------------------------------------------------


def test_a_cache_hit_records_its_use(work, env):
    run(["cat", "data.txt"], work, env)
    (_, result), = rows(env)
    path = os.path.join(root(env), result[:2], result)
    age_everything(env)
    run(["cat", "data.txt"], work, env)  # a hit
    assert time.time() - os.stat(path).st_mtime < 60
    assert oct(os.stat(path).st_mode & 0o777) == "0o444"  # touched, not rewritten


# --- gc ---------------------------------------------------------------------------------


def test_gc_evicts_inputs_first_then_results_with_their_buffers(work, env, tmp_path):
    meta, count = counted(tmp_path)
    (work / "big.txt").write_text("x" * 50_000)
    run([*meta, 'wc -c big.txt; echo x >> "$COUNT"'], work, env)
    run(["cat", "data.txt"], work, env)
    age_everything(env)
    before = stats(env)["bytes"]
    # room for everything but the 50 kB input: only it goes, no result
    big = [p for p in buffer_files(env) if os.path.getsize(p) == 50_000]
    report = json.loads(cache(["gc", "--max-size", str(before - 40_000), "--json"], env).stdout)
    assert report["evicted_results"] == 0 and len(rows(env)) == 2  # the big input (and maybe data.txt)
    assert not os.path.exists(big[0]) and report["evicted_bytes"] >= disk(work / "big.txt")
    run([*meta, 'wc -c big.txt; echo x >> "$COUNT"'], work, env)
    assert count() == 1  # still a hit: its result did not need the input
    age_everything(env)
    report = json.loads(cache(["gc", "--max-size", "0", "--json"], env).stdout)
    assert report["evicted_results"] == 2 and rows(env) == [] and buffer_files(env) == []
    proc = run([*meta, 'wc -c big.txt; echo x >> "$COUNT"'], work, env)
    assert proc.stdout.strip() == b"50000 big.txt" and count() == 2  # a clean miss: computed again


def test_gc_leaves_recent_use_alone_and_dry_run_changes_nothing(work, env):
    run(["cat", "data.txt"], work, env)
    files = sorted(buffer_files(env))
    report = json.loads(cache(["gc", "--max-size", "0", "--json"], env).stdout)
    assert report["evicted_buffers"] == 0 and sorted(buffer_files(env)) == files  # used moments ago
    age_everything(env)
    dry = json.loads(cache(["gc", "--older-than", "1h", "--dry-run", "--json"], env).stdout)
    assert dry["dry_run"] and dry["evicted_results"] == 1 and dry["evicted_buffers"] == len(files)
    assert sorted(buffer_files(env)) == files and len(rows(env)) == 1
    text = cache(["gc", "--older-than", "1h"], env).stdout
    assert text.startswith(f"evicted {len(files)} buffers") and buffer_files(env) == []


def test_gc_keeps_results_whose_buffers_were_used_recently(work, env):
    run(["cat", "data.txt"], work, env)
    (work / "other.txt").write_text("other\n")
    run(["cat", "other.txt"], work, env)
    age_everything(env)
    run(["cat", "data.txt"], work, env)  # a hit: its result is in use again
    cache(["gc", "--older-than", "1h"], env)
    assert [r for _, r in rows(env)] and run(["cat", "data.txt"], work, env).stdout == b"a\nb\nc\n"
    assert len(rows(env)) == 1 and dangling(env) == []


def test_gc_of_a_directory_result_takes_its_files_and_drops_it_when_one_is_gone(work, env, tmp_path):
    meta, count = counted(tmp_path)
    command = 'mkdir -p out; echo A > out/a; echo B > out/b; echo x >> "$COUNT"'
    run([*meta, "-cp", "out", command], work, env)
    (tf, index), = rows(env)
    entries = json.loads(open(os.path.join(root(env), index[:2], index)).read())
    assert sorted(entries) == ["out/a", "out/b"]
    age_everything(env)
    report = json.loads(cache(["gc", "--older-than", "1h", "--json"], env).stdout)
    assert report["evicted_results"] == 1 and rows(env) == [] and buffer_files(env) == []
    run([*meta, "-cp", "out", command], work, env)
    assert count() == 2 and (work / "out" / "b").read_text() == "B\n"
    # one file of the result lost (fresh, so gc would not evict it): the row goes, nothing dangles
    os.unlink(os.path.join(root(env), entries["out/b"][:2], entries["out/b"]))
    report = json.loads(cache(["gc", "--older-than", "1h", "--json"], env).stdout)
    assert report["dangling_results_dropped"] == 1 and rows(env) == []
    run([*meta, "-cp", "out", command], work, env)
    assert count() == 3 and len(rows(env)) == 1


def test_gc_without_a_bound_says_how_to_give_one(env):
    proc = cache(["gc"], env, check=False)
    assert proc.returncode == 1 and "--max-size" in proc.stderr and "SEAMLESS_CACHE_MAX_SIZE" in proc.stderr
    assert cache(["gc", "--older-than", "soon"], env, check=False).returncode == 1
    assert cache(["gc", "--max-size", "lots"], env, check=False).returncode == 1


def test_gc_racing_concurrent_writers_loses_nothing_and_leaves_no_dangling_row(work, env):
    """Writers run and re-run commands while gc evicts everything it may, over and over:
    every run prints the right answer, and no result row ever points at a missing buffer.
    gc's grace (what was used this recently stays) is cut to 2 s, and the writers pause
    longer than that between rounds, so results are evicted between (and during) rounds."""
    for i in range(6):
        (work / f"in{i}.txt").write_text(f"{i}\n" * (i + 1))
    env = dict(env, SEAMLESS_GC_GRACE="2")
    stop = threading.Event()
    failures, evicted = [], []

    def writer(n):
        for round_ in range(4):
            time.sleep(2.5)
            for i in range(6):
                proc = run(["wc", "-l", f"in{i}.txt"], work, env, check=False)
                if proc.returncode != 0 or proc.stdout.strip() != f"{i + 1} in{i}.txt".encode():
                    failures.append((n, round_, i, proc.returncode, proc.stdout, proc.stderr[-300:]))

    def collector():
        while not stop.is_set():
            proc = cache(["gc", "--older-than", "0", "--json"], env, check=False)
            if proc.returncode != 0 and "another gc" not in proc.stderr:
                failures.append(("gc", proc.stderr))
            elif proc.returncode == 0:
                evicted.append(json.loads(proc.stdout)["evicted_results"])
            bad = dangling(env)
            if bad:  # a row must never outlive its buffer, even for a moment
                failures.append(("dangling", bad))

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    gcs = threading.Thread(target=collector)
    gcs.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    gcs.join()
    assert failures == []
    assert sum(evicted), "gc never evicted anything: the race was not exercised"
    check = cache(["verify", "--json"], env, check=False)
    assert check.returncode == 0, check.stdout
    assert not glob.glob(os.path.join(root(env), "??", "*.gc-*"))  # nothing left moved aside


def test_two_gcs_at_once_one_waits_its_turn(work, env):
    from seamless.store.gc import Busy, exclusive

    run(["cat", "data.txt"], work, env)
    with exclusive(root(env)):
        proc = cache(["gc", "--older-than", "0"], env, check=False)
        assert proc.returncode == 1 and "another gc is working" in proc.stderr
        with pytest.raises(Busy):
            with exclusive(root(env)):
                pass


def test_a_killed_gc_leaves_nothing_behind(work, env):
    from seamless.store.gc import TRASH, sweep_trash

    run(["cat", "data.txt"], work, env)
    path = buffer_files(env)[0]
    dead = subprocess.Popen(["true"])
    dead.wait()
    trash = f"{path}{TRASH}{os.uname().nodename}-{dead.pid}"
    os.rename(path, trash)
    sweep_trash(root(env))
    assert not os.path.exists(trash)


# --- max_size -------------------------------------------------------------------------


def test_max_size_trims_the_cache_after_a_new_result(work, env):
    for i in range(5):
        (work / f"f{i}.txt").write_text(str(i) * 20_000)
        run(["wc", "-c", f"f{i}.txt"], work, env)
    age_everything(env)
    assert stats(env)["bytes"] > 100_000
    limited = dict(env, SEAMLESS_CACHE_MAX_SIZE="30KB")
    (work / "new.txt").write_text("new\n")
    assert run(["wc", "-c", "new.txt"], work, limited).stdout.strip() == b"4 new.txt"
    info = stats(limited)
    assert info["bytes"] <= 27_000 and info["max_size"] == 30_000
    assert dangling(env) == [] and "new.txt" in run(["wc", "-c", "new.txt"], work, limited).stdout.decode()
    assert "% used" in cache(["stats"], limited).stdout


def test_max_size_from_seamless_yaml_and_bad_values(work, env, tmp_path):
    e = {k: v for k, v in env.items() if k != "SEAMLESS_CACHE"}
    e["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    (work / "seamless.yaml").write_text("- max_size: 2G\n")
    assert json.loads(cache(["stats", "--json"], e, cwd=work).stdout)["max_size"] == 2 * 10**9
    (work / "seamless.yaml").write_text("- max_size: lots\n")
    proc = cache(["stats"], e, cwd=work, check=False)
    assert proc.returncode == 1 and "max_size" in proc.stderr and "5G" in proc.stderr
    os.unlink(work / "seamless.yaml")
    proc = cache(["stats"], dict(e, SEAMLESS_CACHE_MAX_SIZE="huge"), cwd=work, check=False)
    assert proc.returncode == 1 and "SEAMLESS_CACHE_MAX_SIZE" in proc.stderr


# --- verify ---------------------------------------------------------------------------


def test_verify_finds_planted_corruption_and_repair_removes_it(work, env, tmp_path):
    meta, count = counted(tmp_path)
    run([*meta, 'sort -r data.txt; echo x >> "$COUNT"'], work, env)
    run(["cat", "data.txt"], work, env)
    assert cache(["verify"], env).returncode == 0
    target, = [(t, r) for t, r in rows(env) if open(os.path.join(root(env), r[:2], r), "rb").read() == b"c\nb\na\n"]
    path = os.path.join(root(env), target[1][:2], target[1])
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(b"c\nb\nZ\n")  # tampered in place
    found = cache(["verify", "--json"], env, check=False)
    assert found.returncode == 1
    report = json.loads(found.stdout)
    assert [c["path"] for c in report["corrupt"]] == [path]
    assert [(d["transformation"], d["result"]) for d in report["dangling_results"]] == [target]
    text = cache(["verify"], env, check=False).stdout
    assert f"corrupt: {path}" in text and "dangling: result" in text
    repaired = cache(["verify", "--repair"], env, check=False)
    assert repaired.returncode == 0, repaired.stdout
    assert not os.path.exists(path) and target not in rows(env)
    assert cache(["verify"], env).returncode == 0
    assert run([*meta, 'sort -r data.txt; echo x >> "$COUNT"'], work, env).stdout == b"c\nb\na\n"
    assert count() == 2


def test_verify_finds_a_row_without_its_buffer_and_stray_records(work, env):
    run(["cat", "data.txt"], work, env)
    (tf, result), = rows(env)
    os.unlink(os.path.join(root(env), result[:2], result))
    with sqlite3.connect(os.path.join(root(env), "seamless.db")) as conn:
        conn.execute("INSERT INTO meta_data (checksum, result, metadata) VALUES (?, ?, ?)",
                     ("1" * 64, "2" * 64, "{}"))
    report = json.loads(cache(["verify", "--json"], env, check=False).stdout)
    assert report["dangling_results"] == [{"transformation": tf, "result": result, "missing": [result]}]
    assert report["stray_records"] == [{"transformation": "1" * 64, "result": "2" * 64}]
    assert cache(["verify", "--repair"], env, check=False).returncode == 0
    assert rows(env) == [] and cache(["verify"], env).returncode == 0
    assert run(["cat", "data.txt"], work, env).stdout == b"a\nb\nc\n"


def test_verify_reports_orphans_without_calling_them_wrong(work, env):
    run(["--dry", "--upload", "cat", "data.txt"], work, env)  # stored, never run: no row reaches them
    report = json.loads(cache(["verify", "--json"], env).stdout)
    assert report["orphan_buffers"] == len(buffer_files(env)) > 0
    assert report["corrupt"] == [] and report["dangling_results"] == []


def test_many_concurrent_hits_on_one_result_all_answer_from_the_cache(work, env, tmp_path):
    """Each hit touches the same buffers; none may take another's touch for a rewrite."""
    meta, count = counted(tmp_path)
    command = [*meta, 'sort -r data.txt; echo x >> "$COUNT"']
    run(command, work, env)
    procs = [subprocess.Popen([tool("seamless-run"), "-v", *command], cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(12)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [o for o, _ in outs] == [b"c\nb\na\n"] * 12
    assert count() == 1 and not any(b"computing again" in e for _, e in outs)
    assert stats(env)["hits"] == 12


def test_the_python_api_trims_the_cache_to_max_size_too(work, env, tmp_path):
    for i in range(4):
        (work / f"f{i}.txt").write_text(str(i) * 20_000)
        run(["wc", "-c", f"f{i}.txt"], work, env)
    age_everything(env)
    script = tmp_path / "trim.py"
    script.write_text("import seamless.config\nseamless.config.init()\nfrom seamless.transformer import direct\n"
                      "@direct\ndef double(x):\n    return 2 * x\n"
                      "print(double(21))\n")
    limited = dict(env, SEAMLESS_CACHE_MAX_SIZE="40KB")
    proc = subprocess.run([os.environ.get("PYTHON", "python3"), str(script)], env=limited, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "42", proc.stderr
    info = stats(env)
    assert info["bytes"] <= 36_000 and dangling(env) == []
    listed = [json.loads(line) for line in cache(["ls", "--json"], env).stdout.splitlines()]
    assert [e["command"] for e in listed if e["language"] == "python"] == ["double()"]


def test_a_configurations_local_storage_and_a_remote_one(work, env, tmp_path):
    """With seamless.yaml selecting a cluster that is this machine, seamless-cache works on its
    storage (per project, per stage); a cluster elsewhere is managed on its frontend."""
    home = tmp_path / "home"
    (home / ".seamless").mkdir(parents=True)
    (home / ".seamless" / "clusters.yaml").write_text(
        f"local_cluster: laptop\nlaptop:\n  type: local\n  frontends:\n"
        f"    - hashserver: {{bufferdir: {tmp_path / 'bufs'}}}\n      database: {{database_dir: {tmp_path / 'dbs'}}}\n"
        "hpc:\n  type: slurm\n  queues: {q: {cores: 1}}\n  frontends:\n"
        "    - hostname: login.hpc\n      hashserver: {bufferdir: ~/bufs}\n      database: {database_dir: ~/dbs}\n"
        "served:\n  type: slurm\n  queues: {q: {cores: 1}}\n  frontends:\n"
        f"    - hostname: localhost\n      hashserver: {{bufferdir: {tmp_path / 'served'}}}\n"
        f"      database: {{database_dir: {tmp_path / 'served'}}}\n")
    (work / "seamless.yaml").write_text("- project: demo\n- cluster: laptop\n- execution: process\n"
                                        "- stage elsewhere:\n  - cluster: hpc\n"
                                        "- stage here:\n  - cluster: served\n  - execution: process\n")
    e = {k: v for k, v in env.items() if k != "SEAMLESS_CACHE"}
    e.update(HOME=str(home), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    run(["cat", "data.txt"], work, e)
    info = json.loads(cache(["stats", "--json"], e, cwd=work).stdout)
    assert info["buffer_directory"].startswith(str(tmp_path / "bufs")) and info["results"] == 1
    assert info["database"].startswith(str(tmp_path / "dbs")) and info["misses"] == 1
    listed = cache(["ls", "--json"], e, cwd=work).stdout.splitlines()
    assert [json.loads(line)["command"] for line in listed] == ["cat data.txt"]
    elsewhere = cache(["stats", "--stage", "elsewhere"], e, cwd=work, check=False)
    assert elsewhere.returncode == 1 and "frontend" in elsewhere.stderr and "hpc" in elsewhere.stderr
    # a cluster whose servers run on this host: their directory and database file, directly
    here = json.loads(cache(["stats", "--json", "--stage", "here"], e, cwd=work).stdout)
    assert here["buffer_directory"].startswith(str(tmp_path / "served")) and here["results"] == 0
    clients = cache(["stats"], dict(e, SEAMLESS_REMOTE_CLIENTS='{"buffer": []}'), cwd=work, check=False)
    assert clients.returncode == 1 and "SEAMLESS_REMOTE_CLIENTS" in clients.stderr


# --- expression rows: the entries of result indexes ---------------------------------------


def expressions(env):
    with sqlite3.connect(os.path.join(root(env), "seamless.db")) as conn:
        return conn.execute("SELECT input_checksum, path, result FROM expression ORDER BY path").fetchall()


def test_gc_evicting_a_result_index_leaves_no_expression_row_pointing_into_it(work, env):
    run(["-cp", "out", "mkdir out; echo A > out/a; echo B > out/b"], work, env)
    (_, index), = rows(env)
    assert [(i, p) for i, p, _ in expressions(env)] == [(index, '["out/a"]'), (index, '["out/b"]')]
    age_everything(env)
    report = json.loads(cache(["gc", "--older-than", "1h", "--json"], env).stdout)
    assert report["evicted_results"] == 1 and rows(env) == [] and expressions(env) == []
    assert cache(["verify"], env).returncode == 0


def test_forgetting_one_of_two_rows_with_the_same_index_keeps_its_expression_rows(tmp_path):
    from seamless.store.sqlitedb import ResultDB

    db = ResultDB(tmp_path / "seamless.db", writable=True)
    tf1, tf2, index, a = (c * 64 for c in "1234")
    db.set_transformation(tf1, index)
    db.set_transformation(tf2, index)  # another command that gave the same files
    assert db.set_index_expressions(index, {"out/a": a, "x" * 100: a}) == 1  # too long for upstream's column
    assert db.forget([(tf1, index)]) == [(tf1, index)]
    assert db.get_rev_expression(a) == [{"checksum": index, "path": ["out/a"], "celltype": "plain",
                                         "target_celltype": "bytes", "result": a}]
    assert db.stray_records() == []
    db.forget([(tf2, index)])
    assert db.get_rev_expression(a) is None and db.stray_records() == []


def test_verify_flags_an_expression_row_whose_index_is_no_result_and_repair_removes_it(work, env):
    run(["-cp", "out", "mkdir out; echo A > out/a"], work, env)
    kept = expressions(env)
    with sqlite3.connect(os.path.join(root(env), "seamless.db")) as conn:
        conn.execute("INSERT INTO expression (input_checksum, path, celltype, target_celltype, result) "
                     "VALUES (?, '[\"f\"]', 'plain', 'bytes', ?)", ("1" * 64, "2" * 64))
    found = cache(["verify", "--json"], env, check=False)
    assert found.returncode == 1
    assert json.loads(found.stdout)["stray_records"] == [{"transformation": "1" * 64, "result": "2" * 64}]
    assert cache(["verify", "--repair"], env, check=False).returncode == 0
    assert expressions(env) == kept and len(kept) == 1  # the real entry's row stays
    assert cache(["verify"], env).returncode == 0


def test_gc_keeps_uploads_and_what_no_result_reaches_and_ages_rows_by_their_own_use(work, env, tmp_path):
    """What seamless-upload stored is the user's data (after --move, the only copy); what no
    result reaches yet (a queued job's inputs) waits a week; a row's age is its result's
    and its transformation's last use, not its code's (which other rows share)."""
    (work / "precious.txt").write_text("precious\n" * 1000)
    up = subprocess.run([tool("seamless-upload"), "--move", "precious.txt"], cwd=work, env=env, capture_output=True,
                        text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    run(["--dry", "--upload", "wc", "-l", "data.txt"], work, env)  # stored for later: reached by no result
    for i in range(2):
        (work / f"in{i}.txt").write_text(f"{i}\n")
        run(["wc", "-l", f"in{i}.txt"], work, env)  # two rows, one code buffer
    queued = {os.path.basename(p) for p in buffer_files(env)}
    age_everything(env, 2 * 86400)
    (work / "in0.txt").write_text("0\n")
    run(["wc", "-l", "in0.txt"], work, env)  # a hit: row 0 is in use, and the shared code with it
    cache(["gc", "--max-size", "0"], env)
    assert len(rows(env)) == 1  # row 1 went, although its code was just used by row 0
    assert (work / "precious.txt.CHECKSUM").exists()
    down = subprocess.run([tool("seamless-download"), "precious.txt"], cwd=work, env=env, capture_output=True,
                          timeout=60)
    assert down.returncode == 0 and (work / "precious.txt").read_text() == "precious\n" * 1000
    dry = run(["--dry", "wc", "-l", "data.txt"], work, env).stdout.decode().strip()
    assert dry in {os.path.basename(p) for p in buffer_files(env)}  # the uploaded transformation waits
    age_everything(env)  # a week and more: what no result reaches goes
    cache(["gc", "--max-size", "0"], env)
    left = {os.path.basename(p) for p in buffer_files(env)}
    assert dry not in left and left and left <= queued  # only the upload stays
    assert cache(["gc", "--max-size", "0", "--kept"], env).returncode == 0 and buffer_files(env) == []


def test_a_directory_where_a_buffer_belongs_is_reported_never_removed_and_does_not_block(work, env):
    run(["cat", "data.txt"], work, env)
    (tf, result), = rows(env)
    path = os.path.join(root(env), result[:2], result)
    os.unlink(path)
    os.mkdir(path)
    (open(os.path.join(path, "mine.txt"), "w")).write("not yours\n")
    found = cache(["verify"], env, check=False)
    assert found.returncode == 1 and f"not a buffer: {path}" in found.stdout
    assert cache(["verify", "--repair"], env, check=False).returncode == 1  # the directory is not ours
    assert os.path.isdir(path) and rows(env) == []  # the row that needed it is gone
    proc = run(["cat", "data.txt"], work, env, check=False)
    assert proc.returncode == 1 and f"{path} is a directory where a buffer belongs: remove it" in proc.stderr.decode()
    assert proc.stderr.decode().count("\n") <= 3
    os.unlink(os.path.join(path, "mine.txt"))
    os.rmdir(path)
    assert run(["cat", "data.txt"], work, env).stdout == b"a\nb\nc\n"


def test_ls_gives_the_size_of_a_commands_result_files(work, env):
    (work / "big.txt").write_text("x" * 30_000)
    run(["-cp", "copy.txt", "cp big.txt copy.txt"], work, env)
    entry, = [json.loads(line) for line in cache(["ls", "--json"], env).stdout.splitlines()]
    assert entry["result_bytes"] == 30_000
    assert cache(["gc", "--max-size", "inf"], env, check=False).stderr.strip() == \
        "seamless-cache: error: --max-size: 'inf' is not a size (use e.g. 500MB, 2G, 1.5TiB)"
