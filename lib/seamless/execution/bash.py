"""The one bash runner: a bash transformation dict, run in a fresh job directory.

Two kinds of bash transformation share it. A seamless-run command (its code pin is
["text", None, cs]) names its files in __format__: file and directory pins are linked
or copied from the stores (a directory by its index, then each file), other pins are
values, META__ pins only environment variables; its RESULT file or directory is kept
as it is, file by file, in the stores (scratch: only checksummed). A bash transformer
of the Python API (code pin ["text", "transformer", cs]) gets every pin as a value; its
RESULT becomes a value of the result celltype. For both, a value pin is a file in the
job (text with a newline, bytes as they are, anything else as JSON) and, when its name
has no dot and it is at most 1000 characters, an environment variable too. Everything
comes from `get_buffer` / the stores by checksum, so a transformation found again by
checksum (a fingertip, a replay) runs exactly like a fresh one. A missing input
buffer goes to recover(cs), which may rebuild it (fingertip), before giving up.
"""

import json
import os
import sys

from seamless.checksum import checksum_file, deserialize, serialize
from seamless.execution.job import JobError, Result, TransformationFailure, Unavailable, is_command
from seamless.execution.jobdir import Job, Pin


def run(transformation, get_buffer, stores=None, *, job_parent=None, quiet=False, stdout=None, scratch=False,
        recover=None, on_start=None) -> Result:
    """Execute; a command's result buffers go to `stores` (unless scratch). on_start(job
    directory) is told where it runs: its kill() cancels it."""
    command = is_command(transformation)
    if command and stores is None:
        raise JobError("a seamless-run command needs buffer stores to run")

    def fetch(cs, what):
        data = get_buffer(cs)
        if data is None and recover is not None:
            recover(cs)
            data = get_buffer(cs)
        if data is None and not command:
            raise TransformationFailure(f"{what}: buffer {cs} is in no cache and no store")
        if data is None:
            hint = "" if recover is not None else " (--fingertip recomputes it from the transformation that made it)"
            raise Unavailable(f"{what}: buffer {cs} is not in any store{hint}")
        return data

    code = fetch(transformation["code"][2], "the code").decode()
    setup = _conda_setup(transformation, fetch)
    pins = command_pins(transformation, stores, fetch, recover) if command else _value_pins(transformation, fetch)
    job = Job(stores, parent=job_parent)
    try:
        job.materialize(pins, code)
        if on_start is not None:
            on_start(job)
        if not command:
            stdout = stdout if stdout is not None else getattr(sys.stdout, "buffer", None)
        try:
            usage = job.run(code, quiet=quiet, stdout=stdout, setup=setup)
        except JobError as exc:
            if command:
                raise
            tail = exc.stderr_tail.decode(errors="replace")
            raise TransformationFailure(f"bash: {exc}" + (f"\n{tail}" if tail else "")) from None
        if command:
            return Result(_stored_result(job, transformation["__output__"][1], stores, scratch), usage=usage)
        data = _value_result(job, transformation["__output__"][1])
        from seamless.checksum import calculate_checksum

        return Result(calculate_checksum(data), data, usage)
    finally:
        job.cleanup()


# --- inputs ----------------------------------------------------------------------------


def command_pins(transformation, stores, fetch, recover=None):
    """The job inputs of a seamless-run command (also what --write-remote-job writes)."""
    formats = transformation.get("__format__", {})
    pins = []
    for name, spec in transformation.items():
        if name.startswith("__") or name == "code":
            continue
        celltype, _, cs = spec
        mode = formats.get(name, {}).get("filesystem", {}).get("mode")
        if mode == "file":
            if recover is not None and not _available(stores, cs):
                recover(cs)
            pins.append(Pin(name, "file", cs))
        elif mode == "directory":
            index = _index(fetch(cs, f"directory {name!r}"), name)
            if recover is not None:
                for file_cs in index.values():
                    if not _available(stores, file_cs):
                        recover(file_cs)
            pins.append(Pin(name, "directory", cs, index=index))
        else:  # a --var, or a --metavar (META__NAME: always in the environment)
            what = f"metavar {name[6:]!r}" if name.startswith("META__") else f"value {name!r}"
            pin = _value_pin(name, cs, deserialize(fetch(cs, what), celltype))
            pin.always_export = name.startswith("META__")
            pins.append(pin)
    return pins


def _value_pins(transformation, fetch):
    from seamless.execution.python import pins

    values, _ = pins(transformation, lambda cs: fetch(cs, "a pin"))
    return [_value_pin(name, None, value) for name, value in sorted(values.items())]


def _value_pin(name, cs, value):
    if isinstance(value, (bytes, bytearray)):
        return Pin(name, "value", cs, data=bytes(value))
    text = value + "\n" if isinstance(value, str) else json.dumps(value)
    env = value if isinstance(value, str) else text
    return Pin(name, "value", cs, data=text.encode(), value=env)


def _index(buffer, name):
    from seamless.files import UnsafePath, check_index

    try:
        return check_index(json.loads(buffer), f"index of directory {name!r}")
    except (ValueError, UnsafePath) as exc:
        raise JobError(str(exc)) from None


def _available(stores, cs) -> bool:
    """Is there a good copy? (A corrupt local one is discarded on the way.)"""
    return stores.verified_local(cs) is not None or stores.has_buffer(cs)


def _conda_setup(transformation, fetch):
    """Shell lines activating the conda environment the transformation names, if any:
    a command carries its environment inline, a bash transformer by checksum."""
    env = transformation.get("__env__")
    if isinstance(env, str):
        env = deserialize(fetch(env, "the environment"), "mixed")
    name = env.get("conda_environment") if isinstance(env, dict) else None
    if not name:
        return ""
    try:
        return conda_activation(name)
    except JobError as exc:
        if is_command(transformation):
            raise
        raise TransformationFailure(f"bash: {exc}") from None


def conda_activation(env):
    """Shell lines that activate a conda environment."""
    import shlex

    from seamless.conda import profile_script

    script = profile_script()
    if script is None:
        raise JobError(f"conda environment {env!r}: conda is not found (set CONDA_ROOT or put conda on PATH)")
    return f"source {shlex.quote(script)}\nconda activate {shlex.quote(env)}\n"


# --- results ---------------------------------------------------------------------------


def _stored_result(job, output, stores, scratch):
    """Checksum (and unless scratch, store) what a command left in RESULT."""
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


def _value_result(job, celltype):
    """A bash transformer's RESULT file or directory as a buffer of its celltype."""
    path = job.result_path()
    raw = celltype in ("bytes", "folder", "deepfolder")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            value = _read_result(f.read(), raw)
    elif os.path.isdir(path):
        value = {}
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for filename in sorted(filenames):
                full = os.path.join(dirpath, filename)
                with open(full, "rb") as f:
                    value[os.path.relpath(full, path).replace(os.sep, "/")] = _read_result(f.read(), raw)
        if not value:
            raise TransformationFailure("bash: the code produced an empty RESULT/ directory")
    else:
        raise TransformationFailure("bash: the code left no RESULT file or directory")
    try:
        return serialize(value, celltype)
    except (TypeError, ValueError) as exc:
        raise TransformationFailure(f"bash: RESULT cannot be stored as celltype {celltype!r}: {exc}") from None


def _read_result(data, raw):
    """A RESULT file as a value: raw bytes, else JSON, else text (upstream's order, minus numpy)."""
    if raw:
        return data
    try:
        return json.loads(data)
    except ValueError:
        pass
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data
