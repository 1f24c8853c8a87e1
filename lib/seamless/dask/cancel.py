"""Cancel a transformation on a running Dask cluster, for every client (seamless-cancel).

Its tasks are those whose key is base[_<code checksum>]-<tf>[-scratch] (tasks.key), in
any active state. A running one is canceled by its worker's Seamless plugin, as when
its last client lets go of it: its job is killed, and the task answers "canceled" to
every client waiting for it (SeamlessWorker.cancel). One not yet running is cancelled at
the scheduler, for all clients (force), with REASON: their client.py tells it from a
scheduler that went away.
"""

from seamless.dask.client import REASON, connect
from seamless.dask.tasks import CANCELED, PLUGIN

ACTIVE = ("waiting", "no-worker", "queued", "processing")


def cancel(address, tf) -> bool:
    """Did the cluster whose scheduler is at `address` have a task of `tf` to cancel?"""
    from distributed import Future

    client = connect(address)
    try:
        keys = client.run_on_scheduler(_tasks_of, tf)
        if not keys:
            return False
        stopped = set()
        for found in client.run(_stop_running, keys).values():
            stopped.update(found)
        rest = [key for key in keys if key not in stopped]
        if rest:
            client.cancel([Future(key, client) for key in rest], force=True, reason=REASON, msg=CANCELED)
        return True
    finally:
        client.close(timeout=2)


def _tasks_of(tf, dask_scheduler=None):
    """On the scheduler: the keys of the active tasks of transformation `tf`."""
    ends = (f"-{tf}", f"-{tf}-scratch")
    return [key for key, task in dask_scheduler.tasks.items()
            if isinstance(key, str) and key.startswith("base") and key.endswith(ends) and task.state in ACTIVE]


def _stop_running(keys, dask_worker=None):
    """On each worker: cancel the jobs of those tasks that run there; their keys."""
    plugin = dask_worker.plugins.get(PLUGIN)
    if not hasattr(plugin, "cancel"):  # none yet, or another version's
        return []
    return [key for key in keys if plugin.cancel(key)]
