"""A transformation as a Dask task: its key, its submission, its answer.

The key is base_<code checksum>-<transformation checksum> (upstream's form): identical
transformations from any number of clients are one task, and Dask learns durations per
code. Only checksums travel: the request is the transformation dict (pins are
checksums) and the worker reads every buffer from the stores. The task needs one unit
of the resource S (a Seamless slot: see permissions.py) and answers a dict:

  {"result": checksum, "usage": {...}, "data": bytes or None}   small results come along
  {"error": text, "code": exit status or None, "stderr": text}   a failure of its own

A failure is an answer, not an exception: Dask's retries concern only a worker that
cannot take the task (no Seamless plugin yet); a worker lost under a task is Dask's
allowed-failures, and the task runs again elsewhere.
"""

from seamless.checksum import calculate_checksum
from seamless.execution.job import JobError, TransformationFailure

PLUGIN = "seamless-worker-setup"  # upstream's name: one Seamless plugin per worker, whoever registers it
CANCELED = "Transformation was canceled"
WORKER_CLIENT = "seamless-worker"  # the name of the client a worker opens for nested work
RETRIES = 3
SMALL = 1 << 20  # results up to this size come back with the answer (saves a hashserver round trip)


def key(tf, transformation, scratch=False) -> str:
    code = transformation.get("code")
    prefix = f"base_{code[2]}" if isinstance(code, list) and len(code) == 3 and code[2] else "base"
    return f"{prefix}-{tf}" + ("-scratch" if scratch else "")


def opened_by_a_worker(client_id) -> bool:
    """Is this scheduler client one that a worker opened for nested work (it keeps no
    cluster alive: upstream's daskservers never idled out because of them)?"""
    return str(client_id).startswith(f"Client-{WORKER_CLIENT}-")


def submit(client, tf, transformation, clients, scratch=False, priority=0, nested=False, expect=None):
    """The future of the transformation's task (the one already there, if any). `clients`:
    the stores it reads and writes (as the cluster sees them); `expect`: the result a re-run
    must give, or nothing is kept."""
    request = {"tf": tf, "transformation": transformation, "clients": clients, "scratch": bool(scratch),
               "priority": priority, "nested": nested, "expect": expect}
    return client.submit(run, request, key=key(tf, transformation, scratch), pure=False, priority=priority,
                         resources={"S": 1}, retries=RETRIES)


def run(request):
    """The task, in a Dask worker thread: the worker's Seamless plugin (worker.py) runs it."""
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(PLUGIN)
    if plugin is None:  # an exception, not an answer: Dask may retry it on a worker that has it
        raise RuntimeError(f"Dask worker {worker.name} has no Seamless worker plugin")
    return plugin.run(request, worker.get_current_task())


def answer(outcome, where):
    """(result checksum, its bytes if they came along, usage) of a task's answer; raises
    JobError (a command's failure, with its exit status) or TransformationFailure."""
    if not isinstance(outcome, dict):
        raise TransformationFailure(f"{where} gave an unexpected answer: {str(outcome)[:200]!r}")
    error = outcome.get("error")
    if error is not None:
        if outcome.get("code") is not None:
            raise JobError(error, int(outcome["code"]), (outcome.get("stderr") or "").encode(), shown=False)
        raise TransformationFailure(error)
    checksum, data = outcome.get("result"), outcome.get("data")
    if data is not None and calculate_checksum(data) != checksum:  # never keep bytes under another checksum
        data = None
    return checksum, data, outcome.get("usage") or {}
