"""The dummy scheduler: a Dask scheduler and N workers inside this process, for
development and fast tests (SEAMLESS_DASK_DUMMY=N). Transformations take the same path
as on a daskserver (the same tasks, plugin, stores and records), without launching one.
It lives as long as the process."""

import threading

_started = {}
_lock = threading.Lock()


def start(workers) -> dict:
    """The connection to this process's dummy cluster (started on first use)."""
    try:
        count = int(workers)
        if count < 1:
            raise ValueError
    except ValueError:
        from seamless.execution.job import TransformationFailure

        raise TransformationFailure(f"SEAMLESS_DASK_DUMMY={workers!r}: give a number of Dask workers (0: off)") from None
    with _lock:
        if "cluster" not in _started:
            from distributed import LocalCluster

            from seamless.config.clusters import transformation_throttle

            # workers are threads here: one Seamless worker each (its pool, its S slots)
            slots = transformation_throttle()
            _started["cluster"] = LocalCluster(
                n_workers=count, processes=False, threads_per_worker=2 * slots, resources={"S": float(slots)},
                protocol="tcp://",
                host="127.0.0.1", scheduler_port=0, dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False})
        cluster = _started["cluster"]
    return {"url": cluster.scheduler_address, "parameters": {"cores": 1}}
