"""seamless-dask-wrapper, ours and upstream's side by side on the same status files.

Prints one JSON line:
  local_start_s / slurm_start_s      start of the process -> status "running" (median)
  slurm_first_result_s               first task submitted on an empty SLURM cluster -> its result
  scale                              200 queued 1 s tasks, maximum_jobs 2, target-duration 10s:
                                     seconds to reach maximum_jobs workers, to finish, and from
                                     the last result to an empty queue; jobs whose worker ran no
                                     task before it left (cancelled before it worked)
Targets (issue 13): start <= upstream's; scale-down <= target-duration + 30 s; no job
cancelled before it ran a task.

SLURM: the one SLURM_CONF points to, else one started here by tests/batch/start-slurm.sh.
  python bench/bench_dask_wrapper.py [--no-upstream] [--no-slurm] [--runs N]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCALE_TASKS, SCALE_JOBS, TARGET = 200, 2, "10s"


def upstream_dir():
    try:
        out = subprocess.run([os.path.join(HERE, "upstream-dask-venv.sh")], check=True, capture_output=True,
                             text=True, timeout=900).stdout.strip()
        return out or None
    except (subprocess.SubprocessError, OSError):
        return None


class Wrapper:
    """One wrapper process (ours: bin_dir None; upstream's: its venv's bin) on a status file."""

    def __init__(self, bin_dir, cluster, parameters, workdir, timeout=600):
        self.status = os.path.join(workdir, f"status-{time.monotonic_ns()}.json")
        with open(self.status, "w") as f:
            json.dump({"status": "starting", "log": self.status + ".log", "parameters": parameters}, f)
        exe = os.path.join(bin_dir, "seamless-dask-wrapper") if bin_dir else "seamless-dask-wrapper"
        env = dict(os.environ)
        if bin_dir:  # upstream's jobs run `python` from the PATH they inherit
            env["PATH"] = bin_dir + os.pathsep + env["PATH"]
        self.t0 = time.monotonic()
        self.process = subprocess.Popen(
            [exe, cluster, "--port-range", "42000", "42999", "--host", "127.0.0.1", "--status-file", self.status,
             "--timeout", str(timeout)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            cwd=workdir)

    def running(self, limit=120):
        while time.monotonic() - self.t0 < limit:
            try:
                with open(self.status) as f:
                    data = json.load(f)
                if data.get("status") == "running":
                    return time.monotonic() - self.t0, f"tcp://127.0.0.1:{data['port']}"
                if data.get("status") == "failed":
                    raise RuntimeError(f"wrapper failed: {data}")
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        raise RuntimeError("wrapper did not start")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def queue_length():
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    return len(out.split())


def wait_queue_empty(limit):
    t0 = time.monotonic()
    while queue_length():
        if time.monotonic() - t0 > limit:
            return None
        time.sleep(0.5)
    return time.monotonic() - t0


def start_time(bin_dir, cluster, parameters, runs, workdir):
    times = []
    for _ in range(runs):
        w = Wrapper(bin_dir, cluster, parameters, workdir)
        try:
            times.append(w.running()[0])
        finally:
            w.stop()
        if "SLURM" in cluster:
            wait_queue_empty(60)
    return round(statistics.median(times), 3)


def first_result(bin_dir, parameters, workdir):
    from distributed import Client

    w = Wrapper(bin_dir, "dask_jobqueue::SLURMCluster", parameters, workdir)
    try:
        _, address = w.running()
        with Client(address, timeout=30) as client:
            t0 = time.monotonic()
            client.submit(lambda x: x + 1, 1).result(timeout=300)
            return round(time.monotonic() - t0, 2)
    finally:
        w.stop()
        wait_queue_empty(60)


def scale(bin_dir, parameters, workdir, down_limit):
    from distributed import Client, get_task_stream

    w = Wrapper(bin_dir, "dask_jobqueue::SLURMCluster", parameters, workdir)
    try:
        _, address = w.running()
        with Client(address, timeout=30) as client:
            t0 = time.monotonic()
            futures = client.map(lambda i: (time.sleep(1), i)[1], range(SCALE_TASKS), pure=False)
            seen, full = set(), None
            with get_task_stream(client) as stream:
                while not all(f.done() for f in futures):
                    workers = client.scheduler_info()["workers"]
                    seen.update(workers)
                    if full is None and len(workers) >= SCALE_JOBS:
                        full = time.monotonic() - t0
                    time.sleep(0.5)
            done = time.monotonic() - t0
            assert sorted(f.result() for f in futures) == list(range(SCALE_TASKS))
            ran = {entry["worker"] for entry in stream.data}
        down = wait_queue_empty(down_limit)
        return {"to_maximum_jobs_s": round(full, 1) if full is not None else None, "all_done_s": round(done, 1),
                "scale_down_s": round(down, 1) if down is not None else f">{down_limit}",
                "workers_seen": len(seen), "workers_without_a_task": len(seen - ran)}
    finally:
        w.stop()
        wait_queue_empty(60)


def slurm_ready(workdir):
    if subprocess.run(["squeue", "-h"], capture_output=True).returncode == 0:
        return None
    script = os.path.join(ROOT, "tests", "batch", "start-slurm.sh")
    out = subprocess.run(["bash", script, os.path.join(workdir, "slurm")], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export "):].split("=", 1)
            os.environ[name] = value
    return os.path.join(ROOT, "tests", "batch", "stop-slurm.sh"), os.path.join(workdir, "slurm")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-upstream", action="store_true")
    parser.add_argument("--no-slurm", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    up = None if args.no_upstream else upstream_dir()
    sides = {"ours": None, **({"upstream": os.path.join(up, "bin")} if up else {})}
    workdir = tempfile.mkdtemp(prefix="bench-dask-")
    local = {"cores": 1, "memory": "1GB", "walltime": "01:00:00", "maximum_jobs": 2}
    result = {"bench": "dask_wrapper", "upstream": bool(up),
              "local_start_s": {side: start_time(d, "distributed::LocalCluster", local, args.runs, workdir)
                                for side, d in sides.items()}}
    stop = None
    if not args.no_slurm:
        stop = slurm_ready(workdir)
        partition = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True).stdout.split()[0]
        job = {"cores": 1, "memory": "1GB", "walltime": "00:30:00", "partition": partition, "tmpdir": workdir}
        try:
            result["slurm_start_s"] = {side: start_time(d, "dask_jobqueue::SLURMCluster", {**job, "maximum_jobs": 2},
                                                        args.runs, workdir) for side, d in sides.items()}
            result["slurm_first_result_s"] = {side: first_result(d, {**job, "maximum_jobs": 1}, workdir)
                                              for side, d in sides.items()}
            params = {**job, "maximum_jobs": SCALE_JOBS, "target-duration": TARGET}
            result["scale"] = {side: scale(d, params, workdir, 40 if side == "ours" else 420)
                               for side, d in sides.items()}
        finally:
            if stop:
                subprocess.run(["bash", stop[0], stop[1]], capture_output=True)
    if up:
        for key in ("local_start_s", "slurm_start_s"):
            if key in result:
                result[key]["ratio"] = round(result[key]["ours"] / result[key]["upstream"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
