"""Transformation: one call of a transformer, evaluated at most once.

    tf = add(19, 23)          # built, nothing ran
    tf.construct()            # dependencies evaluated, the transformation checksum
    tf.compute()              # found in a cache or executed: the result checksum
    tf.run()                  # the value (raises TransformationError on failure)
    tf.start(); ...; await tf.task()

Whoever needs a result first evaluates it, in its own thread: start() hands the work to a
thread pool, but a thread that waits for a transformation nobody has picked up yet runs
it itself. So dependencies and nested transformations never wait on a busy pool: no
deadlock in any execution mode.
"""

import os
import threading
from dataclasses import dataclass, field

import seamless.config as config
from seamless.cache import cache
from seamless.checksum import calculate_checksum, deserialize
from seamless.execution import compute
from seamless.execution.job import Canceled, Job, TransformationFailure
from seamless.execution.places import IN_MEMORY
from seamless.identity import identity_buffer


class TransformationError(RuntimeError):
    pass


@dataclass
class Definition:
    language: str
    result_celltype: str
    pins: dict
    buffers: dict
    deps: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    scratch: bool = False
    env: dict = None
    local: bool = False


def refuse_in_event_loop(what):
    """Blocking inside a running event loop would freeze it: say what to do instead."""
    import sys

    if "asyncio" not in sys.modules:
        return
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"Cannot block on {what} from within the running event loop "
                       f"(use 'await tf.task()' or parallel_async instead)")


_executor = None
_executor_lock = threading.Lock()


MAX_THREADS = 512  # parallel() on a huge cluster: beyond this, threads cost more than they wait


def executor(at_least=0):
    """The threads that start() hands work to; at_least: as many as parallel() keeps
    running (a remote backend's threads only wait, and must not be what limits it)."""
    global _executor
    at_least = min(at_least, MAX_THREADS)
    if _executor is None or _executor._max_workers < at_least:
        with _executor_lock:
            if _executor is None or _executor._max_workers < at_least:
                from concurrent.futures import ThreadPoolExecutor

                threads = int(os.environ.get("SEAMLESS_COMPUTE_THREADS") or min(32, (os.cpu_count() or 1) + 4))
                # a larger one replaces it: the old one's threads finish what they run, then exit
                _executor = ThreadPoolExecutor(max(threads, at_least), thread_name_prefix="seamless")
    return _executor


class Transformation:
    def __init__(self, definition: Definition):
        self._definition = definition
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._claimed = False
        self._scheduled = False
        self._tf = None
        self._transformation = None
        self._result = None
        self._held = None  # its result, when too large for the buffer cache to keep
        self._exception = None
        self._construct_failed = False
        self._interrupted = False
        self._canceled = False
        self._job = None  # its execution job, once constructed (cancel() reaches where it runs)
        self._depth_value = None
        self._callbacks = []

    # --- evaluation --------------------------------------------------------------------

    def _claim(self):
        with self._lock:
            if self._claimed:
                return False
            self._claimed = True
            self._done.clear()
            return True

    def _evaluate(self):
        try:
            if not self._canceled:
                self._compute_now()
        except KeyboardInterrupt:  # not a result: clear_exception() or the next run starts it again
            self._exception = "KeyboardInterrupt: the evaluation was interrupted"
            self._interrupted = True
            raise
        except Exception as exc:  # ours, not the code's (a store that fails, ...): a failure all the same
            self._exception = f"{type(exc).__name__}: {exc}"
            if os.environ.get("SEAMLESS_DEBUG") == "1":
                raise
        finally:
            self._finish()

    def _finish(self):
        with self._lock:
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def _when_done(self, callback):
        """Call callback(self) once it has finished (now, if it has)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def _complete(self):
        """Evaluate now in this thread, or wait for whoever is doing it."""
        if self._claim():
            self._evaluate()
        else:
            self._done.wait()

    def _compute_now(self):
        if not self._construct_now():
            return
        from seamless.buffer import Checksum

        try:
            result = _execution("compute", self)
        except TransformationError as exc:
            self._exception = str(exc)
            return
        self._hold(result.data)
        if not self._canceled:
            self._result = Checksum(result.checksum)

    def _hold(self, data):
        """A result the buffer cache cannot keep stays with its transformation: no second run to read it."""
        self._held = data if data is not None and len(data) > cache.cap else None

    def _execution_job(self):
        """The job the execution path computes (seamless.execution), under the
        configuration in force now (a re-run after set_stage() follows the new one)."""
        if self._job is None:
            definition = self._definition
            self._job = Job(self._tf.hex(), self._transformation, definition.buffers, self._input,
                            scratch=definition.scratch, local=definition.local, canceled=lambda: self._canceled)
        self._job.configuration = config.in_force()
        self._job.priority = self._depth()
        return self._job

    def _depth(self):
        """How far downstream it is: on a cluster, deeper work runs first (what is left of
        a pipeline drains before more of its first step starts). Worked out once, from its
        dependencies' own (they were constructed first)."""
        if self._depth_value is None:
            deps = self._definition.deps
            self._depth_value = 1 + max(dep._depth() for dep in deps.values()) if deps else 0
        return self._depth_value

    def _construct_now(self):
        if self._tf is not None:
            return True
        definition = self._definition
        pins = definition.pins
        if definition.deps:
            deps = definition.deps
            for dep in deps.values():
                dep.start()
            for name, dep in deps.items():
                dep._complete()
                if dep._exception is not None or dep._result is None:
                    why = dep._exception or "Transformation was canceled"
                    self._exception = f"Dependency {name!r} has an exception:\n{why}"
                    self._construct_failed = True
                    return False
            pins = dict(pins)
            for name, dep in deps.items():
                pins[name] = [pins[name][0], None, dep._result.hex()]
                # its result buffer is one of our inputs
                data = dep._buffer_or_none()
                if data is not None:
                    definition.buffers[dep._result.hex()] = data
        transformation = {"__language__": definition.language,
                          "__output__": ["result", definition.result_celltype, None], **pins}
        identity = identity_buffer(transformation)
        tf = calculate_checksum(identity)
        definition.buffers[tf] = identity
        transformation["__meta__"] = definition.meta
        if definition.env:
            from seamless.checksum import serialize

            env = serialize(definition.env, "mixed")
            transformation["__env__"] = calculate_checksum(env)
            definition.buffers[transformation["__env__"]] = env  # stored with the inputs: the record
        from seamless.buffer import Checksum

        for cs, data in definition.buffers.items():
            cache.keep(cs, data)
        self._transformation = transformation
        self._tf = Checksum(tf)
        return True

    def _buffer_or_none(self):
        if self._held is not None:
            return self._held
        return cache.get_buffer(self._result.hex()) if self._result is not None else None

    def _result_bytes(self):
        data = self._buffer_or_none()
        if data is None:  # evicted, or a scratch result never stored: compute it again
            data = _execution("execute", self).data
            self._hold(data)
        return data

    def _input(self, cs):
        """A buffer an execution needs: from the definition, the caches and stores, or
        by recomputing a dependency whose result was not kept."""
        data = self._definition.buffers.get(cs)
        if data is None:
            data = cache.get_buffer(cs)
        if data is None:
            for dep in (self._definition.deps or {}).values():
                if dep._result is not None and dep._result.hex() == cs:
                    return dep._result_bytes()
        return data

    # --- the API ---------------------------------------------------------------------------

    def construct(self):
        """The transformation checksum (dependencies evaluated first), or None on failure."""
        if self._canceled:
            return None
        if self._tf is None and not self._construct_failed:
            if self._definition.deps:
                refuse_in_event_loop("construct()")
            self._construct_now()
        return self._tf

    def compute(self):
        """The result checksum (found or executed), or None on failure."""
        refuse_in_event_loop("compute()")
        if self._interrupted:  # an interrupted evaluation is not a failure to keep
            self.clear_exception()
        if self._result is None and self._exception is None and not self._canceled:
            self._complete()
        return self._result

    def run(self):
        """The result value; raises TransformationError on failure."""
        refuse_in_event_loop("run()")
        self.compute()
        return self._value()

    def _value(self):
        return deserialize(self._checked_bytes(), self._definition.result_celltype)

    def _checked_bytes(self):
        self._raise_if_failed()
        try:
            return self._result_bytes()
        except TransformationError as exc:
            raise TransformationError(f"Transformation returned an exception:\n{exc}") from None

    def _raise_if_failed(self):
        if self._canceled:
            raise TransformationError("Transformation was canceled")
        if self._construct_failed:
            raise TransformationError(f"Transformation construction returned an exception:\n{self._exception}")
        if self._exception is not None:
            raise TransformationError(f"Transformation returned an exception:\n{self._exception}")
        if self._result is None:
            raise TransformationError("Transformation has not been computed")

    def start(self):
        """Compute in the background; returns self."""
        if self._interrupted:
            self.clear_exception()
        with self._lock:
            if self._claimed or self._scheduled or self._canceled:
                return self
            self._scheduled = True
        executor().submit(self._run_if_unclaimed)
        return self

    def _run_if_unclaimed(self):
        if self._claim():
            self._evaluate()

    async def _wait_async(self):
        import asyncio

        self.start()
        if not self._done.is_set() or not self._claimed:
            await asyncio.get_running_loop().run_in_executor(None, self._complete)

    def task(self):
        """An asyncio Task that gives the value (or raises TransformationError)."""
        import asyncio

        async def value():
            await self._wait_async()
            return self._value()

        return asyncio.ensure_future(value())

    async def construction(self):
        import asyncio

        if self._definition.deps:
            for dep in self._definition.deps.values():
                await dep.computation()
        return await asyncio.get_running_loop().run_in_executor(None, self.construct)

    async def computation(self, require_value=False):
        await self._wait_async()
        if require_value and self._result is not None and self._buffer_or_none() is None:
            try:
                self._value()
            except TransformationError:
                return None
        return self._result

    def cancel(self, recursive=False):
        """Stop it for good; True if it had not finished."""
        if self._canceled or (self._result is not None and self._exception is None):
            return False
        self._canceled = True
        self._exception = "Transformation was canceled"
        if self._job is not None:
            self._job.cancel()
        if recursive:
            for dep in self._definition.deps.values():
                dep.cancel(recursive=True)
        self._finish()
        return True

    async def cancel_async(self, recursive=False):
        return self.cancel(recursive)

    def clear_exception(self):
        """Forget a failure, so that the next run executes again."""
        if self._canceled or self._exception is None:
            return
        with self._lock:
            self._exception = None
            self._interrupted = False
            self._construct_failed = False
            self._claimed = self._scheduled = False
            self._done.clear()

    def is_cached(self):
        """Is the result known (in memory, or in the database of the configuration in force)?"""
        tf = self.construct()
        return tf is not None and cache.get_result(tf.hex()) is not None

    async def is_cached_async(self):
        return self.is_cached()

    # --- state ---------------------------------------------------------------------------

    @property
    def status(self):
        if self._canceled:
            state = "canceled"
        elif self._exception is not None:
            state = "exception"
        elif self._result is not None:
            state = "OK"
        elif (self._claimed or self._scheduled) and not self._done.is_set():
            state = "pending"
        else:
            state = "ready"
        return f"Status: {state}"

    @property
    def exception(self):
        return self._exception

    @property
    def transformation_checksum(self):
        if self._tf is None:
            if self._construct_failed or self._canceled:
                raise TransformationError("Transformation construction returned an exception")
            raise TransformationError("Transformation has not been constructed")
        return self._tf

    @property
    def result_checksum(self):
        self._check_result()
        return self._result

    @property
    def value(self):
        self._check_result()
        return self._value()

    @property
    def buffer(self):
        from seamless.buffer import Buffer

        self._check_result()
        return Buffer(self._checked_bytes(), checksum=self._result)

    def _check_result(self):
        if self._tf is None and not self._construct_failed and not self._canceled:
            raise TransformationError("Transformation has not been constructed")
        self._raise_if_failed()

    @property
    def celltype(self):
        return self._definition.result_celltype

    @property
    def meta(self):
        import types

        return types.MappingProxyType(self._definition.meta)

    @property
    def scratch(self):
        return self._definition.scratch

    @property
    def logs(self):
        raise NotImplementedError("transformation logs are not kept; the job's output goes to stdout/stderr")

    def __setattr__(self, name, value):
        if name in ("meta", "scratch"):
            raise TransformationError("Transformation definition is immutable")
        object.__setattr__(self, name, value)

    def __repr__(self):
        tf = self._tf.hex()[:12] if self._tf is not None else "unconstructed"
        return f"<Transformation {tf} {self.status}>"


def _execution(how, t):
    """compute() (lookup, run once, backend, record) or execute() again (a result whose
    bytes are gone must come out the same), with the execution layer's errors as
    TransformationError."""
    job = t._execution_job()
    try:
        if how == "compute":
            return compute.compute(job, IN_MEMORY)
        return compute.execute(job, IN_MEMORY, expect=t._result.hex())
    except Canceled:
        raise TransformationError("Transformation was canceled") from None
    except TransformationFailure as exc:
        raise TransformationError(str(exc)) from None
