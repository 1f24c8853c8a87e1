"""Where a configuration keeps its data, and what its services are called.

Exactly upstream's derivation, so both systems find the same buffers and databases:
    buffers   <bufferdir>/<project>[/<subproject>][/STAGE-<stage>]
    database  <database_dir>/<project>[/<subproject>][/STAGE-<stage>]/seamless.db
    key       <tool>-<cluster>-<mode>-<the same path with '/' as '--'>
Substages never split storage; they only distinguish job backends. A Dask server's key
also names its queue and node (upstream's does not, and reuses a cluster started for
another queue):
    daskserver-<cluster>-rw-<project path+stage+substage>--QUEUE-<queue>[--NODE-<node>]
    pure-daskserver-<cluster>-<project path+stage+substage>--QUEUE-<queue>[--NODE-<node>]
"""

import os


def project_subdir(resolved):
    path = "/" + resolved.project
    if resolved.subproject:
        path += "/" + resolved.subproject
    return path


def stage_dir(resolved):
    return "/STAGE-" + resolved.stage if resolved.stage else ""


def stage_subdir(resolved):
    if resolved.stage and resolved.substage:
        return stage_dir(resolved) + "SUBSTAGE-" + resolved.substage
    return stage_dir(resolved)


def _flat(path):
    return path.strip("/").replace("/", "--")


def frontend_for(resolved, service):
    """The first frontend of the cluster that runs `service` (or None)."""
    for frontend in resolved.definition["frontends"]:
        if service in frontend:
            return frontend
    return None


def bufferdir(resolved):
    """The buffer directory of this project/stage (as the service host sees it)."""
    frontend = frontend_for(resolved, "hashserver")
    if frontend is None:
        return None
    return frontend["hashserver"]["bufferdir"] + project_subdir(resolved) + stage_dir(resolved)


def database_file(resolved):
    frontend = frontend_for(resolved, "database")
    if frontend is None:
        return None
    return frontend["database"]["database_dir"] + project_subdir(resolved) + stage_dir(resolved) + "/seamless.db"


DASK_TOOLS = ("daskserver", "pure_daskserver")


def service_key(tool, resolved, mode="rw"):
    """The launcher key of a service (upstream's names; queue and node are part of a dask key)."""
    if tool == "pure_daskserver":
        return f"pure-daskserver-{resolved.cluster}-{key_suffix(tool, resolved, mode)}"
    return f"{tool}-{resolved.cluster}-{'rw' if tool in ('jobserver', 'daskserver') else mode}-" \
           f"{key_suffix(tool, resolved, mode)}"


def key_suffix(tool, resolved, mode="rw"):
    """The part of a service key after <tool>-<cluster>-<mode>-: where it works."""
    if tool in ("hashserver", "database"):
        return _flat(project_subdir(resolved) + stage_dir(resolved))
    suffix = _flat(project_subdir(resolved) + stage_subdir(resolved))
    if tool in DASK_TOOLS:  # one cluster per queue and node: their jobs differ
        suffix += f"--QUEUE-{resolved.queue}" if resolved.queue else ""
        suffix += f"--NODE-{resolved.node}" if resolved.node else ""
    return suffix


def local_path(path):
    """A path as this machine sees it (~ expanded)."""
    return os.path.abspath(os.path.expanduser(path))
