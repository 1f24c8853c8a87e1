"""Which stores this process uses: the one place that decides.

1. SEAMLESS_CACHE=/path: a local cache there (upstream's shortcut; it wins over the rest).
2. SEAMLESS_REMOTE_CLIENTS: exactly the hashservers, databases and directories it names.
3. seamless.yaml / seamless.profile.yaml: the selected cluster's storage for the project
   and stage; used directly when the cluster is this machine (local_cluster), else
   through its hashserver and database, started here when the frontend is this host.
4. Nothing at all: the zero-config cache in ${XDG_CACHE_HOME:-~/.cache}/seamless.

Tools call open_stores(); seamless.config (the Python API) keeps the result in force.
"""

import os

from seamless.store.clients import StoreSet


def env_clients(environ=None):
    """The SEAMLESS_REMOTE_CLIENTS text when it applies (SEAMLESS_CACHE wins), else None."""
    environ = os.environ if environ is None else environ
    if environ.get("SEAMLESS_CACHE"):
        return None
    return environ.get("SEAMLESS_REMOTE_CLIENTS") or None


def cache_root(environ=None) -> str:
    environ = os.environ if environ is None else environ
    if environ.get("SEAMLESS_CACHE"):
        return os.path.abspath(os.path.expanduser(environ["SEAMLESS_CACHE"]))
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "seamless")


def open_stores(destination=None, writable=True, check=None, resolved=None, **selection) -> StoreSet:
    """The stores a tool works with: a buffer directory given directly (`destination`),
    or the active stores. `selection` (workdir, stage, substage, choices) picks the
    configuration, unless it is given `resolved`; `check(resolved)` may refuse it (an
    execution mode a tool lacks)."""
    if destination:
        from seamless.store.directory import DirectoryStore

        store = DirectoryStore(destination, writable=writable, create=writable)
        return StoreSet([store], [store] if writable else [])
    clients = env_clients()
    if clients is not None:
        return StoreSet.from_clients(clients, in_remote=True)
    if resolved is None:
        resolved = resolve_config(**selection)
    if check is not None:
        check(resolved)
    return stores_for(resolved)


def resolve_config(environ=None, workdir=".", stage=None, substage=None, choices=None):
    """The resolved configuration; zero-config becomes the default cache "cluster"."""
    from seamless.config.resolve import resolve

    environ = os.environ if environ is None else environ
    resolved = resolve(workdir, stage, substage, choices, environ)
    cached = dict(environ, SEAMLESS_CACHE=cache_root(environ))
    if resolved is None:  # no configuration at all: the zero-config cache
        return resolve(workdir, stage, substage, _storage_choices(choices or {}), cached)
    if not resolved.persistent:  # a configuration without persistent storage: keep results here
        names = {"project": resolved.project, "subproject": resolved.subproject}
        resolved.store_in = resolve(workdir, stage, substage, _storage_choices(names), cached)
    return resolved


def _storage_choices(choices):
    return {k: v for k, v in choices.items() if k in ("project", "subproject") and v}


def stores_for(resolved) -> StoreSet:
    """The stores of a resolved configuration: its directory and database file when the
    cluster is this machine, else its servers (found running, or started)."""
    from seamless.config import storage

    limit = max_size(resolved)
    resolved = resolved.store_in or resolved
    if resolved.local:
        buffers = storage.bufferdir(resolved)
        database = storage.database_file(resolved)
        if buffers is None or database is None:
            from seamless.config.errors import ConfigError

            raise ConfigError(f"cluster '{resolved.cluster}' needs a hashserver (bufferdir) and a database "
                              "(database_dir) on a frontend to store results")
        stores = StoreSet.local_store(storage.local_path(buffers), storage.local_path(database))
        stores.max_size = limit
        return stores
    return StoreSet.from_clients(served_clients(resolved))


def max_size(resolved=None, environ=None):
    """The bytes a local cache may hold: $SEAMLESS_CACHE_MAX_SIZE, else the configuration's
    max_size, else None (no bound)."""
    from seamless.sizes import parse_size

    environ = os.environ if environ is None else environ
    text = environ.get("SEAMLESS_CACHE_MAX_SIZE", "").strip()
    if not text:
        return parse_size(resolved.max_size) if resolved is not None and resolved.max_size else None
    try:
        size = parse_size(text)
    except ValueError as exc:
        from seamless.config.errors import ConfigError

        raise ConfigError(f"SEAMLESS_CACHE_MAX_SIZE: {exc}") from None
    return size if size > 0 else None


def jobserver_for(resolved) -> dict:
    """The connection (url, token_file) to the cluster's job server, found running or
    launched here or on its frontend; it is handed the cluster's stores as served over
    HTTP, which it starts first."""
    from seamless.config import tools

    spec = tools.render("jobserver", resolved, "rw")
    spec["parameters"] = {**served_clients(resolved, for_workers=True), "record": bool(resolved.record)}
    return _launch(spec)


def daskserver_for(resolved) -> dict:
    """The connection to the configuration's Dask server (url tcp://host:port of its
    scheduler, hostname, port, dashboard_port), found running or launched here or on its
    frontend: a plain Dask cluster in a pure Dask stage, else one of Seamless workers.
    Its parameters come from the selected queue; it needs no stores of its own."""
    from seamless.config import tools

    return _launch(tools.render("pure_daskserver" if resolved.pure_dask else "daskserver", resolved, "rw"))


def _launch(spec) -> dict:
    """The connection to a service, found running or started; a launch failure as a ConfigError."""
    from seamless.config.errors import ConfigError
    from seamless.launch.client import ensure
    from seamless.launch.executor import LaunchError

    try:
        return ensure(spec)
    except LaunchError as exc:
        raise ConfigError(str(exc)) from None


def served_clients(resolved, for_workers=False) -> dict:
    """{"buffer": [...], "database": [...]}: the cluster's hashserver and database as
    served over HTTP, started here or on the frontend over ssh when none is running.
    `for_workers` adds what a worker elsewhere needs (remote_url, the buffer directory)."""
    from concurrent.futures import ThreadPoolExecutor

    from seamless.config import tools
    from seamless.launch.host import url_of

    specs = {tool: tools.render(tool, resolved, "rw") for tool in ("hashserver", "database")}
    with ThreadPoolExecutor(2) as starting:  # both at once: a launch is mostly waiting
        launched = {tool: starting.submit(_launch, spec) for tool, spec in specs.items()}
    clients = {"buffer": [], "database": []}
    for tool, section in (("hashserver", "buffer"), ("database", "database")):
        spec = specs[tool]
        connection = launched[tool].result()
        entry = {"url": connection["url"], "readonly": False}
        if connection.get("token_file"):  # services the launcher starts require their token
            entry["token_file"] = connection["token_file"]
        if for_workers:  # as seen from the service host (a tunnel's far end), with its token file there
            tunneled = connection.get("tunneled-port")
            entry["remote_url"] = url_of(connection["tunneled-host"], tunneled) if tunneled else connection["url"]
            if connection.get("remote_token_file"):
                entry["remote_token_file"] = connection["remote_token_file"]
            if tool == "hashserver":
                entry["remote_directory"] = spec["workdir"]
                if resolved.local:
                    entry["directory"] = os.path.expanduser(spec["workdir"])
        clients[section].append(entry)
    return clients
