"""Where compute() looks for results and keeps them: a place.

InMemory is the Python API's: this process's cache, then the stores in force (none:
memory only); results come with their bytes. InStores is seamless-run's: a StoreSet,
with the tool's own rule for when a cached result is usable (its files are all there);
a command's result bytes are already in the stores when it ends. Both write the same
execution record next to the result row.
"""

import os
import sys

from seamless.cache import cache
from seamless.execution.job import Result


def execution_record(tf, result, mode, usage) -> dict:
    import time

    from seamless.version import __version__

    return {"schema_version": 1, "tf_checksum": tf, "result_checksum": result, "seamless_version": __version__,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),  # when (seamless-cache ls)
            "execution_mode": mode, "remote_target": usage.get("remote_target"),
            "wall_time_seconds": usage.get("wall_time_seconds"),
            "cpu_time_user_seconds": usage.get("cpu_time_user_seconds"),
            "cpu_time_system_seconds": usage.get("cpu_time_system_seconds"),
            "memory_peak_bytes": usage.get("memory_peak_bytes"), "gpu_memory_peak_bytes": None,
            # where it ran, when it ran elsewhere (a Dask worker: its host, name and batch job)
            **{key: usage[key] for key in WHERE if usage.get(key) is not None}}


WHERE = ("hostname", "dask_worker", "batch_job_id")


def lock_dir_of(stores):
    """The lock directory of stores on this machine (a local buffer directory), or None."""
    root = getattr(stores, "root", None)
    return os.path.join(root, "locks") if root else None


def stores_in_force():
    """The stores a remote backend ships the Python API's buffers to."""
    from seamless.execution.job import TransformationFailure

    stores = cache.stores()
    if stores is None:
        raise TransformationFailure("remote execution needs the stores of a configuration: call "
                                    "seamless.config.init() first")
    return stores


class InMemory:
    _warned = []

    @property
    def lock_dir(self):
        return lock_dir_of(cache.stores())

    def lookup(self, job):
        result = cache.get_result(job.tf)
        if result is None and job.scratch:
            result = cache.known_result(job.tf)  # scratch: the checksum row is the result; .value recomputes
        return Result(result, hit=True) if result is not None else None

    def note(self, hit):
        stores = cache.stores()
        if stores is not None:
            stores.note(hit)

    def keep(self, job, result):
        """Remember what an execution produced: in memory, and in the persistent stores if
        any are in force (inputs: every buffer the transformation refers to, and itself)."""
        cs, data = result.checksum, result.data
        cache.keep(cs, data)
        cache.set_result(job.tf, cs)
        worker = sys.modules.get("seamless.execution.worker")  # imported in a worker process
        if worker is not None and worker.channel is not None:
            if result.mode == "process":  # ran inside this worker, not in the parent: tell it
                worker.report_record(job.tf, job.buffers, cs, data, job.scratch, result.usage)
            return
        stores = cache.stores()
        if stores is None or result.kept:
            return
        try:
            for buffer_cs, buffer in job.buffers.items():
                stores.put_buffer(buffer, buffer_cs)
            if not job.scratch:
                stores.put_buffer(data, cs)
            stores.set_transformation(job.tf, cs)
            try:
                stores.set_metadata(job.tf, cs, execution_record(job.tf, cs, result.mode, result.usage))
            except Exception:  # provenance only: never fail a computed result over it
                pass
        except Exception as exc:  # the result stands; it is just not kept beyond this process
            if not self._warned:
                self._warned.append(exc)
                sys.stderr.write(f"seamless: warning: results are not being stored persistently: {exc}\n")


class InStores:
    """`usable(result checksum)`: is a cached result good enough to be a hit? `say`:
    where a lost execution record is mentioned."""

    def __init__(self, stores, lock_dir, usable=None, say=None):
        self.stores, self.lock_dir = stores, lock_dir
        self.usable = usable or stores.has_buffer
        self.say = say

    def lookup(self, job):
        result = self.stores.get_transformation(job.tf)
        if result is None or not self.usable(result):
            return None
        return Result(result, hit=True)

    def note(self, hit):
        self.stores.note(hit)

    def keep(self, job, result):
        if result.kept:
            return
        self.stores.set_transformation(job.tf, result.checksum)
        try:
            self.stores.set_metadata(job.tf, result.checksum,
                                     execution_record(job.tf, result.checksum, result.mode, result.usage))
        except Exception as exc:  # provenance only: never fail a computed result over it
            if self.say is not None:
                self.say(f"execution record not written: {exc}")
        if job.command and job.transformation["__output__"][1] == "deepfolder":  # an index of result files
            try:
                self.stores.keep_index(result.checksum)
            except Exception as exc:  # only a fingertip of one file needs them
                if self.say is not None:
                    self.say(f"result file entries not written: {exc}")


IN_MEMORY = InMemory()
