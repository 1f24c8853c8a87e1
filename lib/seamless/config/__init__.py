"""seamless.config: which configuration is in force for this process (upstream's API).

    import seamless.config
    seamless.config.init()                 # read seamless.yaml here; choose the stores
    seamless.config.set_stage("prod")      # re-read for another stage
    seamless.config.stores()               # the StoreSet now in force
    seamless.config.dask_client()          # in a pure Dask stage: its distributed.Client

Errors surface as ConfigError (a ValueError) instead of being swallowed. Unlike
upstream: init(workdir=...) honours its argument, every set_stage/set_substage
re-evaluates from the files (nothing stale survives a stage change) and re-activates.
The stores in force are handed to seamless.cache (use_stores), where the Python API
reads and writes them; which stores a configuration means is seamless.session's rule.
"""

import os

from seamless.config.errors import ConfigError

_state = {
    "workdir": None, "stage": None, "substage": None, "choices": {}, "nparallel": None,
    "resolved": None, "remote_clients": None, "initialized": False, "stop_keepalive": None,
    "dask_client": None, "dask_address": None,
}

__all__ = ["ConfigError", "init", "set_stage", "set_substage", "set_workdir", "set_nparallel",
           "get_nparallel", "collect_remote_clients", "set_remote_clients", "set_remote_clients_from_env",
           "select", "stores", "current", "in_force", "dask_client"]


def init(*, workdir=None):
    """Evaluate the configuration (once; later calls only apply a new workdir)."""
    if workdir is not None:
        set_workdir(workdir)
    if _state["initialized"] and workdir is None:
        return current()
    return set_stage(_state["stage"], _state["substage"])


def set_workdir(path=None):
    """The directory whose seamless.yaml applies (default: the current directory)."""
    _refuse_after_remote_clients("set_workdir")
    _state["workdir"] = os.path.abspath(path) if path is not None else None
    if _state["initialized"]:
        set_stage(_state["stage"], _state["substage"])


def set_stage(stage=None, substage=None, *, workdir=None):
    """Select a stage (and substage), re-read the configuration and activate its stores."""
    from seamless.session import env_clients, jobserver_for, open_stores, resolve_config

    _refuse_after_remote_clients("set_stage")
    if workdir is not None:
        _state["workdir"] = os.path.abspath(workdir)
    resolved = resolve_config(workdir=_state["workdir"] or os.getcwd(), stage=stage, substage=substage,
                              choices=_state["choices"])
    _state.update(stage=stage, substage=substage, resolved=resolved, initialized=True)
    _activate(open_stores(resolved=resolved))
    pure_dask = resolved.pure_dask and env_clients() is None
    if not pure_dask:
        _close_dask()  # the Dask cluster of a stage left behind is not used by accident
    if env_clients() is None:  # up now, as upstream's init does; the first miss then only connects
        if resolved.execution == "remote" and resolved.remote == "jobserver":
            jobserver_for(resolved)
        elif pure_dask:
            _connect_dask(resolved)
    return resolved


def dask_client():
    """The distributed.Client of a pure Dask stage: connected by init() to the stage's
    plain Dask cluster (launched if needed), and the default client of this process."""
    resolved = current()
    if resolved is None or not resolved.pure_dask:
        if not (resolved and resolved.files):
            what = "no configuration files"
        else:
            what = f"cluster '{resolved.cluster}', execution {resolved.execution}" if resolved.cluster else "no cluster"
        raise ConfigError(f"dask_client(): the configuration in force is not a pure Dask one ({what}); a pure Dask "
                          "stage selects a cluster with a daskserver, execution: remote and remote: daskserver, "
                          "and pure_dask: true in the frontend's daskserver block (or persistent: false); "
                          "if it is a stage of seamless.yaml, select it first: seamless.config.set_stage(NAME)")
    client = _state["dask_client"]
    return client if client is not None and client.status == "running" else _connect_dask(resolved)


def _connect_dask(resolved):
    """The client of the stage's pure Dask cluster (found running, or launched): the one
    connected already while it is connected to that cluster (a re-evaluation of the
    same stage keeps its futures), else a new one."""
    from seamless.session import daskserver_for

    address = daskserver_for(resolved)["url"]
    client = _state["dask_client"]
    if client is None or client.status != "running" or _state["dask_address"] != address:
        from seamless.dask.connect import connect

        _close_dask()
        _state.update(dask_client=connect(address), dask_address=address)
    return _state["dask_client"]


def _close_dask():
    client = _state["dask_client"]
    _state.update(dask_client=None, dask_address=None)
    if client is not None:
        client.close(timeout=2)


def _activate(stores):
    """Make `stores` the ones in force; keep their servers alive while this process lives."""
    from seamless.cache import cache

    if _state["stop_keepalive"]:
        _state["stop_keepalive"]()
    cache.use_stores(stores)
    _state["stop_keepalive"] = stores.keepalive() if stores is not None else None


def set_substage(substage=None):
    return set_stage(_state["stage"], substage)


def select(**choices):
    """Explicit choices (project, subproject, cluster, execution, queue, remote, persistent,
    record, node, nparallel) that override the files' commands; None clears one."""
    for key, value in choices.items():
        if value is None:
            _state["choices"].pop(key, None)
        else:
            _state["choices"][key] = value
    if _state["initialized"]:
        set_stage(_state["stage"], _state["substage"])


def set_nparallel(n):
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"nparallel must be an integer >= 1, not {n!r}")
    _state["nparallel"] = n


def get_nparallel():
    """How many transformations may run at once: set_nparallel, the config's nparallel,
    else what executes them can run at once (a job server's workers x throttle, a Dask
    cluster's maximum_jobs x cores x throttle, or the CPU count here)."""
    if _state["nparallel"] is not None:
        return _state["nparallel"]
    resolved = _state["resolved"]
    if resolved is not None and resolved.nparallel is not None:
        return resolved.nparallel
    if resolved is not None and resolved.execution == "remote" and _state["remote_clients"] is None:
        from seamless.config.clusters import transformation_throttle

        if resolved.remote == "daskserver" and not resolved.pure_dask:
            from seamless.config.queues import wrapper_parameters

            queue = wrapper_parameters(resolved)
            per_job = 1 if queue.get("exclusive") else int(queue.get("cores") or 1) * transformation_throttle()
            return per_job * int(queue.get("maximum_jobs") or 1)
        return ((resolved.definition or {}).get("workers") or 1) * transformation_throttle()
    return os.cpu_count() or 1


def current():
    """The resolved configuration in force (evaluating it if needed)."""
    if not _state["initialized"] and _state["remote_clients"] is None:
        init()
    return _state["resolved"]


def stores():
    """The StoreSet in force."""
    from seamless.cache import cache

    if cache.stores() is None:
        init()
    return cache.stores()


def in_force():
    """The resolved configuration in force, without evaluating one: None before init(),
    and when remote clients were set explicitly (no configuration applies then)."""
    return _state["resolved"] if _state["initialized"] and _state["remote_clients"] is None else None


def collect_remote_clients(cluster=None):
    """{"buffer": [...], "database": [...]} for workers: the current configuration's
    stores as served over HTTP (starting the services here when needed)."""
    from seamless.session import served_clients

    resolved = current()
    if resolved is None:
        raise ConfigError("no configuration: call seamless.config.init() first")
    if cluster is not None and cluster != resolved.cluster:
        raise ConfigError(f"cluster {cluster!r} is not the selected cluster ({resolved.cluster!r})")
    return served_clients(resolved, for_workers=True)


def set_remote_clients(clients, in_remote=False):
    """Use exactly these stores (the SEAMLESS_REMOTE_CLIENTS shape) from now on."""
    from seamless.store.clients import StoreSet

    _activate(StoreSet.from_clients(clients, in_remote=in_remote))
    _state["remote_clients"] = clients
    _state["initialized"] = True


def set_remote_clients_from_env(include_dask=False):
    """Apply SEAMLESS_REMOTE_CLIENTS (unless SEAMLESS_CACHE is set); True if applied.
    Errors in it are raised, not swallowed."""
    from seamless.session import env_clients

    text = env_clients()
    if text is None:
        return False
    set_remote_clients(text, in_remote=True)
    return True


def _refuse_after_remote_clients(what):
    if _state["remote_clients"] is not None:
        raise ConfigError(f"{what}: remote clients were set explicitly; the configuration files no longer apply")


def _reset():
    """Forget everything (for tests)."""
    _activate(None)
    _close_dask()
    _state.update(stop_keepalive=None, workdir=None, stage=None, substage=None, choices={}, nparallel=None, resolved=None,
                  remote_clients=None, initialized=False)
