"""Where a transformation's result comes from: a cache, or an execution somewhere.

Lookup: the in-process caches, then the stores of the configuration in force. A miss is
executed, according to the transformation (.local) and the configuration (execution):
  process  in this process (the calling thread, or a pool thread after start())
  spawn    in the worker pool (spawn(), or execution: spawn)
  remote   not in this version: a clear error
Inside a worker, the parent is asked first (it may have the result, or a free worker);
when it has no free worker the job runs right here, so nesting never deadlocks.
Failures are never cached. After an execution the inputs, the transformation, the
result (unless scratch) and an execution record go to the persistent stores.
"""

import sys
import threading
import time

from seamless.buffer import Checksum
from seamless.checksum import calculate_checksum
from seamless.cache import cache
from seamless.transformer.execute import TransformationFailure, run_transformation
from seamless.transformer.transformation import TransformationError

_pool = {"pool": None}


class _Running:
    """An execution in progress here, which identical transformations wait for."""

    def __init__(self):
        self.done = threading.Event()
        self.result = self.data = self.error = None


_running = {}  # transformation checksum -> _Running
_running_lock = threading.Lock()


def compute(t) -> Checksum:
    tf = t._tf.hex()
    while True:
        if t._canceled:
            raise TransformationError("Transformation was canceled")
        result = cache.get_result(tf)
        if result is None and t._definition.scratch:
            result = cache.known_result(tf)  # scratch: the checksum row is the result; .value recomputes
        if result is not None:
            return Checksum(result)
        with _running_lock:
            running = _running.get(tf)
            if running is None:
                mine = _running[tf] = _Running()
        if running is None:
            break
        while not running.done.wait(0.1):  # the same transformation is executing: latch on to it
            if t._canceled:
                raise TransformationError("Transformation was canceled")
        if running.result is not None:
            _hold(t, running.data)
            return Checksum(running.result)
        if running.error is not None:
            raise TransformationError(running.error)
        # it was canceled or interrupted: look again, then execute it ourselves
    try:
        started = time.monotonic()
        data, mode = execute(t)
        result = calculate_checksum(data)
        _hold(t, data)
        mine.data = data
        record(tf, t._definition.buffers, result, data, t._definition.scratch, mode, time.monotonic() - started)
        mine.result = result
    except TransformationError as exc:
        if not t._canceled:
            mine.error = str(exc)  # those waiting for it fail the same way (nothing is cached)
        raise
    finally:
        with _running_lock:
            del _running[tf]
        mine.done.set()
    return Checksum(result)


def _hold(t, data):
    """A result the buffer cache cannot keep stays with its transformation: no second run to read it."""
    t._held = data if data is not None and len(data) > cache.cap else None


def recompute(t) -> bytes:
    """Execute again (a scratch result, or one no cache or store holds any more, or only
    corrupt): the same bytes, kept as a first execution's are."""
    started = time.monotonic()
    data, mode = execute(t)
    result = t._result.hex()
    if calculate_checksum(data) != result:
        raise TransformationError(f"re-running transformation {t._tf} gave a different result "
                                  "(it is not deterministic); its first result is lost")
    _hold(t, data)
    record(t._tf.hex(), t._definition.buffers, result, data, t._definition.scratch, mode, time.monotonic() - started)
    return data


def execute(t):
    """(result buffer, execution mode) of running the transformation."""
    from seamless.transformer import worker

    if worker.channel is not None:
        data = worker.forward_to_parent(t)
        if data is not None:
            return data, "spawn"
        return run_here(t), "process"
    mode = execution_mode(t._definition.local)
    if mode == "spawn":
        return pool().run(t), "spawn"
    return run_here(t), "process"


def run_here(t) -> bytes:
    try:
        return run_transformation(t._transformation, t._input)
    except TransformationFailure as exc:
        raise TransformationError(str(exc)) from None


def execution_mode(local=False):
    if local:
        return "process"
    if _pool["pool"] is not None:
        return "spawn"
    import seamless.config as config

    resolved = config._state["resolved"] if config._state["initialized"] else None
    execution = getattr(resolved, "execution", None) if config._state["remote_clients"] is None else None
    if execution == "remote":
        raise TransformationError(
            f"execution is remote on cluster {resolved.cluster!r} (through a {resolved.remote}), which this "
            "version cannot submit to yet; set .local = True, or select execution: process or spawn")
    if execution == "spawn":
        workers = (resolved.definition or {}).get("workers") if resolved.definition else None
        spawn(workers, _from_config=True)
        return "spawn"
    return "process"


def pool():
    return _pool["pool"]


def spawn(num_workers=None, _from_config=False):
    """Start the worker pool (default: one worker per CPU)."""
    import multiprocessing

    from seamless.transformer import worker

    if worker.channel is not None or multiprocessing.parent_process() is not None:
        sys.stderr.write("seamless: spawn() called outside the main process; ignoring\n")
        return
    if _pool["pool"] is not None:
        if _from_config:
            return
        raise RuntimeError("Workers have already been spawned")
    from seamless.transformer.pool import Pool

    _pool["pool"] = Pool(num_workers or multiprocessing.cpu_count())


def has_spawned() -> bool:
    return _pool["pool"] is not None


def close_pool():
    found = _pool["pool"]
    _pool["pool"] = None
    if found is not None:
        found.close()


_warned = []


def record(tf, inputs, result, data, scratch, mode, seconds):
    """Remember what an execution produced: in memory, and in the persistent stores if
    any are in force (inputs: every buffer the transformation refers to, and itself)."""
    cache.keep(result, data)
    cache.set_result(tf, result)
    from seamless.transformer import worker

    if worker.channel is not None:
        if mode == "process":  # ran inside this worker, not in the parent: tell it
            worker.report_record(tf, inputs, result, data, scratch, seconds)
        return
    stores = cache.stores()
    if stores is None:
        return
    from seamless.version import __version__

    try:
        for cs, buffer in inputs.items():
            stores.put_buffer(buffer, cs)
        if not scratch:
            stores.put_buffer(data, result)
        stores.set_transformation(tf, result)
        record = {"schema_version": 1, "tf_checksum": tf, "result_checksum": result,
                  "seamless_version": __version__, "execution_mode": mode, "remote_target": None,
                  "wall_time_seconds": round(seconds, 6), "cpu_time_user_seconds": None,
                  "cpu_time_system_seconds": None, "memory_peak_bytes": None, "gpu_memory_peak_bytes": None}
        try:
            stores.set_metadata(tf, result, record)
        except Exception:  # provenance only: never fail a computed result over it
            pass
    except Exception as exc:  # the result stands; it is just not kept beyond this process
        if not _warned:
            _warned.append(exc)
            sys.stderr.write(f"seamless: warning: results are not being stored persistently: {exc}\n")
