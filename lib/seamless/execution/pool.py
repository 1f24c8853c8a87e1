"""The spawn pool: worker processes that run transformations for this process.

Each worker (`python -m seamless.execution.worker`) runs up to THROTTLE jobs at once
($SEAMLESS_WORKER_TRANSFORMATION_THROTTLE, default 3); a job goes to the least loaded
worker with a free slot, or waits. A job carries the transformation dict and the
buffers it needs; the result comes back as a buffer (large ones through shared
memory, never pickled). When a worker dies its jobs go to the others (at most 3 x the
pool size attempts per job) and a new worker takes its place. Canceling a running job
kills its worker, which frees the slot. A worker's nested transformations are offered
to the parent: answered from the cache, run on a free worker, or refused (and then
run inside the worker itself), so nesting cannot deadlock.
"""

import atexit
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections import deque

from seamless.cache import cache
from seamless.checksum import calculate_checksum
from seamless.config.clusters import transformation_throttle as throttle
from seamless.execution import wire
from seamless.execution.job import Job, Result, TransformationFailure
from seamless.identity import identity_buffer


class PoolJob:
    def __init__(self, pool, transformation, buffers, tf):
        self.pool = pool
        self.transformation = transformation
        self.buffers = buffers
        self.tf = tf
        self.done = threading.Event()
        self.result = None
        self.usage = {}
        self.error = None
        self.worker = None
        self.attempts = 0
        self.canceled = False
        self.on_done = None

    def finish(self, result=None, error=None):
        self.result, self.error = result, error
        self.done.set()
        if self.on_done is not None:
            self.on_done(self)

    def cancel(self):
        self.pool.cancel(self)


class Worker:
    def __init__(self, pool, number):
        self.pool = pool
        self.number = number
        self.jobs = {}
        self.ready = False  # it has said hello: it did start
        # large buffers to and from this worker go through files here; removed when it dies
        self.spill = os.path.join(pool.spill, str(number))
        for path in (pool.spill, self.spill):  # the pool's may have been removed under us: private again
            os.makedirs(path, 0o700, exist_ok=True)
        parent_end, child_end = socket.socketpair()
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env["SEAMLESS_POOL_DIR"] = self.spill
        self.proc = subprocess.Popen([sys.executable, "-m", "seamless.execution.worker", str(child_end.fileno())],
                                     pass_fds=[child_end.fileno()], env=env, stdin=subprocess.DEVNULL,
                                     start_new_session=True)  # a Ctrl-C is for us; workers end with our socket
        child_end.close()
        self.channel = wire.Channel(parent_end, self.spill)
        self.alive = True
        threading.Thread(target=self._read, daemon=True, name=f"seamless-worker-{number}").start()

    @property
    def load(self):
        return len(self.jobs)

    def send_job(self, job_id, job):
        buffers = list(job.buffers.items())
        self.channel.send({"op": "run", "id": job_id, "transformation": job.transformation,
                           "buffers": [cs for cs, _ in buffers]}, [data for _, data in buffers])

    def tell(self, header, buffers=()):
        """Send, unless it has died (its reader then cleans up after it)."""
        try:
            self.channel.send(header, buffers)
        except OSError:
            pass

    def _read(self):
        while True:
            message = self.channel.receive()
            if message is None:
                break
            header, buffers = message
            op = header.get("op")
            try:
                if op == "ready":
                    self.ready = True
                elif op == "result":
                    self.pool.finished(self, header, buffers)
                elif op == "submit":
                    threading.Thread(target=self.pool.nested, args=(self, header, buffers), daemon=True).start()
                elif op == "record":
                    self.pool.recorded(header, buffers)
            except Exception as exc:  # one bad message must not leave this worker's jobs unanswered
                sys.stderr.write(f"seamless: worker {self.number}: {op} message: {type(exc).__name__}: {exc}\n")
        self.pool.died(self)

    def kill(self):
        self.alive = False
        _kill_children(self.proc.pid)  # its bash jobs, in sessions of their own, would outlive it
        try:
            self.proc.kill()
        except OSError:
            pass


def _kill_children(pid):
    """SIGKILL the process groups of a process's children (Linux: read from /proc)."""
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            try:
                os.killpg(int(entry), signal.SIGKILL)  # a job's shell leads its own group
            except OSError:
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass


class Pool:
    """`nested(tf, transformation, inputs, gone)`: who else may compute a worker's nested
    transformation (a Dask worker submits it to its cluster): its result bytes, or None to
    refuse (the worker then runs it itself); gone(): the worker that asked has died (its
    job was canceled: the answer is for no one). Default: this process's cache, then a
    free worker."""

    def __init__(self, size, nested=None):
        self.size = max(1, int(size))
        self.nested_elsewhere = nested
        self.throttle = throttle()
        self.spill = wire.shared_dir()
        self.lock = threading.Condition()
        self.waiting = deque()
        self.ids = itertools.count(1)
        self.closing = False
        self.broken = None  # why workers cannot start, once several in a row died at birth
        self.failed_starts = 0
        self.numbers = itertools.count()
        self.workers = []
        with self.lock:  # a worker that dies at once is handled after they all exist
            self.workers += [Worker(self, next(self.numbers)) for _ in range(self.size)]
        atexit.register(self.close)  # no workers or shared-memory files outlive this process

    # --- running ------------------------------------------------------------------------

    def run(self, job, beyond_throttle=False):
        """Run a job in a worker: (its result buffer, usage); raises TransformationFailure.
        beyond_throttle: at once, in the least loaded worker even if it is full (a nested
        job whose parent holds a slot, idle, while it waits)."""
        pool_job = PoolJob(self, job.transformation, job.needed_buffers(), job.tf)
        job.handle = pool_job
        try:
            if job.canceled is not None and job.canceled():  # canceled before it had a pool job
                raise TransformationFailure("Transformation was canceled")
            self.submit(pool_job, beyond_throttle=beyond_throttle)
            pool_job.done.wait()
        finally:
            job.handle = None
        if pool_job.canceled:
            raise TransformationFailure("Transformation was canceled")
        if pool_job.error is not None:
            raise TransformationFailure(pool_job.error)
        return pool_job.result, pool_job.usage

    def submit(self, job, only_if_free=False, beyond_throttle=False) -> bool:
        with self.lock:
            if self.closing:
                raise TransformationFailure("the worker pool has been closed")
            if self.broken:
                raise TransformationFailure(self.broken)
            if job.canceled:
                return True
            worker = self._free_worker(beyond_throttle)
            if worker is None:
                if only_if_free:
                    return False
                self.waiting.append(job)
                return True
            self._assign(worker, job)
        return True

    def _free_worker(self, beyond_throttle=False):
        free = [w for w in self.workers if w.alive and (beyond_throttle or w.load < self.throttle)]
        return min(free, key=lambda w: w.load) if free else None

    def _assign(self, worker, job):
        job_id = next(self.ids)
        job.worker = worker
        job.attempts += 1
        worker.jobs[job_id] = job
        try:
            worker.send_job(job_id, job)
        except OSError:
            pass  # the worker is gone: its reader requeues the job

    def _dispatch_waiting(self):
        while self.waiting:
            worker = self._free_worker()
            if worker is None:
                return
            job = self.waiting.popleft()
            if not job.canceled:
                self._assign(worker, job)

    # --- from the workers ---------------------------------------------------------------

    def finished(self, worker, header, buffers):
        with self.lock:
            job = worker.jobs.pop(header.get("id"), None)
            self._dispatch_waiting()
        if job is None or job.canceled:
            return
        if header.get("ok"):
            job.usage = header.get("usage") or {}
            job.finish(result=buffers[0])
        else:
            job.finish(error=header.get("error") or "the worker reported a failure")

    def died(self, worker):
        try:
            status = worker.proc.wait(1)  # its socket is closed: it is exiting
        except subprocess.TimeoutExpired:
            status = None
        with self.lock:
            killed = not worker.alive  # by us: a cancel, or close()
            worker.alive = False
            orphans = list(worker.jobs.values())
            worker.jobs.clear()
            if worker in self.workers:
                self.workers.remove(worker)
            if worker.ready:
                self.failed_starts = 0
            elif not killed and not (status is not None and status < 0):  # not a signal: it could not start
                self.failed_starts += 1
            if self.failed_starts >= 3 and not self.closing:
                self.broken = (f"the spawn workers exit as they start (exit status {status}; "
                               "their error is on standard error above)")
            for job in orphans:
                if job.canceled:
                    continue
                if self.closing or self.broken:
                    job.finish(error=self.broken or "the worker pool was closed")
                elif job.attempts >= 3 * self.size:
                    job.finish(error=f"the worker running it died {job.attempts} times "
                                     f"(exit status {status}); giving up")
                else:
                    self.waiting.appendleft(job)
            if not self.closing and not self.broken:
                try:
                    self.workers.append(Worker(self, next(self.numbers)))
                except OSError as exc:
                    self.broken = f"cannot start a spawn worker: {exc}"
            if self.broken:
                self._fail_waiting(self.broken)
            self._dispatch_waiting()
        worker.channel.close()
        try:
            worker.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(worker.spill, ignore_errors=True)  # buffers it never read

    def _fail_waiting(self, why):
        while self.waiting:
            job = self.waiting.popleft()
            if not job.canceled:
                job.finish(error=why)

    def recorded(self, header, buffers):
        """A worker ran a nested transformation itself: keep its result as if we had."""
        from seamless.execution.places import InMemory

        *inputs, data = buffers
        if calculate_checksum(data) != header["result"]:  # never a result row, or a cached buffer, for other bytes
            raise ValueError(f"the result of {header['tf']} does not hash to {header['result']}")
        job = Job(header["tf"], None, dict(zip(header["buffers"], inputs, strict=True)), scratch=header["scratch"])
        InMemory().keep(job, Result(header["result"], data, header.get("usage"), "spawn"))

    def nested(self, worker, header, buffers):
        """A worker's transformation wants another one computed; it waits for our answer."""
        try:
            self._nested(worker, header, buffers)
        except Exception as exc:  # a store that fails, ...: still an answer, or the worker waits forever
            worker.tell({"op": "reply", "id": header.get("id"), "status": "error",
                         "error": f"{type(exc).__name__}: {exc}"})

    def _nested(self, worker, header, buffers):
        request = header["id"]
        tf = header["tf"]
        if self.nested_elsewhere is not None:
            inputs = dict(zip(header["buffers"], buffers, strict=True))
            try:
                data = self.nested_elsewhere(tf, header["transformation"], inputs, gone=lambda: not worker.alive)
            except TransformationFailure as exc:  # its own failure, as it would have failed here
                worker.tell({"op": "reply", "id": request, "status": "error", "error": str(exc)})
                return
            if data is None:
                worker.tell({"op": "reply", "id": request, "status": "refused"})
            else:
                worker.tell({"op": "reply", "id": request, "status": "done"}, [data])
            return
        result = cache.get_result(tf)
        if result is not None:
            data = cache.get_buffer(result)
            if data is not None:
                worker.tell({"op": "reply", "id": request, "status": "done"}, [data])
                return
        inputs = dict(zip(header["buffers"], buffers, strict=True))
        job = PoolJob(self, header["transformation"], inputs, tf)

        def reply(job):
            if job.error is not None:
                worker.tell({"op": "reply", "id": request, "status": "error", "error": job.error})
                return
            from seamless.execution.places import InMemory

            identity = {tf: identity_buffer(job.transformation)}
            kept = Job(tf, job.transformation, {**inputs, **identity})
            InMemory().keep(kept, Result(calculate_checksum(job.result), job.result, job.usage, "spawn"))
            worker.tell({"op": "reply", "id": request, "status": "done"}, [job.result])

        job.on_done = reply
        try:
            accepted = self.submit(job, only_if_free=True)
        except TransformationFailure:
            accepted = False
        if not accepted:
            worker.tell({"op": "reply", "id": request, "status": "refused"})

    # --- stopping -----------------------------------------------------------------------

    def cancel(self, job):
        with self.lock:
            job.canceled = True
            if job in self.waiting:
                self.waiting.remove(job)
            worker = job.worker if job.worker is not None and job in job.worker.jobs.values() else None
        if worker is not None:
            worker.kill()  # the only way to stop running code; died() starts a replacement
        job.finish(error="Transformation was canceled")

    def close(self):
        with self.lock:
            if self.closing:
                return
            self.closing = True
            workers = list(self.workers)
            self._fail_waiting("the worker pool was closed")
        atexit.unregister(self.close)
        for worker in workers:
            worker.kill()
        for worker in workers:
            try:
                worker.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.spill, ignore_errors=True)
