"""seamless-init: evaluate the configuration, start and verify its services, say what is active.

One line per service on stdout: NAME, URL or path, state. --show prints the resolved
configuration instead, starting nothing. A stage that executes on a daskserver gets its
Dask cluster (a pure Dask one too) started here or on the frontend.
"""

import argparse
import os
import sys

from seamless.cli import UserError, add_version

PROG = "seamless-init"


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False)
    add_version(p)
    p.add_argument("--stage", metavar="S[:SUB]", help="the stage (and substage) to initialize")
    p.add_argument("--project", metavar="P[:SUB]", help="override the project (and subproject)")
    p.add_argument("--queue", metavar="Q", help="override the queue")
    p.add_argument("--show", action="store_true", help="print the resolved configuration; start nothing")
    return p.parse_args(argv)


def main(argv):
    from seamless.cli import selection
    from seamless.config.errors import ConfigError
    from seamless.session import env_clients, resolve_config

    args = parse_args(argv)
    if env_clients() is not None:
        sys.stderr.write(f"{PROG}: SEAMLESS_REMOTE_CLIENTS is set: the stores it names are used as they are\n")
        return 0
    try:
        resolved = resolve_config(**selection(args))
        lines = describe(resolved) if args.show else start(resolved)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    for name, where, state in lines:
        print(f"{name:<11} {where}  {state}".rstrip())
    for warning in resolved.warnings:
        sys.stderr.write(f"{PROG}: warning: {warning}\n")
    return 0


def describe(resolved):
    from seamless.config import storage

    where = resolved.store_in or resolved

    # a configuration may select neither (results then go to the local cache, shown below)
    project = (resolved.project or "-") + (f"/{resolved.subproject}" if resolved.subproject else "")
    stage = (resolved.stage or "-") + (f":{resolved.substage}" if resolved.substage else "")
    rows = [
        ("cluster", resolved.cluster or "-", "(this machine)" if resolved.local else ""),
        ("project", project, ""),
        ("stage", stage, ""),
        ("execution", resolved.execution, ("" if resolved.execution != "remote" else
                                           resolved.remote + (" (pure Dask)" if resolved.pure_dask else ""))),
        ("persistent", "true" if resolved.persistent else "false (results kept in the local cache)"
         if resolved.store_in else "false", ""),
        ("queue", resolved.queue or "-", ""),
        ("buffers", storage.bufferdir(where) or "-", ""),
        ("database", storage.database_file(where) or "-", ""),
    ]
    if resolved.nparallel:
        rows.append(("nparallel", str(resolved.nparallel), ""))
    rows.append(("files", ", ".join(resolved.files) or "(none: zero-config cache)", ""))
    return rows


def start(resolved):
    from seamless.config import storage
    from seamless.session import stores_for

    rows = []
    stores = stores_for(resolved)
    where = resolved.store_in or resolved
    if where.local:
        rows.append(("buffers", storage.local_path(storage.bufferdir(where)), "directory, ok"))
        rows.append(("database", storage.local_path(storage.database_file(where)), "file, ok"))
    else:
        rows.append(("hashserver", stores.buffer_read[0].url, "running"))
        rows.append(("database", stores.db_read[0].url, "running"))
    if resolved.execution == "remote" and resolved.remote == "daskserver":
        return rows + [daskserver(resolved)]
    from seamless.execution.backends import backend_for

    backend = backend_for(resolved)
    if backend.mode == "spawn":
        workers = (resolved.definition or {}).get("workers") or os.cpu_count()
        rows.append(("execution", "spawn", f"{workers} worker processes for the Python API; "
                                            "seamless-run runs commands in process"))
    elif backend.mode == "remote":
        backend.ensure()
        workers = (resolved.definition or {}).get("workers") or 1
        rows.append(("jobserver", backend.url, f"running, {workers} worker(s)"))
    else:
        rows.append(("execution", "process", "in the calling process"))
    return rows


def daskserver(resolved):
    from seamless.launch.host import url_of
    from seamless.session import daskserver_for

    connection = daskserver_for(resolved)
    state = "running"
    if connection.get("dashboard_port"):
        state += f", dashboard {url_of(connection['hostname'], connection['dashboard_port'])}/status"
    if resolved.pure_dask:
        state += ", pure Dask: seamless.config.dask_client() in Python"
    return ("daskserver", connection["url"], state)
