"""compute(job, place): the one execution path, for seamless-run and the Python API.

1. Look in the place's caches: a usable cached result is the answer (nothing else is
   contacted: no backend, no server that runs jobs).
2. Hold the job's latch (latch.py): identical work in this process or on this machine
   runs once; who waited takes the holder's result, or looks again.
3. Run it on the backend the configuration selects (backends.backend_for), inside the
   job's setup (what must happen only when it really runs: uploading its inputs...).
4. Keep the result and one execution record (where it really ran, what it cost).
Every answer is counted, a hit or a miss (seamless-cache stats shows the counts).
Failures are never cached; those who waited for a failed run fail the same way.
"""

from seamless.execution.backends import backend_for
from seamless.execution.job import Result, TransformationFailure
from seamless.execution.latch import once


def compute(job, place, on_wait=None, refresh=False, backend=None) -> Result:
    """The job's result; `refresh`: run it even if a result is cached (that one proved
    unusable); on_wait(): called once if an identical run makes this one wait; `backend`:
    where it runs, instead of the configuration's choice (a Dask worker's own pool)."""
    found = None if refresh else place.lookup(job)
    if found is not None:
        place.note(hit=True)
        return found
    with once(job.tf, place.lock_dir, job.canceled, on_wait) as entry:
        if entry.result is not None:
            return entry.result
        if entry.error is not None:
            raise entry.error
        found = None if refresh else place.lookup(job)  # computed elsewhere while we waited
        if found is not None:
            place.note(hit=True)
            return found
        try:
            entry.result = execute(job, place, backend=backend)
        except Exception as exc:
            if not (job.canceled is not None and job.canceled()):
                entry.error = exc  # not a cancellation: the same failure for those waiting
            raise
        return entry.result


def execute(job, place, expect=None, backend=None) -> Result:
    """Run the job on its backend and keep the result; `expect`: the checksum a re-run
    must give (a result that was lost, or kept as a checksum only)."""
    if backend is None:
        backend = backend_for(job.configuration, local=job.local)
    backend.ensure()  # on a miss only: a cache hit never starts (or contacts) a backend
    job.backend, job.expect = backend, expect  # job.cancel() reaches it there
    try:
        if job.setup is None:
            result = backend.run(job)
        else:
            with job.setup():
                result = backend.run(job)
    finally:
        job.backend = job.expect = None
    if expect is not None and result.checksum != expect:
        raise TransformationFailure(f"re-running transformation {job.tf} gave a different result "
                                    "(it is not deterministic); its first result is lost")
    place.keep(job, result)
    place.note(hit=False)
    return result
