"""Backends: where a job runs. backend_for(configuration, local=...) picks one:

  InProcess  in this process: execution: process, --local, .local = True
  Spawn      the worker pool: execution: spawn, or spawn() was called. It runs the
             Python API's transformations; a command runs in process (it is a process
             of its own already), as the configuration documents
  Parent     inside a spawn worker: the parent is asked first (it may have the result,
             or a free worker); when it has none the job runs right here, so nesting
             never deadlocks
  Jobserver  execution: remote through a seamless-jobserver (jobserver.py), launched
             on the first miss
  Daskserver execution: remote on the configuration's Dask cluster
             (seamless.dask.client), launched on the first miss
Each backend: ensure() starts what it needs; run(job) -> Result (checksum, bytes when
at hand, usage, mode); cancel(job) -> bool stops a running job if it can.
"""

import sys

from seamless.execution.job import Result


class InProcess:
    mode = "process"

    def ensure(self):
        pass

    def run(self, job) -> Result:
        from seamless.execution import runner

        options = job.options
        if job.transformation.get("__language__") == "bash":  # its processes can be stopped
            options = {**options, "on_start": lambda directory: setattr(job, "handle", directory)}
        try:
            result = runner.run(job.transformation, job.buffer, scratch=job.scratch, **options)
        finally:
            job.handle = None
        result.mode = self.mode
        return result

    def cancel(self, job) -> bool:
        handle = job.handle  # a bash job's directory; Python code running here cannot be stopped
        if handle is None:
            return False
        handle.kill()
        return True


class Spawn:
    mode = "spawn"

    def __init__(self, workers, nested=None):
        self.workers = workers
        self.nested = nested  # the pool's answer to its workers' nested transformations (Pool)
        self.pool = None

    def ensure(self):
        pass  # the workers start with the first job that needs them (a command does not)

    def start(self):
        if self.pool is None:
            from seamless.execution.pool import Pool

            self.pool = Pool(self.workers, self.nested)

    def run(self, job) -> Result:
        if job.command:  # a process of its own already: run here
            return IN_PROCESS.run(job)
        self.start()
        data, usage = self.pool.run(job)
        from seamless.checksum import calculate_checksum

        return Result(calculate_checksum(data), data, usage, self.mode)

    def cancel(self, job) -> bool:
        if job.command:  # running here
            return IN_PROCESS.cancel(job)
        handle = job.handle
        if handle is None or self.pool is None:
            return False
        self.pool.cancel(handle)
        return True

    def close(self):
        if self.pool is not None:
            self.pool.close()


class Parent:
    mode = "spawn"

    def ensure(self):
        pass

    def run(self, job) -> Result:
        from seamless.execution import worker

        data = worker.forward_to_parent(job)
        if data is None:  # refused: no free worker
            return IN_PROCESS.run(job)
        from seamless.checksum import calculate_checksum

        return Result(calculate_checksum(data), data, {}, self.mode)

    def cancel(self, job) -> bool:
        return False


IN_PROCESS = InProcess()
_spawned = []  # the Spawn backend, once started (by spawn(), or by the configuration)
_remotes = {}  # configuration -> its remote backend (it launches its server once, and keeps it)


def _remote(configuration, module, name):
    """The Jobserver or Daskserver backend of a configuration (one per project, stage,
    substage and queue: a set_stage() back and forth finds the one that runs)."""
    import importlib

    key = (module, configuration.cluster, configuration.project, configuration.subproject, configuration.stage,
           configuration.substage, configuration.queue, configuration.node)
    if key not in _remotes:
        _remotes[key] = getattr(importlib.import_module(module), name)(configuration)
    return _remotes[key]


def backend_for(configuration, local=False):
    """The backend for a job under `configuration` (a resolved configuration, or None)."""
    if "seamless.execution.worker" in sys.modules and sys.modules["seamless.execution.worker"].channel is not None:
        return Parent()  # even .local: the parent may already have the result
    if local:
        return IN_PROCESS
    if _spawned:
        return _spawned[0]
    execution = getattr(configuration, "execution", None)
    if execution == "remote":
        if getattr(configuration, "pure_dask", False):
            return IN_PROCESS  # its Dask cluster is for the user's own futures; ours run here
        if configuration.remote == "daskserver":
            return _remote(configuration, "seamless.dask.client", "Daskserver")
        return _remote(configuration, "seamless.execution.jobserver", "Jobserver")
    if execution == "spawn":  # its workers start with the first job that needs them
        workers = (configuration.definition or {}).get("workers") if configuration.definition else None
        return _spawn_backend(workers)
    return IN_PROCESS


def spawn(workers=None):
    """Start the worker pool (default: one worker per CPU)."""
    import multiprocessing

    from seamless.execution import worker

    if worker.channel is not None or multiprocessing.parent_process() is not None:
        sys.stderr.write("seamless: spawn() called outside the main process; ignoring\n")
        return
    if _spawned:
        raise RuntimeError("Workers have already been spawned")
    _spawn_backend(workers).start()


def _spawn_backend(workers):
    import multiprocessing

    if not _spawned:
        _spawned.append(Spawn(workers or multiprocessing.cpu_count()))
    return _spawned[0]


def has_spawned() -> bool:
    return bool(_spawned)


def pool():
    """The spawn pool, if started."""
    return _spawned[0].pool if _spawned else None


def close():
    """Stop the worker pool (if any); later calls start afresh."""
    if _spawned:
        _spawned.pop().close()
