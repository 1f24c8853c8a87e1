#!/usr/bin/env python3
"""seamless-launch speed, ours and upstream's remote-http-launcher side by side. One JSON line.

  launch_s: median wall time of the launcher command from nothing (no status or client
            file) to a hashserver answering /healthcheck    (target <= 1 s)
  reuse_s:  median wall time of the same command while the service runs and the
            client file is present                           (target <= 50 ms)
Upstream is measured launching its own hashserver (what its users get) and launching
ours (the launcher alone). Everything runs locally with bytecode caching on, after a warm-up.
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

REPEAT_LAUNCH = int(os.environ.get("BENCH_LAUNCH_REPEAT", "7"))
REPEAT_REUSE = 3 * REPEAT_LAUNCH


def wall(argv, env):
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def stop(status_file):
    """Kill the service and forget it, as if nothing had ever run."""
    try:
        with open(status_file) as f:
            pid = json.load(f)["pid"]
        os.kill(pid, 15)
        for _ in range(200):
            os.kill(pid, 0)
            time.sleep(0.01)
    except (OSError, ValueError, KeyError):
        pass


def measure(argv, env, state_dir, key):
    """(median launch s, median reuse s) for a launcher storing its state in state_dir."""
    status_file = os.path.join(state_dir, "server", key + ".json")
    client_file = os.path.join(state_dir, "client", key + ".json")
    launches = []
    for i in range(REPEAT_LAUNCH + 1):
        stop(status_file)
        for path in (status_file, client_file):
            if os.path.exists(path):
                os.unlink(path)
        elapsed = wall(argv, env)
        if i:
            launches.append(elapsed)  # the first one warms bytecode and page caches
    reuses = [wall(argv, env) for _ in range(REPEAT_REUSE)]
    stop(status_file)
    return round(statistics.median(launches), 4), round(statistics.median(reuses), 4)


def spec(path, key, workdir, hashserver):
    with open(path, "w") as f:
        f.write(f"key: {key}\nworkdir: {workdir}\nhandshake: healthcheck\n"
                f"command: {hashserver} --status-file {{status_file}} --port-range 51000 51999 {workdir} --writable\n")
    return path


def main():
    ours = common.our_tool("seamless-launch")
    hashserver = common.our_tool("seamless-hashserver")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    base_env.pop("PYTHONDONTWRITEBYTECODE", None)
    result = {"bench": "launch", "repeat_launch": REPEAT_LAUNCH, "repeat_reuse": REPEAT_REUSE}
    with tempfile.TemporaryDirectory() as tmp:
        bufs = os.path.join(tmp, "bufs")
        os.makedirs(bufs)
        env = dict(base_env, SEAMLESS_LAUNCH_DIR=os.path.join(tmp, "ours"))
        launch, reuse = measure([ours, spec(os.path.join(tmp, "ours.yaml"), "hs-ours", bufs, hashserver)], env,
                                env["SEAMLESS_LAUNCH_DIR"], "hs-ours")
        result["ours"] = {"launch_s": launch, "reuse_s": reuse}
        venv = common.upstream_venv()
        if venv:
            home = os.path.join(tmp, "home")
            os.makedirs(home)
            up_env = dict(base_env, HOME=home, PATH=os.path.join(venv, "bin") + os.pathsep + base_env["PATH"])
            rhl = os.path.join(venv, "bin", "remote-http-launcher")
            state = os.path.join(home, ".remote-http-launcher")
            # upstream only launches whitelisted bare names: ours goes in as "hashserver" on PATH
            shim = os.path.join(tmp, "shim")
            os.makedirs(shim)
            os.symlink(hashserver, os.path.join(shim, "hashserver"))
            for label, path in (("upstream", up_env["PATH"]),
                                ("upstream_launcher_our_hashserver", shim + os.pathsep + up_env["PATH"])):
                key = "hs-" + label.replace("_", "-")
                launch, reuse = measure([rhl, spec(os.path.join(tmp, key + ".yaml"), key, bufs, "hashserver")],
                                        dict(up_env, PATH=path), state, key)
                result[label] = {"launch_s": launch, "reuse_s": reuse}
            for what in ("launch_s", "reuse_s"):
                result[f"{what[:-2]}_speedup_vs_upstream"] = round(result["upstream"][what] / result["ours"][what], 1)
    result["targets_met"] = result["ours"]["launch_s"] <= 1.0 and result["ours"]["reuse_s"] <= 0.05
    print(json.dumps(result))


if __name__ == "__main__":
    main()
