"""seamless-run's job directories written instead of running: -j DIR with --dry (the
transformation and its parts), and --write-remote-job DIR (a directory that runs with
plain bash: its inputs, values and transform.sh)."""

import os

from seamless.identity import identity_buffer
from seamless.run.transformation import is_name


def write_job(spec, directory, uploaded=False):
    """-j DIR: the transformation (its checksum only, when it was uploaded) and its parts."""
    import json

    transformation = spec["transformation"]
    os.makedirs(directory)
    if uploaded:
        _write(directory, "transformation.json.CHECKSUM", spec["checksum"])
    else:
        _write(directory, "transformation.json", identity_buffer(transformation))
        _write(directory, "command.txt", spec["code"])
        if "__env__" in transformation:
            _write(directory, "env.json", json.dumps(transformation["__env__"], indent=2) + "\n")
    if "__meta__" in transformation:
        _write(directory, "dunder.json", json.dumps({"__meta__": transformation["__meta__"]}, indent=2) + "\n")


def _write(directory, name, data):
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def write_remote_job(spec, target, stores):
    """A job directory that runs with plain bash: inputs, values, transform.sh (the
    inputs are in `stores` already)."""
    from seamless.execution.bash import command_pins
    from seamless.execution.job import JobError
    from seamless.execution.jobdir import HEADER, Job

    target = os.path.abspath(os.path.expanduser(target))
    os.makedirs(os.path.dirname(target), exist_ok=True)

    def fetch(cs, what):
        data = spec["buffers"].get(cs) or stores.get_buffer(cs)
        if data is None:
            raise JobError(f"{what}: buffer {cs} is not part of the command")
        return data

    job = Job(stores, parent=os.path.dirname(target))
    try:
        job.materialize(command_pins(spec["transformation"], stores, fetch), spec["code"])  # metavars too
        exports = "".join(f"export {k}={_quote(v)}\n" for k, v in sorted(job.env.items()) if is_name(k))
        script = "#!/bin/bash\n" + exports + HEADER + spec["code"]
        path = os.path.join(job.dir, "transform.sh")
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, 0o755)
        os.rename(job.dir, target)
        job.release()
    except BaseException:
        job.cleanup()
        raise
    return target


def _quote(value):
    import shlex

    return shlex.quote(value)
