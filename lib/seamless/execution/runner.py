"""The one worker-side runner: any transformation dict, in this process.

Python transformations (python.py) and bash ones (bash.py: seamless-run commands and
bash transformers alike) run from the dict and get_buffer(cs); a command also needs
the stores, where its input files are and its result files go. Every backend's
workers call run(); it measures what the run cost (wall time, and CPU time: of this
thread for Python, of the job's processes for bash).
"""

import os
import resource
import time

from seamless.checksum import calculate_checksum
from seamless.execution.job import Result, TransformationFailure


def run(transformation, get_buffer, stores=None, **options) -> Result:
    language = transformation.get("__language__")
    if language == "bash":
        from seamless.execution import bash

        return bash.run(transformation, get_buffer, stores, **options)
    if language != "python":
        raise TransformationFailure(f"cannot run a {language!r} transformation")
    from seamless.execution import python

    started, cpu = time.monotonic(), _thread_cpu()
    data = python.run(transformation, get_buffer)
    user, system = (after - before for after, before in zip(_thread_cpu(), cpu))
    usage = {"wall_time_seconds": round(time.monotonic() - started, 6), "cpu_time_user_seconds": round(user, 6),
             "cpu_time_system_seconds": round(system, 6), "memory_peak_bytes": None, "pid": os.getpid()}
    return Result(calculate_checksum(data), data, usage)


def _thread_cpu():
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime, usage.ru_stime
