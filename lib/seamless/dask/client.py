"""The Dask backend (execution: remote, remote: daskserver): transformations as tasks.

ensure() finds the configuration's daskserver running, or launches it (here, or on the
frontend over ssh, tunnelled: seamless.session.daskserver_for), connects a
distributed.Client and registers the Seamless worker plugin (worker.py) with the
cluster's stores as its workers see them. With SEAMLESS_DASK_DUMMY=N it uses an
in-process scheduler with N workers instead (dummy.py: development and fast tests).

run(job) puts the buffers the job needs in the hashserver (a command's inputs are
uploaded by its face first), submits its task (tasks.py) and waits; the worker keeps
the result, its row and its execution record, so the answer is a checksum (and small
result bytes). A Ctrl-C, or cancel(), lets go of the task: when no other client wants it,
its job is killed where it runs; one canceled by seamless-cancel (dask/cancel.py), running
or not yet, fails as canceled (a command: exit 130). compute() looked in the database before ensure() was
called: a cache hit never wakes the cluster.
"""

import os
import threading

from seamless.dask.tasks import CANCELED, PLUGIN, answer, submit
from seamless.execution import jobdir
from seamless.execution.job import JobError, Result, TransformationFailure
from seamless.execution.places import stores_in_force

WAIT_STEP = 0.5  # seconds between looks at job.canceled() while a task runs
REASON = "seamless-cancel"  # why seamless-cancel (cancel.py) cancels a task that has not started


class Daskserver:
    mode = "remote"

    def __init__(self, configuration):
        self.configuration = configuration
        self.client = None
        self.address = self.clients = None
        self.lock = threading.Lock()

    def ensure(self):
        with self.lock:
            if self.client is not None and self.client.status == "running":
                return
            self._connect()

    def _connect(self):
        from seamless.config.errors import ConfigError
        from seamless.session import daskserver_for, served_clients

        dummy = os.environ.get("SEAMLESS_DASK_DUMMY", "0")
        try:
            if dummy != "0":
                from seamless.dask.dummy import start

                connection = start(dummy)
            else:
                connection = daskserver_for(self.configuration)
            clients = served_clients(self.configuration, for_workers=True)
        except ConfigError as exc:  # a queue without memory, a launch that failed: the user's one line
            raise TransformationFailure(str(exc)) from None
        client = connect(connection["url"])
        from seamless.dask.worker import SeamlessWorker

        try:
            client.register_plugin(SeamlessWorker(seamless_workers(connection), clients), name=PLUGIN)
        except Exception as exc:
            client.close(timeout=2)
            raise TransformationFailure(f"the Dask cluster at {connection['url']} refused the Seamless worker "
                                        f"plugin: {type(exc).__name__}: {exc}") from None
        self.client, self.address, self.clients = client, connection["url"], clients

    def run(self, job) -> Result:
        self.ensure()
        client, address = self.client, self.address
        stores = job.options.get("stores") or stores_in_force()
        command = job.command
        if not command:  # the Python API's buffers are in memory: the workers read them from the hashserver
            for cs, data in {**job.buffers, **job.needed_buffers()}.items():
                stores.put_buffer(data, cs)
        if job.notify is not None:
            job.notify(f"running on the Dask cluster at {address}: waiting for the result")
        future = submit(client, job.tf, job.transformation, self.clients, job.scratch, priority=job.priority,
                        expect=job.expect)
        job.handle = future
        try:
            outcome = self._wait(future, job)
        except KeyboardInterrupt:
            _quiet()  # what distributed and tornado say as the interpreter goes is not for the user
            future.cancel()
            raise
        finally:
            job.handle = None
            future.release()
        checksum, data, usage = answer(outcome, f"the Dask cluster at {address}")
        if data is None and not command:
            data = stores.get_buffer(checksum)
            if data is None:
                raise TransformationFailure(f"the Dask cluster at {address} computed {checksum}, but the "
                                            "hashserver does not have it")
        if usage.get("stderr") and job.echo is not None:
            job.echo(usage["stderr"].encode())
        return Result(checksum, None if command else data, usage, self.mode, kept=True)

    def _wait(self, future, job):
        # a done-callback, not result(timeout=): distributed's sync() with a timeout can lose
        # the result when it races with the timeout (UnboundLocalError), and polls its loop
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        while not done.wait(WAIT_STEP):
            if job.canceled is not None and job.canceled():
                future.cancel()
                raise _canceled(job)
        try:
            return future.result()
        except Exception as exc:
            if job.canceled is not None and job.canceled():  # cancel(): its future was let go here
                raise _canceled(job) from None
            raise self._failure(exc, job) from None

    def _failure(self, exc, job):
        """What a task's exception means for the user (it is never a result)."""
        name = type(exc).__name__
        if name == "FutureCancelledError" and getattr(exc, "reason", None) == REASON:
            return _canceled(job)  # seamless-cancel cancelled it at the scheduler before it ran: that is fine
        if name in ("CancelledError", "FutureCancelledError") or self.client is None or \
                self.client.status != "running":
            client, self.client = self.client, None  # the next job connects again (or launches a new daskserver)
            if client is not None:
                threading.Thread(target=client.close, kwargs={"timeout": 2}, daemon=True).start()
            return TransformationFailure(f"the Dask scheduler at {self.address} went away or cannot be reached "
                                         f"({name}); nothing was kept (the next run starts it again)")
        if name == "KilledWorker":
            return TransformationFailure(f"the Dask workers running it died several times on the cluster at "
                                         f"{self.address} (out of memory? the daskserver's log says): {exc}")
        return TransformationFailure(f"the Dask cluster at {self.address} failed the task: {name}: {exc}")

    def cancel(self, job) -> bool:
        future = job.handle
        if future is None:
            return False
        future.cancel()
        return True


def _canceled(job):
    """A cancel (job.canceled(): seamless-queue, the Python API; seamless-cancel): a command ends as
    one canceled where it runs (exit 130), a Python transformation as canceled."""
    if job.command:
        return JobError(jobdir.CANCELED, jobdir.CANCEL_EXIT, shown=False)
    return TransformationFailure(CANCELED)


def _quiet():
    import logging

    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def connect(address, timeout="10s"):
    """A client of the scheduler at `address` that is not the process's default client
    (a pure Dask stage's is)."""
    from distributed import Client

    try:
        return Client(address, timeout=timeout, set_as_default=False, name="seamless")
    except OSError as exc:  # TimeoutError included
        raise TransformationFailure(f"cannot connect to the Dask scheduler at {address}: {exc} (seamless-launch ps "
                                    "shows whether its daskserver runs; seamless-launch logs KEY says why not)") from None


def seamless_workers(connection) -> int:
    """Seamless workers per Dask worker: the queue's cores (one in exclusive mode)."""
    parameters = connection.get("parameters") or {}
    if parameters.get("exclusive") in (True, "true", "1", "yes"):
        return 1
    try:
        return max(1, int(parameters.get("cores") or 1))
    except (TypeError, ValueError):
        return 1
