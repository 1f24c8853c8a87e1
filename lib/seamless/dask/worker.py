"""The Seamless side of each Dask worker of a daskserver.

SeamlessWorker is the worker plugin the first client registers (idempotent: later
clients, and workers that join later, get the same one). In each Dask worker process it
keeps a pool of N Seamless worker processes (N = the queue's cores, each running up to
$SEAMLESS_WORKER_TRANSFORMATION_THROTTLE jobs), the stores the client named (as seen
from inside the cluster: remote_url, remote_directory), and the resource S: N x throttle
Seamless slots, one per task (tasks.py), offered from the worker's start (the wrapper
configures it). The worker has twice as many threads as slots: the others are for
nested tasks while their parents wait (a task never secedes from the thread pool, which
would hide it from the scheduler's balancing).

run(request), the task, computes the transformation on the one execution path:
Python code in the pool, a command in a job directory here with the stores. The result
buffer goes to the hashserver, the result row and the execution record (host, Dask
worker, batch job, wall, CPU, memory) to the database, and the checksum goes back.

A transformation that calls others (nested) is offered to this process by its Seamless
worker: a result in the database is the answer; with permission (permissions.py) it is
submitted to the same cluster with a higher priority, and runs beyond the pool's
throttle wherever it lands (its parent waits, idle); without, the Seamless worker that
asked runs it itself. Canceling a task (its last client let go of it, or seamless-cancel
asked: cancel(key)) kills its job.
"""

import asyncio
import os
import socket
import threading

from distributed import WorkerPlugin

from seamless.dask.tasks import CANCELED, PLUGIN, SMALL, WORKER_CLIENT, answer, submit
from seamless.execution.job import Canceled, JobError, TransformationFailure
from seamless.execution.places import execution_record
from seamless.store import StoreError

NESTED_PRIORITY = 10  # above the task that asked: deeper work drains first
BATCH_JOB_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "OAR_JOB_ID")


class SeamlessWorker(WorkerPlugin):
    idempotent = True
    name = PLUGIN

    def __init__(self, workers, clients):
        self.workers = max(1, int(workers))  # Seamless worker processes per Dask worker
        self.clients = clients  # the stores, in the SEAMLESS_REMOTE_CLIENTS shape

    async def setup(self, worker):
        from seamless.execution.backends import Spawn
        from seamless.execution.pool import throttle
        from seamless.dask.permissions import Permissions

        self.worker = worker
        self.lock = threading.Lock()
        self.store_sets = {}  # the stores of the requests: the last ones are where nested work goes
        self._stores(self.clients)
        self.backend = Spawn(self.workers, nested=self.nested)
        self.beyond = BeyondThrottle(self.backend)
        self.running = {}  # task key -> (job, priority)
        self.canceled = set()
        self.nested_client = None
        address = worker.scheduler.address
        self.where = {"remote_target": address, "hostname": socket.gethostname(), "dask_worker": str(worker.name),
                      "batch_job_id": next((os.environ[v] for v in BATCH_JOB_VARIABLES if os.environ.get(v)), None)}
        # its slots: as the wrapper configured them (cores x throttle; 1 in exclusive mode)
        capacity = int(worker.state.total_resources.get("S") or self.workers * throttle())
        # nested submissions pending: one per thread beyond its slots (the wrapper gives it as
        # many again), so that each finds a thread while its parent waits; then they run where
        # they are asked
        most = min(max(worker.state.nthreads, capacity), 2 * capacity)
        self.permissions = Permissions(capacity, most, self._advertise)
        self.backend.start()
        if "S" not in worker.state.total_resources:
            await worker.set_resources(S=float(capacity))

    def teardown(self, worker):
        for job, _ in list(self.running.values()):  # the worker goes: so do the commands it runs
            job.cancel()
        client, self.nested_client = self.nested_client, None
        if client is not None:
            client.close(timeout=2)
        self.backend.close()

    def transition(self, key, start, finish, **kwargs):
        if finish in ("cancelled", "released", "forgotten") and start in ("executing", "long-running"):
            self.cancel(key)  # every client let go of it: stop its job where it runs

    def cancel(self, key) -> bool:
        """Kill the job of task `key` if it runs here (its answer: canceled); did it?"""
        with self.lock:
            entry = self.running.get(key)
            if entry is not None:
                self.canceled.add(key)
        if entry is None:
            return False
        entry[0].cancel()
        return True

    def _advertise(self, slots):
        asyncio.run_coroutine_threadsafe(self.worker.set_resources(S=float(slots)), self.worker.loop.asyncio_loop)

    # --- a task --------------------------------------------------------------------------

    def run(self, request, key):
        from seamless.execution.compute import execute
        from seamless.execution.job import Job
        from seamless.identity import transformation_checksum

        tf, transformation, scratch = request["tf"], request["transformation"], request["scratch"]
        try:
            if transformation_checksum(transformation) != tf:  # a row is written under tf: it must be its own
                return {"error": f"task {key}: its transformation does not hash to {tf}"}
            stores = self._stores(request["clients"])
        except Exception as exc:
            return {"error": f"task {key}: {type(exc).__name__}: {exc}"}
        job = Job(tf, transformation, get_buffer=stores.get_buffer, scratch=scratch,
                  canceled=lambda: key in self.canceled)
        if job.command:
            job.options.update(stores=stores, quiet=True)
        with self.lock:
            self.running[key] = (job, request.get("priority") or 0)
        try:
            # not compute(): the client looked up the result, and Dask runs a key once (a latch
            # here would make the dummy scheduler's worker wait for its own client)
            result = execute(job, _Kept(stores, self.where), expect=request.get("expect"),
                             backend=self.beyond if request.get("nested") else self.backend)
        except JobError as exc:
            return {"error": str(exc), "code": exc.code, "stderr": exc.stderr_tail.decode(errors="replace")}
        except Exception as exc:  # the transformation's, or ours here (a full disk...): an answer all the same
            message = str(exc) if isinstance(exc, (TransformationFailure, Canceled, StoreError)) else \
                f"{type(exc).__name__}: {exc}"
            return {"error": CANCELED if key in self.canceled else message}
        finally:
            with self.lock:
                self.running.pop(key, None)
                self.canceled.discard(key)
        data = result.data if result.data is not None and (scratch or len(result.data) <= SMALL) else None
        return {"result": result.checksum, "usage": result.usage, "data": data}

    def _stores(self, clients):
        """The StoreSet of a request's stores (one per set of stores: a daskserver's
        hashserver may be relaunched, with another port and token, while it runs)."""
        import json

        from seamless.cache import cache
        from seamless.store.clients import StoreSet

        name = json.dumps(clients, sort_keys=True)
        with self.lock:
            stores = self.store_sets.get(name)
            if stores is None:
                stores = self.store_sets[name] = StoreSet.from_clients(clients, in_remote=True)
                if cache.stores() is None:  # what the pool's workers compute themselves is kept there too
                    cache.use_stores(stores)
            self.stores, self.latest = stores, clients
            return stores

    # --- nested transformations ------------------------------------------------------------

    def nested(self, tf, transformation, inputs, gone=lambda: False):
        """A Seamless worker's nested transformation: its result bytes, or None (refused:
        the worker runs it itself). When the worker that asked is gone (its job was
        canceled), the nested task is let go of too."""
        from seamless.identity import identity_buffer

        found = self.stores.get_transformation(tf)
        data = self.stores.get_buffer(found) if found is not None else None
        if data is not None:
            return data
        if not self.permissions.request():
            return None
        try:
            identity = identity_buffer(transformation)
            for cs, buffer in {**inputs, tf: identity}.items():
                self.stores.put_buffer(buffer, cs)
            future = submit(self._client(), tf, transformation, self.latest,
                            priority=self._priority() + NESTED_PRIORITY, nested=True)
            try:
                done = threading.Event()
                future.add_done_callback(lambda _: done.set())
                while not done.wait(0.5):
                    if gone():
                        future.cancel()  # killed where it runs, unless another client wants it
                        return None
                outcome = future.result()
            finally:
                future.release()
        finally:
            self.permissions.release()
        checksum, data, _ = answer(outcome, "a nested transformation")
        data = data if data is not None else self.stores.get_buffer(checksum)
        if data is None:
            raise TransformationFailure(f"nested transformation {tf}: its result {checksum} is in no store")
        return data

    def _priority(self):
        with self.lock:
            return max((priority for _, priority in self.running.values()), default=0)

    def _client(self):
        """This worker's own client of its scheduler (its id marks it as a worker's: it
        does not keep an idle cluster alive)."""
        with self.lock:
            if self.nested_client is None:
                from distributed import Client

                self.nested_client = Client(self.worker.scheduler.address, name=WORKER_CLIENT,
                                            set_as_default=False, timeout="10s")
            return self.nested_client


class BeyondThrottle:
    """A nested task's backend: the pool even when full (its parent waits, idle)."""

    mode = "spawn"

    def __init__(self, spawn):
        self.spawn = spawn

    def ensure(self):
        pass

    def run(self, job):
        if job.command:
            return self.spawn.run(job)
        from seamless.checksum import calculate_checksum
        from seamless.execution.job import Result

        data, usage = self.spawn.pool.run(job, beyond_throttle=True)
        return Result(calculate_checksum(data), data, usage, self.mode)

    def cancel(self, job):
        return self.spawn.cancel(job)


class _Kept:
    """The place of a task on a worker: the result is kept here, with its record, before
    the answer goes back."""

    def __init__(self, stores, where):
        self.stores, self.where = stores, where

    def note(self, hit):
        pass  # the client that asked counts it

    def keep(self, job, result):
        if job.expect is not None and result.checksum != job.expect:
            return  # a re-run that differs: execute() refuses it, and the first result's row stays
        usage = {**result.usage, **self.where}
        if result.data is not None and not job.scratch:
            self.stores.put_buffer(result.data, result.checksum)
        self.stores.set_transformation(job.tf, result.checksum)
        try:
            self.stores.set_metadata(job.tf, result.checksum, execution_record(job.tf, result.checksum, "remote", usage))
        except Exception:  # provenance only: never fail a computed result over it
            pass
        if job.command and job.transformation["__output__"][1] == "deepfolder":  # an index of result files
            try:
                self.stores.keep_index(result.checksum)
            except Exception:  # only a fingertip of one file needs them
                pass
        result.usage, result.kept = usage, True
