"""Run a bash transformation dict against the stores and store its result.

Everything the job needs comes from the stores by checksum: the code, file pins,
directory pins (their index, then each file) and value pins. So a transformation found
again by checksum (a fingertip, a replay) runs exactly like a fresh one. A missing
input buffer can be recomputed from the transformation that produced it (fingertip).
"""

import json
import os

from seamless.checksum import calculate_checksum, checksum_file, deserialize, serialize
from seamless.identity import identity_buffer
from seamless.run.job import Job, JobError, Pin
from seamless.store import StoreError


class Unavailable(StoreError):
    """A buffer the transformation needs is in no store and could not be recomputed."""


def fetch(stores, cs, what, fingertip=False, quiet=True):
    data = stores.get_buffer(cs)
    if data is None and fingertip:
        recompute(stores, cs, quiet)
        data = stores.get_buffer(cs)
    if data is None:
        hint = "" if fingertip else " (--fingertip recomputes it from the transformation that made it)"
        raise Unavailable(f"{what}: buffer {cs} is not in any store{hint}")
    return data


def pins_of(transformation, stores, fingertip=False):
    """The job inputs a transformation dict describes."""
    formats = transformation.get("__format__", {})
    pins = []
    for name, spec in transformation.items():
        if name.startswith("__") or name == "code":
            continue
        celltype, _, cs = spec
        mode = formats.get(name, {}).get("filesystem", {}).get("mode")
        if mode == "file":
            if fingertip and not _available(stores, cs):
                recompute(stores, cs)
            pins.append(Pin(name, "file", cs))
        elif mode == "directory":
            index = _index(fetch(stores, cs, f"directory {name!r}", fingertip), name)
            if fingertip:
                for file_cs in index.values():
                    if not _available(stores, file_cs):
                        recompute(stores, file_cs)
            pins.append(Pin(name, "directory", cs, index=index))
        else:
            value = deserialize(fetch(stores, cs, f"value {name!r}", fingertip), celltype)
            pins.append(Pin(name, "value", cs, value=value if isinstance(value, str) else json.dumps(value)))
    return pins


def _index(buffer, name):
    from seamless.files import UnsafePath, check_index

    try:
        return check_index(json.loads(buffer), f"index of directory {name!r}")
    except (ValueError, UnsafePath) as exc:
        raise JobError(str(exc)) from None


def _available(stores, cs) -> bool:
    """Is there a good copy? (A corrupt local one is discarded on the way.)"""
    return stores.verified_local(cs) is not None or stores.has_buffer(cs)


def run(transformation, stores, *, job_parent=None, quiet=False, scratch=False, fingertip=False,
        stdout=None):
    """Execute; store the result buffers (unless scratch); return (result checksum, usage)."""
    if transformation.get("__language__") != "bash":
        raise JobError(f"cannot run a {transformation.get('__language__')!r} transformation here")
    code = fetch(stores, transformation["code"][2], "the code", fingertip).decode()
    conda = transformation.get("__env__", {}).get("conda_environment")
    setup = conda_activation(conda) if conda else ""
    pins = pins_of(transformation, stores, fingertip)
    output = transformation["__output__"][1]
    job = Job(stores, parent=job_parent)
    try:
        job.materialize(pins, code)
        job.env.update(_meta_values(transformation, stores))
        usage = job.run(code, quiet=quiet, stdout=stdout, setup=setup)
        return collect(job, output, stores, scratch), usage
    finally:
        job.cleanup()


def conda_activation(env):
    """Shell lines that activate a conda environment."""
    import shlex

    from seamless.conda import profile_script

    script = profile_script()
    if script is None:
        raise JobError(f"conda environment {env!r}: conda is not found (set CONDA_ROOT or put conda on PATH)")
    return f"source {shlex.quote(script)}\nconda activate {shlex.quote(env)}\n"


def _meta_values(transformation, stores):
    values = {}
    for name, spec in transformation.items():
        if name.startswith("META__"):
            values[name] = deserialize(fetch(stores, spec[2], f"metavar {name[6:]!r}"), spec[0])
    return values


def collect(job, output, stores, scratch):
    """Checksum (and unless scratch, store) what the job left in RESULT."""
    path = job.result_path()
    if output == "bytes":
        if not os.path.isfile(path):
            raise JobError("the command left no RESULT file")
        return checksum_file(path) if scratch else stores.put_file(path)
    if not os.path.isdir(path):
        raise JobError("the command left no RESULT directory")
    index = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            index[rel] = checksum_file(full) if scratch else stores.put_file(full)
    if not index:
        raise JobError("the command produced no result files (RESULT/ is empty)")
    buffer = serialize(dict(sorted(index.items())), "plain")
    return stores.put_buffer(buffer)  # the index is kept even for scratch: it is small


def store_transformation(stores, transformation):
    """Keep the identity buffer, so the transformation can be found and re-run later."""
    return stores.put_buffer(identity_buffer(transformation))


def recompute(stores, cs, quiet=True):
    """Fingertip: rebuild buffer `cs` by re-running a transformation that produced it."""
    errors = []
    for tf, transformation in stores.producers(cs):
        if transformation is None:
            errors.append(f"{tf}: its transformation is not stored")
            continue
        try:
            result, _ = run(transformation, stores, quiet=quiet, fingertip=True)
        except (JobError, StoreError) as exc:
            errors.append(f"{tf}: {exc}")
            continue
        if result == cs:
            return
        # a deepfolder result: the wanted buffer may be one of its files
        index = stores.get_buffer(result)
        if index is not None and calculate_checksum(index) == result and cs in _values(index):
            return
        errors.append(f"{tf}: re-running it gave {result}, not {cs}")
    why = "; ".join(errors) if errors else "no known transformation produced it"
    raise Unavailable(f"cannot recompute buffer {cs}: {why}")


def _values(buffer):
    try:
        data = json.loads(buffer)
    except ValueError:
        return ()
    return data.values() if isinstance(data, dict) else ()
