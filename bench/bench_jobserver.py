#!/usr/bin/env python3
"""execution: remote through the job server, ours and upstream's side by side. One JSON line.

Each side gets a cluster on this machine (hashserver, database, jobserver; workers: 2) and
a project with execution: remote, in a fresh HOME and empty storage:
  init_s          seamless-init from nothing (all three services up)
  new_run_s       a new trivial `seamless-run 'echo ...'` through the job server (median);
                  ours also --local (new_local_s) for the ratio
  trivial_100_s   100 new trivial @delayed transformations via parallel(), submission to values
  sleep_100_s     100 new transformations of time.sleep(0.2); ideal: 100 x 0.2 / (2 workers x 3)
  jobserver_rss   the job server's RSS before and after the load (MiB)
Upstream runs with the configuration of ../shared/reference/upstream-remote-baseline.md
(conda: null for its jobserver, its venv on PATH). Targets: new run <= 2x local and >= 3x
faster than upstream; 100 trivial >= 5x upstream's throughput; sleeps within 1.3x of ideal;
init <= 1/3 of upstream's; RSS flat.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

RUNS = int(os.environ.get("BENCH_JOBSERVER_RUNS", "10"))
THROTTLE = 3

WORKLOAD = r"""
import os, sys, time
import seamless.config
seamless.config.set_workdir(os.getcwd())
from seamless.transformer import delayed, parallel
seamless.config.init()
kind, n, salt = sys.argv[1], int(sys.argv[2]), sys.argv[3]

@delayed
def double(x, salt):
    return x * 2

@delayed
def nap(x, salt):
    import time
    time.sleep(0.2)
    return x

fn = double if kind == "double" else nap
t = time.perf_counter()
values = [tf.value for tf in parallel([fn(i, salt) for i in range(n)])]
assert values == [(2 * i if kind == "double" else i) for i in range(n)], values[:5]
print(time.perf_counter() - t)
"""


def clusters_yaml(base, ours):
    conda = "" if ours else "\n        conda: null"
    p = 57000 if ours else 56000  # upstream needs port ranges; the two sides never share one
    return f"""local_cluster: benchlocal
benchlocal:
  type: local
  workers: 2
  frontends:
    - hostname: localhost
      hashserver:
        bufferdir: {base}/data/buffers
        network_interface: 127.0.0.1
        port_start: {p + 100}
        port_end: {p + 199}
      database:
        database_dir: {base}/data/db
        network_interface: 127.0.0.1
        port_start: {p + 200}
        port_end: {p + 299}
      jobserver:
        network_interface: 127.0.0.1
        port_start: {p + 300}
        port_end: {p + 399}{conda}
"""


def side(name, bindir, base):
    """Measure one side; returns its figures."""
    home, project = os.path.join(base, "home"), os.path.join(base, "proj")
    os.makedirs(os.path.join(home, ".seamless"))
    os.makedirs(project)
    with open(os.path.join(home, ".seamless", "clusters.yaml"), "w") as f:
        f.write(clusters_yaml(base, name == "ours"))
    with open(os.path.join(project, "seamless.yaml"), "w") as f:
        f.write("- project: bench\n- cluster: benchlocal\n- execution: remote\n- remote: jobserver\n")
    with open(os.path.join(project, "seamless.profile.yaml"), "w") as f:
        f.write("- nparallel: 100\n")
    with open(os.path.join(base, "workload.py"), "w") as f:
        f.write(WORKLOAD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(HOME=home, PATH=bindir + os.pathsep + env["PATH"], SEAMLESS_LAUNCH_DIR=os.path.join(base, "launch"))

    def timed(argv):
        t = time.perf_counter()
        proc = subprocess.run(argv, cwd=project, env=env, capture_output=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{name}: {argv} failed: {proc.stderr.decode()[-2000:]}")
        return time.perf_counter() - t, proc.stdout

    figures = {}
    figures["init_s"] = round(timed([os.path.join(bindir, "seamless-init")])[0], 3)
    salt = uuid.uuid4().hex[:8]
    run = os.path.join(bindir, "seamless-run")
    figures["new_run_s"] = round(statistics.median(timed([run, f"echo remote-{salt}-{i}"])[0]
                                                   for i in range(RUNS)), 4)
    if name == "ours":
        figures["new_local_s"] = round(statistics.median(timed([run, "--local", f"echo local-{salt}-{i}"])[0]
                                                         for i in range(RUNS)), 4)
    pid = jobserver_pid(base, name)
    figures["jobserver_rss_mib_before"] = rss(pid)
    python = os.path.join(bindir, "python")
    workload = os.path.join(base, "workload.py")
    figures["trivial_100_s"] = round(float(timed([python, workload, "double", "100", salt])[1]), 3)
    figures["sleep_100_s"] = round(float(timed([python, workload, "sleep", "100", salt])[1]), 3)
    for i in range(3):  # more load: RSS must not grow with it
        timed([python, workload, "double", "100", f"{salt}-{i}"])
    figures["jobserver_rss_mib_after"] = rss(pid)
    stop(name, bindir, env, project)
    return figures


def jobserver_pid(base, name):
    if name == "ours":
        path = os.path.join(base, "launch", "server", "jobserver-benchlocal-rw-bench.json")
    else:
        server = os.path.join(base, "home", ".remote-http-launcher", "server")
        path = next((os.path.join(server, f) for f in os.listdir(server) if f.startswith("jobserver")
                     and f.endswith(".json")), None)
    try:
        with open(path) as f:
            return json.load(f).get("pid")
    except (OSError, TypeError, ValueError):
        return None


def rss(pid):
    return round(common.rss_kib(pid) / 1024, 1) if pid else None


def stop(name, bindir, env, project):
    if name == "ours":
        for key in ("jobserver", "hashserver", "database"):
            subprocess.run([os.path.join(bindir, "seamless-launch"), "stop", f"{key}-benchlocal-rw-bench"],
                           env=env, capture_output=True, timeout=60)
    else:
        subprocess.run([os.path.join(bindir, "seamless-service-stop"), "--cluster", "benchlocal"], cwd=project,
                       env=env, capture_output=True, timeout=120)


def main():
    ours_bin = os.path.dirname(common.our_tool("seamless-run"))
    result = {"bench": "jobserver", "workers": 2, "ideal_sleep_100_s": round(100 * 0.2 / (2 * THROTTLE), 3)}
    with tempfile.TemporaryDirectory() as tmp:
        result["ours"] = side("ours", ours_bin, os.path.join(tmp, "ours"))
        venv = common.upstream_venv()
        if venv and os.path.exists(os.path.join(venv, "bin", "seamless-jobserver")):
            try:
                result["upstream"] = side("upstream", os.path.join(venv, "bin"), os.path.join(tmp, "upstream"))
            except (RuntimeError, subprocess.SubprocessError) as exc:
                result["upstream_error"] = str(exc)[-500:]
    ours, up = result["ours"], result.get("upstream")
    result["ratio_remote_vs_local_run"] = round(ours["new_run_s"] / ours["new_local_s"], 2)
    result["sleep_vs_ideal"] = round(ours["sleep_100_s"] / result["ideal_sleep_100_s"], 2)
    if up:
        result["speedup"] = {k: round(up[k] / ours[k], 1) for k in ("init_s", "new_run_s", "trivial_100_s",
                                                                     "sleep_100_s")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
