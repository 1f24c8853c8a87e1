"""What the execution path passes around: a job to compute, its result, its errors."""

from seamless.store import StoreError


class TransformationFailure(Exception):
    """The transformation's code failed; the message is what the user should see."""


class JobError(Exception):
    """The job could not run, or failed; `code` is the exit status to report; `shown`:
    its stderr was shown as it ran (not for a job that ran elsewhere)."""

    def __init__(self, message, code=1, stderr_tail=b"", shown=True):
        super().__init__(message)
        self.code = code
        self.stderr_tail = stderr_tail
        self.shown = shown


class Unavailable(StoreError):
    """A buffer the transformation needs is in no store and could not be recomputed."""


class Canceled(Exception):
    """The job was canceled while it waited or ran."""


def is_command(transformation) -> bool:
    """A seamless-run command (its code pin is ["text", None, cs]), not a bash transformer
    of the Python API nor Python code: it needs the stores, where its files are."""
    return transformation.get("__language__") == "bash" and transformation["code"][1] != "transformer"


class Job:
    """One transformation to compute.

    tf: its checksum; transformation: the dict the runners execute; buffers: checksum ->
    bytes it brings along (small pins, its identity buffer); get_buffer(cs): any other
    buffer it needs (caches, stores, a dependency's result), or None; scratch: keep the
    result checksum, not its bytes; local: run here whatever the configuration (--local,
    .local); configuration: the resolved configuration that picks the backend (None: in
    process); canceled(): polled while it waits; setup(): a context around the run (what
    must happen first, and last, only when it really executes); notify(message); options:
    for the runner (stores, quiet, stdout, job_parent, recover); priority: see below.
    """

    __slots__ = ("tf", "transformation", "buffers", "get_buffer", "scratch", "local", "configuration",
                 "canceled", "setup", "notify", "echo", "options", "backend", "handle", "priority", "expect")

    def __init__(self, tf, transformation, buffers=None, get_buffer=None, *, scratch=False, local=False,
                 configuration=None, canceled=None, setup=None, notify=None, echo=None, **options):
        self.tf, self.transformation = tf, transformation
        self.buffers = buffers if buffers is not None else {}
        self.get_buffer = get_buffer
        self.scratch, self.local, self.configuration = scratch, local, configuration
        self.canceled = canceled  # None: nothing to poll
        self.setup = setup
        self.notify = notify  # notify(message): what the user should hear while it runs (remotely...)
        self.echo = echo  # echo(bytes): where a remote job's stderr goes
        self.options = options
        self.backend = self.handle = None  # while it runs: who runs it, and their handle on it
        self.priority = 0  # on a cluster, higher runs first: a transformation's depth in its graph
        self.expect = None  # a re-run's checksum to give (execute(expect=)): a remote place keeps no other

    @property
    def command(self) -> bool:
        return is_command(self.transformation)

    def buffer(self, cs):
        data = self.buffers.get(cs)
        if data is None and self.get_buffer is not None:
            data = self.get_buffer(cs)
        return data

    def needed_buffers(self) -> dict:
        """Every buffer its pins (and environment) refer to: what a worker without stores needs."""
        found = {}
        for name, spec in self.transformation.items():
            if name == "__env__" and isinstance(spec, str):
                spec = [None, None, spec]
            elif name.startswith("__") or not isinstance(spec, list):
                continue
            cs = spec[2]
            data = self.buffer(cs)
            if data is None:
                raise TransformationFailure(f"pin {name!r}: buffer {cs} is in no cache and no store")
            found[cs] = data
        return found

    def cancel(self) -> bool:
        """Stop it where it runs, if it runs (a worker is killed; in process nothing can stop it)."""
        backend = self.backend
        return backend is not None and backend.cancel(self)


class Result:
    """checksum: the result; data: its bytes when they are at hand (the Python API's
    results; a command's stay in the stores); usage: wall/CPU/memory figures of the run;
    mode: where it ran (process, spawn, remote); hit: found, not computed; kept: the
    stores have it already, with its result row and execution record (written where it
    ran: a Dask worker), so only this process's memory is left to tell."""

    __slots__ = ("checksum", "data", "usage", "mode", "hit", "kept")

    def __init__(self, checksum, data=None, usage=None, mode=None, hit=False, kept=False):
        self.checksum, self.data, self.usage, self.mode, self.hit = checksum, data, usage or {}, mode, hit
        self.kept = kept
