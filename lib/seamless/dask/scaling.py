"""How many jobs a cluster should have, and jobs that the batch system ends.

The wrapper's scheduler runs in its own process, so the targets read its task states
directly, on its event loop: no monitoring client, no polling over the wire.

* WaitingAwareAdaptive: jobs = ceil(expected work / what one job does in target-duration),
  expected work = each waiting or running task's learned duration (per task prefix, so per
  transformer code) or unknown-task-duration when nothing is learned yet.
* ExclusiveAdaptive: one job per transformation (tasks that ask for the S resource).
* BatchExit: a worker that reaches its lifetime, or whose job is cancelled or reaches its
  walltime (SIGTERM from the batch system), tells the scheduler it is leaving, so that its
  tasks are rescheduled as after a graceful retirement. Dask would otherwise count each
  such loss against the tasks it was running, and fail them as "KilledWorker" after three.
"""

import asyncio
import logging
import math
import signal
import sys
import threading
import time

from distributed import WorkerPlugin
from distributed.deploy.adaptive import Adaptive
from distributed.scheduler import Scheduler

PENDING = ("waiting", "queued", "no-worker")
ACTIVE = PENDING + ("processing",)
BATCH_EXIT = "seamless-batch-exit"
log = logging.getLogger("seamless.dask.scaling")


def in_process_scheduler(cluster):
    scheduler = getattr(cluster, "scheduler", None)
    return scheduler if isinstance(scheduler, Scheduler) else None


def expected_work(scheduler) -> float:
    """Seconds of work in waiting and running tasks."""
    unknown = scheduler.UNKNOWN_TASK_DURATION
    total = 0.0
    for ts in scheduler.tasks.values():
        if ts.state in ACTIVE:
            average = ts.prefix.duration_average
            total += average if average is not None and average >= 0 else unknown
    return total


def exclusive_work(scheduler) -> int:
    """Transformations waiting or running: those that need the S resource."""
    return sum(1 for ts in scheduler.tasks.values()
               if ts.state in ACTIVE and ((ts.resource_restrictions or {}).get("S") or
                                          str(ts.key).startswith("base")))


class _SchedulerAdaptive(Adaptive):
    """Adaptive with a target read from the in-process scheduler; targets are in Dask
    workers (dask_jobqueue counts `processes` of them per job)."""

    def __init__(self, *args, processes=1, **kwargs):
        self.processes = processes
        self.last_target = None
        super().__init__(*args, **kwargs)

    def jobs_wanted(self, scheduler) -> int:
        raise NotImplementedError

    async def target(self):
        scheduler = in_process_scheduler(self.cluster)
        if scheduler is None:
            return await super().target()
        jobs = self.jobs_wanted(scheduler)
        state = (jobs, len(self.plan), len(self.requested), len(self.observed))
        if state != self.last_target:
            log.info("%s: %d jobs wanted; %d planned, %d submitted, %d connected", type(self).__name__, *state)
            self.last_target = state
        return jobs * self.processes


class WaitingAwareAdaptive(_SchedulerAdaptive):
    def jobs_wanted(self, scheduler):
        work = expected_work(scheduler)
        return math.ceil(work / self.target_duration) if work else 0


class ExclusiveAdaptive(_SchedulerAdaptive):
    def jobs_wanted(self, scheduler):
        return exclusive_work(scheduler)


ADAPTIVE = {"waiting-aware": WaitingAwareAdaptive, "exclusive": ExclusiveAdaptive, "dask": Adaptive}


def adapt(cluster, settings: dict, processes: int):
    kind = ADAPTIVE[settings["kind"]]
    extra = {"processes": processes} if kind is not Adaptive else {}
    jobqueue = sys.modules.get("dask_jobqueue.core")
    if jobqueue and isinstance(cluster, jobqueue.JobQueueCluster):  # counts jobs itself
        extra.update(minimum_jobs=settings["minimum_jobs"], maximum_jobs=settings["maximum_jobs"])
    else:  # any other cluster counts workers
        extra.update(minimum=settings["minimum_jobs"] * processes, maximum=settings["maximum_jobs"] * processes)
    return cluster.adapt(Adaptive=kind, target_duration=settings["target_duration"],
                         wait_count=settings["wait_count"], interval=f"{settings['interval']}s", **extra)


# --- activity ------------------------------------------------------------------------------

def activity(scheduler) -> dict:
    """What keeps a cluster alive: clients of users (not the scheduler's own, not the ones
    that workers open for nested work) and tasks."""
    from seamless.dask.tasks import opened_by_a_worker

    clients = [c for c in scheduler.clients if c != "fire-and-forget" and not opened_by_a_worker(c)]
    return {"clients": len(clients), "tasks": len(scheduler.tasks), "workers": len(scheduler.workers)}


# --- jobs ended by the batch system --------------------------------------------------------

class BatchExit(WorkerPlugin):
    """Runs in each worker process. A worker that closes itself (its lifetime reached, or
    SIGTERM from the batch system) says so on its way out: its tasks are not to blame.
    A worker that crashes says nothing, and Dask's counting stays as it is."""

    name = BATCH_EXIT

    def setup(self, worker):
        self.said = False
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set there; such a worker keeps Dask's behaviour
        loop = asyncio.get_event_loop()

        def leave():  # at once: the nanny, signalled too, may end this process any moment
            self.say(worker)
            # not through the nanny (it is going away too: asking it fails, and the close would
            # stop before the plugins' teardown, leaving the Seamless pool to start the job again)
            asyncio.ensure_future(worker.close(reason="batch-system-exit", executor_wait=False, nanny=False))

        signal.signal(signal.SIGTERM, lambda signum, frame: loop.call_soon_threadsafe(leave))

    def teardown(self, worker):
        self.say(worker)  # before the stream closes: the scheduler reads it before the end

    def say(self, worker):
        stream = getattr(worker, "batched_stream", None)
        if not self.said and stream is not None and not stream.closed():
            stream.send({"op": BATCH_EXIT})
            self.said = True


def watch_batch_exits(scheduler):
    """Install the scheduler's side: a worker that announces its end leaves as expected."""
    async def on_exit(worker=None, **_):
        # awaited in the worker's own stream, before its closing is noticed
        await scheduler.remove_worker(worker, expected=True, close=False, stimulus_id=f"{BATCH_EXIT}-{time.time()}")

    scheduler.stream_handlers[BATCH_EXIT] = on_exit
