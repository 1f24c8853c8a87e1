"""Cluster definitions: ~/.seamless/clusters.yaml, ~/.seamless/clusters/*.yaml, inline clusters:.

The schema is upstream seamless-config's (cluster, frontend, service and queue keys,
queue TEMPLATE inheritance, local_cluster), validated with messages that name the file,
the cluster and the key, and suggest the nearest valid key. Fixes: the documented
`daskserver: {pure_dask: true}` is accepted, `job_script_prologue` works in queues, and
a duration YAML reads as a number (an unquoted 1:00:00 is 3600) is refused, not sent
to the batch system as minutes. Keys of our own: `token: false` starts the cluster's
services without a token; queues take `resource_spec` and `internal_port_range`.
"""

import os

from seamless.config.errors import ConfigError, did_you_mean


def transformation_throttle() -> int:
    """How many transformations one worker runs at once: upstream's
    $SEAMLESS_WORKER_TRANSFORMATION_THROTTLE, default 3."""
    try:
        return max(1, int(os.environ.get("SEAMLESS_WORKER_TRANSFORMATION_THROTTLE", "3")))
    except ValueError:
        return 3

CLUSTER_KEYS = {"frontends", "type", "tunnel", "token", "workers", "default_queue", "queues",
                "memory_per_core_property_name"}
CLUSTER_TYPES = ("local", "slurm", "oar", "pbs")
FRONTEND_KEYS = {"hostname", "ssh_hostname", "hashserver", "database", "jobserver", "daskserver"}
SERVICE_KEYS = {
    "hashserver": ({"bufferdir"}, {"conda", "network_interface", "port_start", "port_end"}),
    "database": ({"database_dir"}, {"conda", "network_interface", "port_start", "port_end"}),
    "jobserver": (set(), {"conda", "network_interface", "port_start", "port_end"}),
    "daskserver": (set(), {"network_interface", "port_start", "port_end", "pure_dask", "conda"}),
}
QUEUE_KEYS = {"conda", "walltime", "cores", "job_cores", "memory", "tmpdir", "partition", "project",
              "maximum_jobs", "unknown_task_duration", "target_duration", "lifetime_stagger", "lifetime",
              "worker_threads", "processes", "interactive", "exclusive", "job_extra_directives",
              "dask_resources", "extra_dask_config", "job_script_prologue", "resource_spec",
              "internal_port_range", "TEMPLATE"}
QUEUE_TYPES = {"cores": int, "job_cores": int, "maximum_jobs": int, "worker_threads": int, "processes": int,
               "interactive": bool, "exclusive": bool, "job_extra_directives": list,
               "dask_resources": dict, "extra_dask_config": dict, "job_script_prologue": list,
               "conda": str, "memory": str, "tmpdir": str, "partition": str, "project": str, "resource_spec": str}
DURATIONS = ("walltime", "lifetime", "lifetime_stagger", "unknown_task_duration", "target_duration")


def _unknown(where, key, valid):
    hint = did_you_mean(key, valid, f"valid keys: {', '.join(sorted(valid))}")
    return ConfigError(f"{where}: unknown key '{key}'; {hint}")


def _check_keys(mapping, valid, where):
    for key in mapping:
        if key not in valid:
            raise _unknown(where, key, valid)


def validate_cluster(name, cluster, source):
    """Check one cluster definition; return it normalized (queue templates applied)."""
    where = f"{source}: cluster '{name}'"
    if not _plain_name(name):
        raise ConfigError(f"{where}: a cluster name must use letters, digits, '.', '_' and '-' only")
    if not isinstance(cluster, dict):
        raise ConfigError(f"{where}: a cluster must be a mapping with at least 'frontends'")
    _check_keys(cluster, CLUSTER_KEYS, where)
    ctype = cluster.get("type")
    if ctype is not None and ctype not in CLUSTER_TYPES:
        raise ConfigError(f"{where}: type must be one of {', '.join(CLUSTER_TYPES)}, not {ctype!r}")
    if "frontends" not in cluster:
        raise ConfigError(f"{where}: 'frontends' is required (a list of frontends with their services)")
    frontends = cluster["frontends"]
    if not isinstance(frontends, list) or not frontends:
        raise ConfigError(f"{where}: 'frontends' must be a non-empty list")
    out = dict(cluster)
    out["frontends"] = [_frontend(f, i, ctype, where) for i, f in enumerate(frontends)]
    for key, kind, what in (("tunnel", bool, "true or false"), ("token", bool, "true or false"),
                            ("workers", int, "an integer")):
        if cluster.get(key) is not None and not _is(cluster[key], kind):
            raise ConfigError(f"{where}: '{key}' must be {what}, not {cluster[key]!r}")
    queues = cluster.get("queues") or {}
    if not isinstance(queues, dict):
        raise ConfigError(f"{where}: 'queues' must be a mapping of queue name to settings")
    out["queues"] = _queues(queues, ctype, where)
    default = cluster.get("default_queue")
    if default is not None and default not in out["queues"]:
        raise ConfigError(f"{where}: default_queue '{default}' is not one of its queues "
                          f"({', '.join(out['queues']) or 'none defined'})")
    return out


_KIND_NAMES = {int: "an integer", bool: "true or false", list: "a list", dict: "a mapping", str: "a string"}


def _plain_name(name):
    return (isinstance(name, str) and bool(name) and "--" not in name
            and all(c.isascii() and (c.isalnum() or c in "._-") for c in name))


def _port_range(value):
    if isinstance(value, str):
        value = value.split(":")
        if not all(v.isdigit() for v in value):
            return False
        value = [int(v) for v in value]
    return (isinstance(value, list) and len(value) == 2 and all(_is(v, int) and 0 < v < 65536 for v in value)
            and value[0] <= value[1])


def _is(value, kind):
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _frontend(frontend, i, ctype, where):
    where = f"{where}, frontend {i + 1}"
    if not isinstance(frontend, dict):
        raise ConfigError(f"{where}: a frontend must be a mapping (hostname, services)")
    _check_keys(frontend, FRONTEND_KEYS, where)
    out = dict(frontend)
    if "hostname" not in frontend:
        if ctype != "local":
            raise ConfigError(f"{where}: 'hostname' is required unless the cluster has type: local")
        out["hostname"] = "localhost"
    for service, (required, optional) in SERVICE_KEYS.items():
        if service not in frontend:
            continue
        spec = frontend[service] or {}
        swhere = f"{where}, {service}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{swhere}: must be a mapping")
        _check_keys(spec, required | optional, swhere)
        for key in required:
            if key not in spec:
                raise ConfigError(f"{swhere}: '{key}' is required")
        if ("port_start" in spec) != ("port_end" in spec):
            raise ConfigError(f"{swhere}: 'port_start' and 'port_end' must both be set or both be omitted")
        for key in ("port_start", "port_end"):
            if key in spec and not (_is(spec[key], int) and 1 <= spec[key] <= 65535):
                raise ConfigError(f"{swhere}: '{key}' must be a port number, not {spec[key]!r}")
        if "port_start" in spec and spec["port_start"] > spec["port_end"]:
            raise ConfigError(f"{swhere}: port_start is above port_end")
        if spec.get("pure_dask") is not None and not isinstance(spec["pure_dask"], bool):
            raise ConfigError(f"{swhere}: 'pure_dask' must be true or false, not {spec['pure_dask']!r}")
        out[service] = dict(spec)
    return out


def _queues(queues, ctype, where):
    done = {}
    for name, queue in queues.items():
        qwhere = f"{where}, queue '{name}'"
        if not _plain_name(name):  # it is part of the daskserver's key
            raise ConfigError(f"{qwhere}: a queue name must use letters, digits, '.', '_' and '-' only (no '--')")
        if not isinstance(queue, dict):
            raise ConfigError(f"{qwhere}: must be a mapping of settings")
        queue = {str(k).replace("-", "_"): v for k, v in queue.items()}
        _check_keys(queue, QUEUE_KEYS, qwhere)
        template = queue.pop("TEMPLATE", None)
        if template is not None:
            if template not in done:
                raise ConfigError(f"{qwhere}: TEMPLATE '{template}' is not a queue defined above it "
                                  f"({', '.join(done) or 'none'})")
            queue = {**done[template], **queue}
        queue = {k: v for k, v in queue.items() if v is not None}
        for key, kind in QUEUE_TYPES.items():
            if key in queue and not _is(queue[key], kind):
                raise ConfigError(f"{qwhere}: '{key}' must be {_KIND_NAMES[kind]}, not {queue[key]!r}")
        for key in DURATIONS:
            if key in queue and not isinstance(queue[key], str):
                raise ConfigError(f"{qwhere}: '{key}' must be a quoted duration such as \"01:00:00\" or \"30m\", "
                                  f"not {queue[key]!r} (YAML reads an unquoted 1:00:00 as the number 3600)")
        ports = queue.get("internal_port_range")
        if ports is not None and not _port_range(ports):
            raise ConfigError(f"{qwhere}: 'internal_port_range' must be [FIRST, LAST] or \"FIRST:LAST\" (ports), "
                              f"not {ports!r}")
        if queue.get("exclusive"):
            if "job_cores" in queue:
                raise ConfigError(f"{qwhere}: 'job_cores' must not be set in exclusive mode")
            if ctype == "local" and "cores" not in queue:
                raise ConfigError(f"{qwhere}: 'cores' is required for an exclusive queue of a local cluster")
        elif ctype != "local" and "cores" not in queue:
            raise ConfigError(f"{qwhere}: 'cores' is required when 'exclusive' is not set")
        done[name] = queue
    return done


def load_cluster_files(home=None, read_yaml=None):
    """{cluster name: (definition, source)} and (local_cluster, its file) from ~/.seamless."""
    home = home or os.environ.get("HOME") or os.path.expanduser("~")
    base = os.path.join(home, ".seamless")
    paths = [os.path.join(base, "clusters.yaml")]
    directory = os.path.join(base, "clusters")
    if os.path.isdir(directory):
        paths += [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n.endswith((".yaml", ".yml"))]
    clusters, local = {}, None
    for path in paths:
        if not os.path.isfile(path):
            continue
        data = read_yaml(path)
        found, found_local = split_clusters(data, path)
        clusters.update(found)
        if found_local:
            local = (found_local, path)
    return clusters, local


def split_clusters(data, source):
    """({name: (definition, source)}, local_cluster or None) from one clusters mapping."""
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of cluster names to definitions")
    local = data.get("local_cluster")
    if local is not None and not isinstance(local, str):
        raise ConfigError(f"{source}: local_cluster must be the name of a cluster")
    return {name: (value, source) for name, value in data.items() if name != "local_cluster"}, local
