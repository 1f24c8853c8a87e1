#!/usr/bin/env python3
"""execution: remote through a daskserver on distributed::LocalCluster, ours and upstream's
side by side. One JSON line.

Each side gets a cluster on this machine (hashserver, database, daskserver; queue: cores 2,
maximum_jobs 2, where the baseline's upstream run had 1) in a fresh HOME with empty storage, and
two projects on the same storage:
`proj` (execution: remote, remote: daskserver) and `proj-process` (execution: process).
  init_s          seamless-init from nothing (services and Dask cluster up)
  trivial_1000_s  1,000 new trivial @delayed transformations (x*2) via parallel(), submission
                  to all values in; trivial_1000_tasks_per_s
  run_200_s       200 new `seamless-run 'echo ...'`, RUN_CONCURRENCY at a time; run_200_per_cmd_s
                  (total / 200) and run_200_median_s (latency of one command)
  warm_new_s      one new trivial transformation on the warm cluster (median of RUNS, each new);
                  warm_new_local_s the same with `.local = True` in the same project
  hit_remote_s    cache hit of an already computed transformation under execution: remote
  hit_local_s     the same hits under execution: process (they must be equal: a hit never
                  contacts Dask); the hits are proven: the results carry a timestamp of their run
  sleep_1000_s    1,000 transformations of time.sleep(0.5) on 2 Dask workers x cores 2; ours runs
                  2 Seamless workers per Dask worker x throttle 3 = 12 at once, ideal 1000 x 0.5 / 12;
                  upstream runs `cores` per Dask worker = 4 at once (baseline §3.3): its own ideal
Targets (issue 14): trivial_1000 throughput >= 5x upstream's; warm_new - warm_new_local <= 50 ms;
hit_remote == hit_local; sleep_1000 within 1.3x of its ideal.

Upstream runs with the configuration of ../shared/reference/upstream-remote-baseline.md §2.2-2.3
(its stand-in conda: this machine has none), from bench/upstream-dask-suite-venv.sh; the
`Dask dashboard:` line it prints on stdout is stripped (and counted). Our side runs the tools of
--ours-venv (default: the repo's .venv, with the dask extra).

  python bench/bench_dask.py [--side upstream|ours|both] [--ours-venv DIR] [--upstream-venv DIR]
  BENCH_DASK_SLEEP=0 skips sleep_1000; BENCH_DASK_SLEEP_N (1000), BENCH_DASK_TRIVIAL_N (1000),
  BENCH_DASK_RUN_N (200), BENCH_DASK_RUNS (10) change the counts; BENCH_DASK_KEEP=1 keeps the
  scratch directory (logs, configs), BENCH_DASK_VERBOSE=1 prints a failed step's stderr tail.
Exit status 1 when a side failed (its error is in the JSON line as <side>_error).
"""

import argparse
import concurrent.futures
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TRIVIAL_N = int(os.environ.get("BENCH_DASK_TRIVIAL_N", "1000"))
RUN_N = int(os.environ.get("BENCH_DASK_RUN_N", "200"))
RUNS = int(os.environ.get("BENCH_DASK_RUNS", "10"))
SLEEP = os.environ.get("BENCH_DASK_SLEEP", "1") != "0"
SLEEP_N = int(os.environ.get("BENCH_DASK_SLEEP_N", "1000"))
SLEEP_S = 0.5
RUN_CONCURRENCY = 4
STEP_TIMEOUT = 900  # s: a step that hangs (a stuck task) fails instead of blocking the run
NPARALLEL = 100
DASK_WORKERS, CORES, THROTTLE = 2, 2, 3  # maximum_jobs (one Dask worker each), Seamless workers, throttle
CLUSTER = "benchdask"
DASHBOARD = "Dask dashboard:"  # upstream prints this on stdout (baseline §3.2)

WORKLOAD = r"""
import json, os, statistics, sys, time
import seamless.config
seamless.config.set_workdir(os.getcwd())  # upstream takes it from __file__ (baseline §4)
from seamless.transformer import delayed, parallel
seamless.config.init()
kind, n, salt = sys.argv[1], int(sys.argv[2]), sys.argv[3]

@delayed
def double(x, salt):
    return x * 2

@delayed
def nap(x, salt):
    import time
    time.sleep(SLEEP_S)
    return x

@delayed
def stamp(x, salt):  # x * 2, and when it ran: a hit returns the stamp of the first run
    import time
    return [x * 2, time.time_ns()]

if kind in ("trivial", "sleep"):
    fn = double if kind == "trivial" else nap
    t = time.perf_counter()
    values = [tf.value for tf in parallel([fn(i, salt) for i in range(n)])]
    seconds = time.perf_counter() - t
    assert values == [(2 * i if kind == "trivial" else i) for i in range(n)], values[:5]
    print(json.dumps({"s": seconds}))
else:  # new, new-local: each one new; hit: those of `new` again, expected in argv[4]
    if kind == "new-local":
        stamp.local = True
    expected = json.load(open(sys.argv[4])) if kind == "hit" else None
    first = stamp(-1, salt).run()  # the connection, the workers and the code warm (a hit for `hit`)
    assert first[0] == -2 and (expected is None or first == expected["warm"]), first
    times, values = [], []
    for i in range(n):
        tf = stamp(i, f"{salt}-{i}")
        t = time.perf_counter()
        values.append(tf.run())
        times.append(time.perf_counter() - t)
    assert [v[0] for v in values] == [2 * i for i in range(n)], values
    if expected is not None:
        assert values == expected["values"], "not cache hits: the results were computed again"
    print(json.dumps({"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                      "warm": first, "values": values}))
""".replace("SLEEP_S", repr(SLEEP_S))

# upstream's stand-in conda (baseline §2.3): `conda activate seamless` puts its venv first on PATH
CONDA_SH = """# Fake conda.sh: 'conda activate seamless' puts $UPVENV/bin first on PATH.
conda() {
  if [ "$1" = "activate" ]; then
    case "$2" in
      seamless) export PATH=UPVENV/bin:$PATH; export CONDA_PREFIX=UPVENV; export CONDA_DEFAULT_ENV=seamless;;
      base|"") export CONDA_PREFIX=FAKECONDA; export CONDA_DEFAULT_ENV=base;;
      *) echo "EnvironmentNameNotFound: Could not find conda environment: $2" >&2; return 1;;
    esac
    return 0
  fi
  FAKECONDA/bin/conda "$@"
}
"""
CONDA_BIN = """#!/bin/bash
case "$1" in
  info)
    if [ "$2" = "--base" ]; then echo FAKECONDA; exit 0; fi
    echo "fake conda"; exit 0;;
  env)
    echo '{"envs": ["FAKECONDA", "FAKECONDA/envs/seamless"]}'; exit 0;;
  activate)
    exit 0;;
  *) echo "fake conda: unsupported: $*" >&2; exit 1;;
esac
"""
BASHRC = """# >>> conda initialize >>>
# (fake: points remote-http-launcher / rhl-cache-conda at the stand-in conda.sh)
if [ -f "FAKECONDA/etc/profile.d/conda.sh" ]; then
    . "FAKECONDA/etc/profile.d/conda.sh"
fi
# <<< conda initialize <<<
"""


def port_block(size=300, taken=()):
    """The first port of `size` consecutive ports on 127.0.0.1 that are all free now."""
    for _ in range(200):
        first = random.randrange(20000, 60000 - size, 100)
        if any(abs(first - t) < size for t in taken):
            continue
        try:
            for port in range(first, first + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {size} consecutive free ports found")


def clusters_yaml(base, ours, first_port):
    conda = "" if ours else "\n      conda: seamless"  # upstream asserts a queue conda (§2.2)
    storage = {"hashserver": f"bufferdir: {base}/data/buffers", "database": f"database_dir: {base}/data/db",
               "daskserver": None}
    blocks = ""
    for i, (service, location) in enumerate(storage.items()):
        lines = ([location] if location else []) + (["conda: seamless"] if location and not ours else [])
        lines += ["network_interface: 127.0.0.1", f"port_start: {first_port + 100 * i}",
                  f"port_end: {first_port + 100 * i + 99}"]
        blocks += f"      {service}:\n" + "".join(f"        {line}\n" for line in lines)
    return f"""local_cluster: {CLUSTER}
{CLUSTER}:
  type: local
  workers: {CORES}
  default_queue: main
  queues:
    main:{conda}
      walltime: "01:00:00"
      cores: {CORES}
      memory: 4GB
      maximum_jobs: {DASK_WORKERS}
  frontends:
    - hostname: localhost
{blocks}"""


def write(path, text, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    if mode:
        os.chmod(path, mode)


class SideError(RuntimeError):
    """A step failed: one line, and the tail of its stderr."""

    def __init__(self, line, tail=""):
        super().__init__(line)
        self.tail = tail


class Side:
    """One side's HOME, projects and environment; run() measures it and stops what it started."""

    def __init__(self, name, bindir, base, first_port):
        self.name, self.bindir, self.base = name, bindir, base
        self.home = os.path.join(base, "home")
        self.project = os.path.join(base, "proj")
        self.process_project = os.path.join(base, "proj-process")
        self.workload = os.path.join(base, "workload.py")
        ours = name == "ours"
        write(os.path.join(self.home, ".seamless", "clusters.yaml"), clusters_yaml(base, ours, first_port))
        for project, execution in ((self.project, "remote\n- remote: daskserver"), (self.process_project, "process")):
            write(os.path.join(project, "seamless.yaml"),
                  f"- project: bench\n- cluster: {CLUSTER}\n- execution: {execution}\n")
            write(os.path.join(project, "seamless.profile.yaml"), f"- nparallel: {NPARALLEL}\n")
        write(self.workload, WORKLOAD)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SEAMLESS_", "CONDA", "DASK_"))}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(HOME=self.home, PATH=bindir + os.pathsep + env["PATH"], XDG_CACHE_HOME=os.path.join(base, "xdg"))
        if ours:
            env["SEAMLESS_LAUNCH_DIR"] = os.path.join(base, "launch")
        else:
            self._fake_conda(os.path.dirname(bindir))
        self.env = env
        self.polluted = 0
        self.figures = {}

    def _fake_conda(self, upvenv):
        fake = os.path.join(self.base, "fakeconda")
        sub = {"UPVENV": upvenv, "FAKECONDA": fake}

        def fill(text):
            for k, v in sub.items():
                text = text.replace(k, v)
            return text

        write(os.path.join(fake, "etc", "profile.d", "conda.sh"), fill(CONDA_SH))
        write(os.path.join(fake, "bin", "conda"), fill(CONDA_BIN), 0o755)
        os.makedirs(os.path.join(fake, "envs"))
        os.symlink(upvenv, os.path.join(fake, "envs", "seamless"))
        write(os.path.join(self.home, ".bashrc"), fill(BASHRC))

    def call(self, argv, cwd=None, timeout=STEP_TIMEOUT):
        proc = subprocess.run(argv, cwd=cwd or self.project, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or ["(no stderr)"]
            raise SideError(f"{' '.join(argv)[:200]} exited {proc.returncode}: {lines[-1]}",
                            "\n".join(lines[-30:]))
        return proc.stdout

    def workload_run(self, *args, cwd=None, timeout=STEP_TIMEOUT):
        out = self.call([os.path.join(self.bindir, "python"), self.workload, *map(str, args)], cwd=cwd,
                        timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])  # upstream may print its dashboard line first

    def seamless_run(self, word):
        t = time.perf_counter()
        out = self.call([os.path.join(self.bindir, "seamless-run"), f"echo {word}"], timeout=600)
        seconds = time.perf_counter() - t
        lines = out.splitlines()
        clean = [line for line in lines if not line.startswith(DASHBOARD)]
        self.polluted += len(lines) != len(clean)
        if clean != [word]:
            raise SideError(f"seamless-run 'echo {word}' printed {out!r}")
        return seconds

    def run(self):
        """Measure; the figures so far stay in self.figures when a step fails."""
        figures = self.figures = {"loadavg_1min_at_start": round(os.getloadavg()[0], 2)}
        salt = uuid.uuid4().hex[:10]
        t = time.perf_counter()
        self.call([os.path.join(self.bindir, "seamless-init")], timeout=600)
        figures["init_s"] = round(time.perf_counter() - t, 3)

        figures["trivial_1000_n"] = TRIVIAL_N
        seconds = self.workload_run("trivial", TRIVIAL_N, salt)["s"]
        figures["trivial_1000_s"] = round(seconds, 3)
        figures["trivial_1000_tasks_per_s"] = round(TRIVIAL_N / seconds, 1)

        words = [f"bench-dask-{self.name}-{salt}-{i}" for i in range(RUN_N)]
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(RUN_CONCURRENCY) as pool:
            latencies = list(pool.map(self.seamless_run, words))
        seconds = time.perf_counter() - t
        figures.update(run_200_n=RUN_N, run_200_concurrency=RUN_CONCURRENCY, run_200_s=round(seconds, 3),
                       run_200_per_cmd_s=round(seconds / RUN_N, 4),
                       run_200_median_s=round(statistics.median(latencies), 4))
        if self.name == "upstream":
            figures["n_stdout_polluted_by_dashboard_line"] = self.polluted

        new = self.workload_run("new", RUNS, f"{salt}-new")
        local = self.workload_run("new-local", RUNS, f"{salt}-local")
        figures["warm_new_s"] = round(new["median_s"], 4)
        figures["warm_new_local_s"] = round(local["median_s"], 4)
        figures["warm_new_minus_local_ms"] = round(1000 * (new["median_s"] - local["median_s"]), 1)

        expected = os.path.join(self.base, "expected.json")
        write(expected, json.dumps(new))
        remote = self.workload_run("hit", RUNS, f"{salt}-new", expected)["median_s"]
        local = self.workload_run("hit", RUNS, f"{salt}-new", expected, cwd=self.process_project)["median_s"]
        figures.update(hit_remote_s=round(remote, 6), hit_local_s=round(local, 6),
                       hit_remote_over_local=round(remote / local, 2))

        if SLEEP:
            parallel_slots = DASK_WORKERS * CORES * (THROTTLE if self.name == "ours" else 1)
            ideal = SLEEP_N * SLEEP_S / parallel_slots
            seconds = self.workload_run("sleep", SLEEP_N, salt, timeout=max(STEP_TIMEOUT, 10 * ideal))["s"]
            figures.update(sleep_1000_n=SLEEP_N, sleep_1000_s=round(seconds, 2), sleep_1000_slots=parallel_slots,
                           sleep_1000_ideal_s=round(ideal, 2), sleep_1000_vs_ideal=round(seconds / ideal, 2),
                           sleep_1000_vs_ideal_12=round(seconds / (SLEEP_N * SLEEP_S / 12), 2))
        return figures

    def stop(self):
        """Stop the services through the side's own tools, then end what they left behind
        (found by this side's private HOME, so only processes this benchmark started)."""
        try:
            if self.name == "ours":
                launch = os.path.join(self.bindir, "seamless-launch")
                rows = subprocess.run([launch, "ps", "--json"], env=self.env, capture_output=True, text=True,
                                      timeout=120).stdout.splitlines()
                keys = [json.loads(row)["key"] for row in rows if row.strip()]
                if keys:
                    subprocess.run([launch, "stop", *keys], env=self.env, capture_output=True, timeout=180)
            else:
                subprocess.run([os.path.join(self.bindir, "seamless-service-stop"), "--cluster", CLUSTER],
                               cwd=self.project, env=self.env, capture_output=True, timeout=180)
        except (subprocess.SubprocessError, OSError, ValueError):
            pass
        return end_leftovers(self.home)

    def log_tracebacks(self):
        """Tracebacks in the daskserver's log (upstream's CacheMissError race, baseline §3.4)."""
        server = (os.path.join(self.base, "launch", "server") if self.name == "ours"
                  else os.path.join(self.home, ".remote-http-launcher", "server"))
        count = 0
        for entry in os.listdir(server) if os.path.isdir(server) else ():
            if entry.startswith("daskserver") and entry.endswith(".log"):
                with open(os.path.join(server, entry), errors="replace") as f:
                    count += sum(line.startswith("Traceback") for line in f)
        return count


def end_leftovers(home):
    """Terminate the processes whose environment has HOME=home (this run's own); their count."""
    marker = f"HOME={home}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while sig == signal.SIGTERM and time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.1)
    return len(pids)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def compare(ours, up):
    """Ratios between the sides (upstream's time over ours: > 1 is ours faster) and the targets."""
    out = {}
    keys = [k for k in ("trivial_1000_s", "run_200_s", "warm_new_s", "hit_remote_s", "sleep_1000_s", "init_s")
            if k in ours and k in up and ours.get(k[:-2] + "_n") == up.get(k[:-2] + "_n")]
    if keys:
        out["upstream_over_ours"] = {k: round(up[k] / max(ours[k], 1e-6), 2) for k in keys}
    if "trivial_1000_s" in keys:
        out["throughput_trivial_1000_ours_over_upstream"] = round(
            ours["trivial_1000_tasks_per_s"] / up["trivial_1000_tasks_per_s"], 2)
    targets = {}
    if "throughput_trivial_1000_ours_over_upstream" in out:
        targets["trivial_1000_throughput_ge_5x_upstream"] = out["throughput_trivial_1000_ours_over_upstream"] >= 5
    if "warm_new_minus_local_ms" in ours:
        targets["warm_new_le_50ms_above_local"] = ours["warm_new_minus_local_ms"] <= 50
    if "hit_remote_s" in ours:  # "equal": within timing noise (25 %, or 2 ms)
        targets["hit_remote_equals_local"] = ours["hit_remote_s"] <= max(1.25 * ours["hit_local_s"],
                                                                         ours["hit_local_s"] + 0.002)
    if "sleep_1000_vs_ideal" in ours:
        targets["sleep_1000_within_1_3x_ideal"] = ours["sleep_1000_vs_ideal"] <= 1.3
    if targets:
        out["targets_ours"] = targets
    return out


def upstream_bindir(venv):
    if venv is None:
        venv = subprocess.run([os.path.join(HERE, "upstream-dask-suite-venv.sh")], check=True,
                              capture_output=True, text=True, timeout=1800).stdout.strip()
    return os.path.join(venv, "bin")


def ours_bindir(venv):
    if venv is None:
        venv = os.path.join(ROOT, ".venv")
    bindir = os.path.join(venv, "bin")
    if not os.path.exists(os.path.join(bindir, "seamless-dask-wrapper")):
        raise RuntimeError(f"{bindir}/seamless-dask-wrapper not found: pip install -e '.[dask]' into {venv}, "
                           "or give --ours-venv")
    return bindir


def interrupted(signum, frame):
    raise KeyboardInterrupt


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", choices=("upstream", "ours", "both"), default="both")
    parser.add_argument("--ours-venv", help="our install, with the dask extra (default: the repo's .venv)")
    parser.add_argument("--upstream-venv", help="upstream's seamless-suite 1.4.3 venv "
                        "(default: made by bench/upstream-dask-suite-venv.sh)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, interrupted)  # so that the services get stopped
    result = {"bench": "dask", "cluster": "distributed::LocalCluster", "dask_workers": DASK_WORKERS,
              "cores": CORES, "throttle": THROTTLE, "nparallel": NPARALLEL}
    failed = False
    taken = []
    tmp = tempfile.mkdtemp(prefix="bench-dask-")
    try:
        for name in ("ours", "upstream"):
            if args.side not in (name, "both"):
                continue
            t = time.perf_counter()
            side = None
            try:
                bindir = ours_bindir(args.ours_venv) if name == "ours" else upstream_bindir(args.upstream_venv)
                taken.append(port_block(taken=taken))
                side = Side(name, bindir, os.path.join(tmp, name), taken[-1])
                side.run()
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
                failed = True
                result[f"{name}_error"] = str(exc)
                print(f"bench_dask.py: {name}: {exc}", file=sys.stderr)
                if getattr(exc, "tail", "") and os.environ.get("BENCH_DASK_VERBOSE") == "1":
                    print(exc.tail, file=sys.stderr)
            finally:
                figures = result[name] = side.figures if side is not None else {}
                if side is not None:
                    left = side.stop()
                    if left:
                        figures["leftover_processes_ended"] = left
                    figures["daskserver_log_tracebacks"] = side.log_tracebacks()
                figures["side_wall_s"] = round(time.perf_counter() - t, 1)
    finally:
        if os.environ.get("BENCH_DASK_KEEP") == "1":
            print(f"bench_dask.py: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result.update(compare(result.get("ours", {}), result.get("upstream", {})))
    print(json.dumps(result))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench_dask.py: interrupted (the services it started are stopped)", file=sys.stderr)
        sys.exit(130)
