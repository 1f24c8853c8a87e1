"""Run many transformations, at most nparallel at a time, and hand them back in order.

    for tf in parallel(tfs):            # each tf is done (OK or exception) when yielded
        print(tf.value)
    async for tf in parallel_async(tfs): ...
    for tf in parallel(TransformationList(tfs, on_error="raise")): ...

nparallel: seamless.config.set_nparallel(), the configuration's nparallel, else the
number of CPUs. Nothing starts before the first item is asked for. A failing item does
not stop the others: it is yielded with its exception (TransformationList's on_error
can print or raise instead).
"""

import sys
import threading
from collections import deque


def _nparallel(stage=None, substage=None):
    import seamless.config as config

    if stage is not None or substage is not None:
        config.set_stage(stage, substage)
    return config.get_nparallel()


def parallel(transformations, stage=None, substage=None):
    from seamless.transformer.transformation import refuse_in_event_loop

    try:
        refuse_in_event_loop("parallel()")
    except RuntimeError:
        raise RuntimeError("parallel() cannot be called from within a running event loop. "
                           "Use parallel_async() instead.") from None
    limit = _nparallel(stage, substage)
    return _in_order(transformations, limit, threading.Condition())


class _Window:
    """The transformations started and not yet handed back, in input order, with at most
    `limit` of them unfinished. on_done(tf) is called (from any thread) as each finishes;
    it must call finished() under whatever lock guards the window."""

    def __init__(self, transformations, limit, on_done):
        from seamless.transformer.transformation import executor

        executor(at_least=limit)  # its threads are not what limits it
        self.items = enumerate(transformations)
        self.limit = limit
        self.on_done = on_done
        self.started = deque()
        self.running = 0
        self.exhausted = False
        self.listing = transformations if isinstance(transformations, TransformationList) else None

    def fill(self):
        while not self.exhausted and self.running < self.limit:
            try:
                index, tf = next(self.items)
            except StopIteration:
                self.exhausted = True
                return
            self.running += 1
            self.started.append((index, tf))
            tf.start()
            tf._when_done(self.on_done)

    def finished(self):
        self.running -= 1

    def head(self):
        """The next transformation in order, or None when all have been handed back."""
        return self.started[0][1] if self.started else None

    def pop(self):
        index, tf = self.started.popleft()
        if self.listing is not None:
            self.listing.finish(index)
        return tf

    def close(self):
        if self.listing is not None:
            self.listing.close()


def _in_order(transformations, limit, changed):
    def done(_):
        with changed:
            window.finished()
            changed.notify_all()

    window = _Window(transformations, limit, done)
    try:
        while True:
            with changed:
                window.fill()
                head = window.head()
                if head is None:
                    return
                if not head._done.is_set():
                    changed.wait()
                    continue
                window.pop()
            yield head
    finally:
        window.close()


async def parallel_async(transformations, stage=None, substage=None):
    import asyncio

    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def finished():
        window.finished()
        wake.set()

    window = _Window(transformations, _nparallel(stage, substage),
                     lambda _: loop.call_soon_threadsafe(finished))  # called from any thread
    try:
        while True:
            window.fill()
            head = window.head()
            if head is None:
                return
            if not head._done.is_set():
                wake.clear()
                if not head._done.is_set():
                    await wake.wait()
                continue
            yield window.pop()
    finally:
        window.close()


class TransformationList:
    """Transformations to run with parallel(), with a progress bar (on a terminal) and a
    policy for failures: on_error None (keep going), "print" (print each) or "raise"."""

    def __init__(self, transformations, show_progress=True, on_error=None, store_details=False):
        if on_error not in (None, "print", "raise"):
            raise ValueError("on_error must be None, 'print', or 'raise'")
        self._items = list(transformations)
        self.on_error = on_error
        self.store_details = store_details
        self._stored_exceptions = {}
        self._stored_checksums = {}
        self._progress = _Progress(len(self._items)) if show_progress and sys.stderr.isatty() else None

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(list(self._items))

    def __getitem__(self, index):
        return self._items[index]

    def finish(self, index):
        tf = self._items[index]
        failed = tf.exception is not None and tf.status != "Status: canceled"
        if self._progress is not None:
            self._progress.update(failed, tf.status == "Status: canceled")
        if self.store_details:
            self._stored_exceptions[index] = tf.exception
            self._stored_checksums[index] = tf._result
            self._items[index] = None
        if failed and self.on_error == "print":
            print(tf.exception, end="" if tf.exception.endswith("\n") else "\n")
        elif failed and self.on_error == "raise":
            self.close()
            for other in self._items:
                if other is not None and other is not tf:
                    other.cancel()
            raise RuntimeError(f"Transformation {index} failed:\n{tf.exception}")

    def close(self):
        if self._progress is not None:
            self._progress.close()
            self._progress = None


class _Progress:
    def __init__(self, total):
        self.total = total
        self.finished = self.errors = self.canceled = 0
        self.draw()

    def update(self, failed, canceled):
        self.finished += 1
        self.errors += bool(failed)
        self.canceled += bool(canceled)
        self.draw()

    def draw(self):
        width = 30
        filled = width * self.finished // self.total if self.total else width
        extra = "".join(f", {n} {what}" for n, what in ((self.errors, "failed"), (self.canceled, "canceled")) if n)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.finished}/{self.total}{extra}")
        sys.stderr.flush()

    def close(self):
        sys.stderr.write("\n")
        sys.stderr.flush()
