#!/usr/bin/env python3
"""seamless-cache on a 100,000-buffer cache, and what access times cost a cache hit.

One JSON line:
  build:     the cache: 33,333 results of `wc -c`-like transformations, each with its own
             input, transformation and result buffers, sharing 100 code buffers (100,099
             buffers), written through DirectoryStore and ResultDB; last uses spread over 30 days
  stats:     `seamless-cache stats --json` wall time, first (walks every directory) and
             again (only changed directories are walked); target <= 0.5 s
  ls:        `seamless-cache ls --json` wall time over the 33,333 results
  gc:        `seamless-cache gc --max-size HALF` (least recently used half) and then
             `--older-than 1d` of everything left; target <= 10 s for 100,000 buffers; beside it,
             `rm -rf` of a copy of the same cache (synced): what deleting the files alone costs
  cache_hit: median wall time of a seamless-run cache hit before access times were recorded
             (the commit before, $BENCH_CACHE_BASELINE, run from a git worktree) and now,
             alternating, in one run; target: within 5 ms
"""

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ROWS = int(os.environ.get("BENCH_CACHE_ROWS", "33333"))
REPEAT = int(os.environ.get("BENCH_CACHE_REPEAT", "21"))
BASELINE = os.environ.get("BENCH_CACHE_BASELINE", "437d0e3")  # main before issue 15
REPO = os.path.dirname(common.HERE)


def build(root):
    """A zero-config-shaped cache under root with ROWS results (about 3 buffers each)."""
    from seamless.identity import identity_buffer
    from seamless.store.directory import DirectoryStore
    from seamless.store.sqlitedb import ResultDB

    top = os.path.join(root, "__TOPLEVEL__")
    store = DirectoryStore(top, writable=True, layout="prefix", create=True)
    db = ResultDB(os.path.join(top, "seamless.db"), writable=True)
    codes = [store.put(f"(\nwc -c file{k}.txt\n) > RESULT\n".encode()) for k in range(100)]
    rows, records = [], []
    for i in range(ROWS):
        data = f"input {i}\n".encode() * 8
        cs = store.put(data)
        tf = {"__language__": "bash", "__output__": ["result", "bytes", None], "code": ["text", None, codes[i % 100]],
              "__format__": {"in.txt": {"filesystem": {"mode": "file", "optional": True}}},
              "in.txt": ["bytes", None, cs]}
        tf_cs = store.put(identity_buffer(tf))
        result = store.put(f"{len(data)} in.txt ({i})\n".encode())
        rows.append((tf_cs, result))
        records.append((tf_cs, result, json.dumps({
            "schema_version": 1, "tf_checksum": tf_cs, "result_checksum": result, "execution_mode": "process",
            "finished_at": "2026-11-01T00:00:00Z", "wall_time_seconds": 0.01, "cpu_time_user_seconds": 0.005,
            "cpu_time_system_seconds": 0.002, "memory_peak_bytes": 2 << 20})))
    with db.transaction() as c:  # one transaction: the benchmark is of seamless-cache, not of 33k commits
        c.executemany('INSERT INTO "transformation" (checksum, result) VALUES (?, ?)', rows)
        c.executemany('INSERT INTO "rev_transformation" (result, checksum) VALUES (?, ?)',
                      [(r, t) for t, r in rows])
        c.executemany('INSERT INTO "meta_data" (checksum, result, metadata) VALUES (?, ?, ?)', records)
    rng = random.Random(15)
    now = time.time()
    count = 0
    for d in os.scandir(top):
        if len(d.name) == 2 and d.is_dir():
            for f in os.scandir(d.path):
                then = now - rng.uniform(86400 * 1.5, 86400 * 30)
                os.utime(f.path, (then, then))
                count += 1
    assert count == ROWS * 3 + 100, count
    return count


def wall(argv, env, cwd=None):
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{argv}: {proc.stderr.decode()[-500:]}")
    return seconds, proc.stdout


def hit_times(env, work):
    """Median seamless-run hit, before (BASELINE's code) and now, alternating."""
    tree = tempfile.mkdtemp(prefix="bench-cache-baseline-")
    subprocess.run(["git", "-C", REPO, "worktree", "add", "-q", "--detach", tree, BASELINE], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        before_env = dict(env, PYTHONPATH=os.path.join(tree, "lib"))
        probe = subprocess.run([sys.executable, "-c", "import seamless; print(seamless.__file__)"], env=before_env,
                               capture_output=True, text=True, check=True).stdout
        assert probe.startswith(tree), probe
        argv = ["seq 1 10 | tac"]
        tools = {"before": [sys.executable, os.path.join(tree, "bin", "seamless-run"), *argv],
                 "now": [common.our_tool("seamless-run"), *argv]}
        envs = {"before": before_env, "now": env}
        for name in tools:  # the first run computes; then warm up
            wall(tools[name], envs[name], work)
            wall(tools[name], envs[name], work)
        times = {name: [] for name in tools}
        for _ in range(REPEAT):
            for name in tools:
                times[name].append(wall(tools[name], envs[name], work)[0])
        return {name: round(statistics.median(t) * 1000, 1) for name, t in times.items()}
    finally:
        subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", tree], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(tree, ignore_errors=True)


def main():
    common.our_tool("seamless-cache")
    base = tempfile.mkdtemp(prefix="bench-cache-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["SEAMLESS_CACHE"] = os.path.join(base, "cache")
    try:
        start = time.perf_counter()
        buffers = build(env["SEAMLESS_CACHE"])
        built = time.perf_counter() - start
        floor = os.path.join(base, "copy")  # what deleting these files costs this disk, for scale
        subprocess.run(["cp", "-a", env["SEAMLESS_CACHE"], floor], check=True)
        os.sync()
        rm_seconds, _ = wall(["rm", "-rf", floor], env)
        os.sync()
        tool = common.our_tool("seamless-cache")
        stats_first, out = wall([tool, "stats", "--json"], env)
        assert json.loads(out)["buffers"] == buffers, out
        time.sleep(2.5)  # the directories settle: the next stats remembers them
        wall([tool, "stats", "--json"], env)
        stats_again, _ = wall([tool, "stats", "--json"], env)
        ls_seconds, out = wall([tool, "ls", "--json"], env)
        assert out.count(b"\n") == ROWS
        total = json.loads(wall([tool, "stats", "--json"], env)[1])["bytes"]
        gc_half, out = wall([tool, "gc", "--max-size", str(total // 2), "--json"], env)
        half = json.loads(out)
        gc_rest, out = wall([tool, "gc", "--older-than", "1d", "--json"], env)
        rest = json.loads(out)
        evicted = half["evicted_buffers"] + rest["evicted_buffers"]
        assert evicted == buffers, (half, rest)
        work = os.path.join(base, "work")
        os.makedirs(work)
        hits = hit_times(env, work)
        print(json.dumps({
            "build": {"buffers": buffers, "results": ROWS, "seconds": round(built, 1)},
            "stats": {"first_seconds": round(stats_first, 3), "again_seconds": round(stats_again, 3),
                      "target_seconds": 0.5},
            "ls": {"seconds": round(ls_seconds, 2), "results": ROWS},
            "gc": {"half_seconds": round(gc_half, 2), "half_evicted_buffers": half["evicted_buffers"],
                   "rest_seconds": round(gc_rest, 2), "rest_evicted_buffers": rest["evicted_buffers"],
                   "all_seconds": round(gc_half + gc_rest, 2), "target_seconds": 10,
                   "rm_rf_seconds": round(rm_seconds, 2), "all_over_rm_rf": round((gc_half + gc_rest) / rm_seconds, 2)},
            "cache_hit": {"before_ms": hits["before"], "now_ms": hits["now"],
                          "difference_ms": round(hits["now"] - hits["before"], 1), "target_ms": 5}}))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
