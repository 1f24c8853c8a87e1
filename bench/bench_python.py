#!/usr/bin/env python3
"""The Python face, ours and upstream's (seamless-transformer 0.6.1) side by side. One JSON line.

  import_s        `from seamless.transformer import direct` in a fresh interpreter (median)
  cached_call_s   an identical @direct call found in the in-process cache (median)
  new_call_s      a @direct call with new arguments, run in process (median)
  spawn_ratio     1000 independent ~10 ms CPU-bound transformations on 2 spawned
                  workers, wall time / ideal (1000 x 10 ms / 2)
Targets: import <= 100 ms, cached <= 0.2 ms, new <= 1 ms, spawn ratio <= 1.3.
Both run with bytecode caching on, without a configuration (memory caches only).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

JOBS = int(os.environ.get("BENCH_PYTHON_JOBS", "1000"))

IMPORT = """
import time
t = time.perf_counter()
from seamless.transformer import direct
print(time.perf_counter() - t)
"""

CALLS = """
import json, statistics, time
from seamless.transformer import direct

@direct
def add(a, b):
    return a + b

add(19, 23)
cached = []
for i in range(3000):
    t = time.perf_counter(); add(19, 23); cached.append(time.perf_counter() - t)
new = []
for i in range(3000):
    t = time.perf_counter(); add(i, 1000); new.append(time.perf_counter() - t)
print(json.dumps([statistics.median(cached), statistics.median(new)]))
"""

SPAWN = """
import json, sys, time
from seamless.transformer import delayed, spawn

@delayed
def busy(i, n):
    x = 0
    for k in range(n):
        x += k
    return i

def calibrate():  # loop iterations that take 10 ms here
    n = 100000
    while True:
        t = time.perf_counter()
        x = 0
        for k in range(n):
            x += k
        elapsed = time.perf_counter() - t
        if elapsed > 0.05:
            return int(n * 0.01 / elapsed)
        n *= 2

if __name__ == "__main__":
    jobs = int(sys.argv[1])
    iterations = calibrate()
    spawn(2)
    busy(-1, 10).run()
    t = time.perf_counter()
    tfs = [busy(i, iterations) for i in range(jobs)]
    for tf in tfs:
        tf.start()
    assert [tf.run() for tf in tfs] == list(range(jobs))
    print(json.dumps((time.perf_counter() - t) / (jobs * 0.01 / 2)))
"""


def run(python, script, cwd, env, *args):
    path = os.path.join(cwd, "script.py")
    with open(path, "w") as f:
        f.write(script)
    proc = subprocess.run([python, path, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{python} failed: {proc.stderr[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(python, env):
    with tempfile.TemporaryDirectory() as cwd:
        run(python, IMPORT, cwd, env)  # bytecode
        imports = [run(python, IMPORT, cwd, env) for _ in range(7)]
        cached, new = run(python, CALLS, cwd, env)
        ratio = run(python, SPAWN, cwd, env, str(JOBS))
    return {"import_s": round(statistics.median(imports), 4), "cached_call_s": round(cached, 7),
            "new_call_s": round(new, 7), "spawn_ratio": round(ratio, 3)}


def main():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    ours = measure(sys.executable, env)
    result = {"bench": "python", "jobs": JOBS, "ours": ours}
    venv = common.upstream_venv()
    if venv:
        theirs = measure(os.path.join(venv, "bin", "python"), env)
        result["upstream"] = theirs
        result["speedup"] = {k: round(theirs[k] / ours[k], 1) for k in ("import_s", "cached_call_s", "new_call_s")}
    result["targets_met"] = (ours["import_s"] <= 0.1 and ours["cached_call_s"] <= 0.0002
                             and ours["new_call_s"] <= 0.001 and ours["spawn_ratio"] <= 1.3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
