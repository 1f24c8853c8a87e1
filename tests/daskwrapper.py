"""Running seamless-dask-wrapper in tests: a status file, the process, its status."""

import json
import subprocess
import time


def status_file(directory, parameters, **extra):
    path = directory / "status.json"
    path.write_text(json.dumps({"status": "starting", "parameters": parameters, **extra}))
    return path


def start(path, *args, cluster="distributed::LocalCluster", argv0="seamless-dask-wrapper", **popen):
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([argv0, cluster, "--status-file", str(path), *args], text=True, **popen)


def wait_status(path, process, timeout=60):
    """The status once it is no longer "starting" (None: the process ended without one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = json.loads(path.read_text())
            if data.get("status") != "starting":
                return data
        except (OSError, ValueError):
            pass
        if process.poll() is not None:
            return json.loads(path.read_text()) if path.exists() else None
        time.sleep(0.1)
    raise AssertionError("the wrapper did not leave 'starting'")


def wait_exit(process, timeout):
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def stop(process, timeout=90):
    if process.poll() is None:
        process.terminate()
        return wait_exit(process, timeout)
    return process.returncode


def suspicious(client) -> int:
    """How many times the scheduler counted a lost worker against a task."""
    return client.run_on_scheduler(lambda dask_scheduler: sum(
        tp.suspicious for tp in dask_scheduler.task_prefixes.values()))
