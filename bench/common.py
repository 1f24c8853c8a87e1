"""Shared by the benchmarks: start our servers and upstream's the same way, measure RSS."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upstream_venv():
    """The upstream virtualenv (made by bench/upstream-venv.sh), or None."""
    path = os.environ.get("SEAMLESS_UPSTREAM_VENV", "/tmp/seamless-upstream")
    if not os.path.isdir(path) and os.environ.get("SEAMLESS_BENCH_NO_UPSTREAM") != "1":
        try:
            subprocess.run([os.path.join(HERE, "upstream-venv.sh"), path], check=True,
                           stdout=subprocess.DEVNULL, timeout=600)
        except (subprocess.SubprocessError, OSError):
            return None
    return path if os.path.isdir(path) else None


def start(argv, port, timeout=30.0):
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server did not start: {argv}")


def our_tool(name):
    path = shutil.which(name)
    if path is None:
        sys.exit(f"{name} not found on PATH: pip install -e . first")
    return path


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def run_clients(worker, n, *args):
    """Run worker(*args, index, queue) in n client processes; time them together.

    Each worker prepares, puts "ready", works, then puts (seconds, errors).
    Returns (seconds of the slowest worker, total errors).
    """
    import multiprocessing as mp

    queue = mp.Queue()
    procs = [mp.Process(target=worker, args=(*args, i, queue)) for i in range(n)]
    for p in procs:
        p.start()
    for _ in procs:
        queue.get()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return max(r[0] for r in results), sum(r[1] for r in results)


class RssSampler:
    """Peak RSS (KiB) of a process while the block runs, sampled every 5 ms."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0

    def __enter__(self):
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
