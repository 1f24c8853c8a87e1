#!/usr/bin/env python3
"""seamless-run speed, ours and upstream's (0.6.1, with SEAMLESS_CACHE) side by side.

One JSON line:
  cache_hit:    median wall time and peak RSS of `seamless-run 'seq 1 10 | tac'` once cached
  new_command:  median wall time of a never-seen `echo N`, and its overhead over plain bash
  hash_1gib:    `seamless-run --dry` on a 1 GiB input vs `sha256sum` (speed ratio, peak RSS)
  big_stdout:   peak RSS and time of a 256 MiB stdout result, computed then cached (it is
                streamed: memory must not grow with the result)
Both tools run with bytecode caching on (as installed software does) after a warm-up.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

REPEAT = int(os.environ.get("BENCH_RUN_REPEAT", "15"))


def timed(argv, cwd, env):
    """(wall seconds, peak RSS MiB) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} failed: {err.decode(errors='replace')[-500:]}")
    return wall, usage.ru_maxrss / 1024


def median_of(argvs, cwd, env):
    samples = [timed(a, cwd, env) for a in argvs]
    return statistics.median(s[0] for s in samples), max(s[1] for s in samples)


def measure(tool, env, work, label):
    hit = [tool, "seq 1 10 | tac"]
    for _ in range(2):
        timed(hit, work, env)  # warm-up: first execution, bytecode, services
    hit_s, hit_rss = median_of([hit] * REPEAT, work, env)
    base = int(time.time() * 1000) % 10**9
    new_s, _ = median_of([[tool, f"echo {label}{base + i}"] for i in range(REPEAT)], work, env)
    return {"cache_hit_s": round(hit_s, 4), "cache_hit_peak_rss_mib": round(hit_rss, 1),
            "new_trivial_s": round(new_s, 4)}


def hashing(tool, env, work):
    big = os.path.join(work, "big.dat")
    with open(big, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(1024):
            f.write(block)
    timed(["sha256sum", big], work, env)  # page cache warm
    sha_s, sha_rss = min(timed(["sha256sum", big], work, env) for _ in range(2))
    ours_s, ours_rss = min(timed([tool, "--dry", "wc -c big.dat"], work, env) for _ in range(2))
    os.unlink(big)
    return {"sha256sum_s": round(sha_s, 3), "seamless_run_dry_s": round(ours_s, 3),
            "speed_vs_sha256sum": round(sha_s / ours_s, 2), "peak_rss_mib": round(ours_rss, 1)}


BIG_STDOUT = 256 << 20


def big_stdout(tool, env, work):
    command = [tool, f"yes abcdefg | head -c {BIG_STDOUT}"]
    miss_s, miss_rss = timed(command, work, env)
    hit_s, hit_rss = timed(command, work, env)
    return {"result_mib": BIG_STDOUT >> 20, "miss_s": round(miss_s, 2), "miss_peak_rss_mib": round(miss_rss, 1),
            "hit_s": round(hit_s, 2), "hit_peak_rss_mib": round(hit_rss, 1)}


def main():
    ours = common.our_tool("seamless-run")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)
    result = {"bench": "run"}
    with tempfile.TemporaryDirectory() as tmp:
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        env = {**base_env, "SEAMLESS_CACHE": os.path.join(tmp, "ours")}
        result["ours"] = measure(ours, env, work, "o")
        bash_s, _ = median_of([["bash", "-c", f"echo {i}"] for i in range(REPEAT)], work, env)
        result["bash_s"] = round(bash_s, 4)
        result["ours"]["new_trivial_overhead_s"] = round(result["ours"]["new_trivial_s"] - bash_s, 4)
        result["hash_1gib"] = hashing(ours, env, work)
        result["big_stdout"] = {"ours": big_stdout(ours, env, work)}
        venv = common.upstream_venv()
        if venv and os.path.exists(os.path.join(venv, "bin", "seamless-run")):
            up_env = {**base_env, "SEAMLESS_CACHE": os.path.join(tmp, "upstream"),
                      "HOME": os.path.join(tmp, "home"),
                      "PATH": os.path.join(venv, "bin") + os.pathsep + base_env["PATH"]}
            os.makedirs(up_env["HOME"])
            try:
                result["upstream"] = measure(os.path.join(venv, "bin", "seamless-run"), up_env, work, "u")
                result["ratio_cache_hit"] = round(result["upstream"]["cache_hit_s"] / result["ours"]["cache_hit_s"], 1)
                result["ratio_new_trivial"] = round(result["upstream"]["new_trivial_s"] / result["ours"]["new_trivial_s"], 1)
                result["big_stdout"]["upstream"] = big_stdout(os.path.join(venv, "bin", "seamless-run"), up_env, work)
            finally:
                _stop_upstream_services(up_env)
    print(json.dumps(result))


def _stop_upstream_services(env):
    """Upstream's SEAMLESS_CACHE launches a hashserver and database; stop them."""
    server_dir = os.path.join(env["HOME"], ".remote-http-launcher", "server")
    if not os.path.isdir(server_dir):
        return
    for name in os.listdir(server_dir):
        if name.endswith(".json"):
            try:
                with open(os.path.join(server_dir, name)) as f:
                    os.kill(int(json.load(f)["pid"]), 15)
            except (OSError, ValueError, KeyError):
                pass


if __name__ == "__main__":
    main()
