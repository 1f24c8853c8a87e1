"""seamless-cancel: stop a running transformation, wherever the configuration runs it.

One line per backend, as upstream's: `process: canceled|not-running` (a job on this
machine: a seamless-run command or a bash transformation of the Python API, found
through the latch lock file of the configuration's stores: execution/latch.py,
jobdir.py), then, when the configuration runs remotely, `jobserver: ...` or `dask: ...`
(its server, if one runs: cancel never starts a server). Exit 0 when something was
canceled, 2 when nothing was, 1 on an error.

CHECKSUM|FILE: a transformation checksum; TARGET (or TARGET.FUTURE) of a seamless-run
that is producing TARGET; or a file holding the checksum (X.CHECKSUM, seamless-run
--dry > X).
"""

import argparse
import os
import sys

from seamless.checksum import parse_checksum
from seamless.cli import UserError, add_version, selection
from seamless.cli.resolve import checksum_of

PROG = "seamless-cancel"
CANCELED, NOTHING, FAILED = 0, 2, 1


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False)
    add_version(p)
    p.add_argument("item", metavar="CHECKSUM|FILE",
                   help="transformation checksum, a TARGET being computed (TARGET.FUTURE), or a file holding one")
    p.add_argument("--project", metavar="P[:SUB]", help="project (and subproject) of the configuration to use")
    p.add_argument("--stage", metavar="S[:SUB]", help="stage (and substage) of the configuration to use")
    p.add_argument("--queue", metavar="Q", help="queue of the selected cluster (whose Dask cluster to look in)")
    return p.parse_args(argv)


def transformation_of(arg) -> str:
    """The transformation checksum an argument names: a .FUTURE marker says which one
    (`<tf>.<result path>`) is producing its TARGET."""
    future = arg if arg.endswith(".FUTURE") else arg + ".FUTURE"
    if os.path.isfile(future):
        with open(future, "rb") as f:
            text = f.read(4096).decode(errors="replace")
        try:
            return parse_checksum(text.partition(".")[0].strip())
        except ValueError:
            raise UserError(f"{future} is not a seamless-run .FUTURE marker") from None
    if arg.endswith(".FUTURE"):
        raise UserError(f"{arg}: no such marker (the run that wrote it is over)")
    return checksum_of(arg)


def main(argv):
    from seamless.config.errors import ConfigError
    from seamless.session import resolve_config

    args = parse_args(argv)
    tf = transformation_of(args.item)
    try:
        resolved = resolve_config(**selection(args))
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    locks = lock_dir(resolved)  # the stores in force: their trouble (not a backend's) is the error line
    backends = [("process", lambda: local_cancel(locks, tf))]
    if resolved.execution == "remote" and not resolved.pure_dask:  # pure Dask: transformations run in process
        if resolved.remote == "jobserver":
            backends.append(("jobserver", lambda: jobserver_cancel(resolved, tf)))
        else:
            backends.append(("dask", lambda: dask_cancel(resolved, tf)))
    canceled = failed = False
    for name, cancel in backends:
        try:
            done = cancel()
        except Exception as exc:  # one backend's trouble: said on its line, the others still tried
            print(f"{name}: error: {exc}", flush=True)
            failed = True
            continue
        print(f"{name}: {'canceled' if done else 'not-running'}", flush=True)
        canceled = canceled or done
    if failed and not canceled:
        sys.stderr.write(f"{PROG}: error: could not ask every backend (see above)\n")
        return FAILED
    return CANCELED if canceled else NOTHING


# --- the backends ------------------------------------------------------------------------


def local_cancel(locks, tf) -> bool:
    """A job of this machine: the latch lock file of tf in the lock directory that
    seamless-run and the Python API use with these stores names its job directory."""
    from seamless.execution.jobdir import cancel_job
    from seamless.execution.latch import holder

    record = holder(locks, tf)
    job = record.get("job") if record else None
    return isinstance(job, str) and cancel_job(job)


def lock_dir(resolved) -> str:
    """seamless-run's lock directory under `resolved` (run/cli.py: execution_job)."""
    from seamless.cli import open_stores
    from seamless.execution.places import lock_dir_of
    from seamless.session import cache_root, env_clients

    stores = None
    if env_clients() is not None or (resolved.store_in or resolved).local:  # opening them starts no server
        stores = open_stores(resolved=resolved)
    return lock_dir_of(stores) or os.path.join(cache_root(), "locks")


def jobserver_cancel(resolved, tf) -> bool:
    import json

    from seamless.store.httpclient import HttpClient

    connection = running("jobserver", resolved)
    if connection is None:
        return False
    client = HttpClient(connection["url"], token_file=connection.get("token_file"))
    status, _, answer = client.call("POST", f"/cancel-transformation/{tf}")
    if status != 200:
        raise RuntimeError(f"the job server {connection['url']} answered {status}: {answer[:200].decode(errors='replace')}")
    return json.loads(answer).get("canceled") is True


def dask_cancel(resolved, tf) -> bool:
    connection = running("daskserver", resolved)
    if connection is None:
        return False
    from seamless.dask.cancel import cancel

    return cancel(connection["url"], tf)


def running(tool, resolved):
    """The connection to the configuration's `tool` if it runs (it is never started)."""
    from seamless.config import tools
    from seamless.launch.client import find

    return find(tools.render(tool, resolved, "rw"))
