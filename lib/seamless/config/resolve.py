"""From the config files, the stage and explicit choices to one resolved configuration.

Every evaluation starts from the files alone: nothing carries over from a previous
stage (upstream keeps a stage's cluster and project after leaving it). Explicit
choices (command-line options, API calls) apply on top of the files' commands.
"""

import os

from seamless.config.clusters import load_cluster_files, split_clusters, validate_cluster
from seamless.config.errors import ConfigError, did_you_mean
from seamless.config.language import REMOTES, _check, _check_name, config_files, entries
from seamless.config.storage import frontend_for

CACHE_CLUSTER = "__SEAMLESS_CACHE__"
TOPLEVEL = "__TOPLEVEL__"
CHOICES = ("project", "subproject", "cluster", "execution", "queue", "remote", "persistent", "record",
           "node", "nparallel")


class Resolved:
    """The configuration in force: where data is stored and where work runs."""

    def __init__(self):
        self.cluster = None  # name
        self.definition = None  # the validated cluster definition
        self.local = False  # the cluster is this machine (local_cluster, or SEAMLESS_CACHE)
        self.project = self.subproject = self.stage = self.substage = None
        self.execution = "process"
        self.persistent = False
        self.queue = None
        self.remote = None  # "jobserver" | "daskserver" | None
        self.pure_dask = False  # a plain Dask cluster for the user's own futures (seamless.config.dask_client)
        self.record = False
        self.node = None
        self.nparallel = None
        self.max_size = None  # bytes the local cache may hold (seamless-cache gc), as written
        self.files = []
        self.clusters = {}
        self.sources = {}  # cluster name -> the file that defined it (for messages)
        self.warnings = []
        self.store_in = None  # where results go when this configuration has no persistent storage


def resolve(workdir=".", stage=None, substage=None, choices=None, environ=None, read_yaml=None):
    """The configuration for workdir in `stage`, or None when there is none at all."""
    environ = os.environ if environ is None else environ
    choices = {k: v for k, v in (choices or {}).items() if v is not None}
    for key in choices:
        if key not in CHOICES:
            raise ConfigError(f"unknown configuration choice {key!r}")
    for name, value in (("stage", stage), ("substage", substage)):
        if value is not None:
            _check_name(value, name, f"--{name}")
    result = Resolved()
    result.stage, result.substage = stage or None, substage or None

    if environ.get("SEAMLESS_CACHE", "").strip():
        if choices.get("queue"):
            raise ConfigError("--queue: SEAMLESS_CACHE is a local cache without queues (unset it to use "
                              "a cluster's queues)")
        return _seamless_cache(result, environ["SEAMLESS_CACHE"], choices)

    if read_yaml is None:
        from seamless.config.yamlfiles import YamlReader

        read_yaml = YamlReader()
    files = config_files(workdir, read_yaml)
    if not files and not choices:
        return None
    result.files = files
    active, stages = entries(files, read_yaml, stage)
    if files and result.stage is not None and result.stage not in stages:
        raise ConfigError(_unknown_stage(result.stage, stages, files))
    known, local = load_cluster_files(environ.get("HOME"), read_yaml)
    for entry in active:
        if entry.name == "clusters":
            found, inline_local = split_clusters(entry.value, f"{entry.path} (clusters:)")
            known.update(found)
            if inline_local:
                local = (inline_local, f"{entry.path} (clusters:)")
    clusters = {name: validate_cluster(name, definition, source) for name, (definition, source) in known.items()}
    if local is not None:
        local, source = local
        if local not in clusters:
            raise ConfigError(f"{source}: local_cluster '{local}' is not a defined cluster "
                              f"({', '.join(clusters) or 'none'})")
    result.clusters = clusters
    result.sources = {name: source for name, (_, source) in known.items()}
    explicit = set()
    for entry in active:
        if entry.name == "clusters":
            continue
        _apply(result, entry.name, entry.value, clusters, entry.fail)
        explicit.add(entry.name)
    for name, value in choices.items():
        problem = _check(name, value)
        if problem:
            raise ConfigError(f"--{name} {value!r}: expects {problem}")
        if name == "queue" and result.cluster is None:
            raise ConfigError(f"--queue {value}: no cluster is selected (select one in seamless.yaml, or "
                              "choose a --stage that selects one)")
        _apply(result, name, value, clusters, lambda p, n=name, v=value: ConfigError(f"--{n} {v}: {p}"))
        explicit.add(name)
    if getattr(read_yaml, "save", None):
        read_yaml.save()
    return _finish(result, explicit, local)


def _unknown_stage(stage, stages, files):
    """A stage no block names would silently run with the defaults, in storage of its own."""
    hint = did_you_mean(stage, stages, f"its stages: {', '.join(sorted(stages))}" if stages else
                        f"add a `- stage {stage}:` block to say what it selects")
    where = ", ".join(files)
    if not stages:
        return f"stage '{stage}' is not defined: the configuration ({where}) defines no stages; {hint}"
    return f"stage '{stage}' is not defined: no `- stage {stage}:` block in {where}; {hint}"


def _apply(result, name, value, clusters, fail):
    if name == "cluster":
        if value is not None and value not in clusters:
            hint = did_you_mean(value, clusters, f"defined clusters: {', '.join(sorted(clusters))}" if clusters else
                                "no clusters are defined (~/.seamless/clusters.yaml, or `- clusters:`)")
            raise fail(f"unknown cluster '{value}'; {hint}")
        if value != result.cluster:
            result.queue = None  # a queue belongs to its cluster
        result.cluster = value
    elif name == "queue":
        if result.cluster is None:
            raise fail("select a cluster before its queue (put `- cluster: NAME` above it)")
        queues = clusters[result.cluster]["queues"]
        if value not in queues:
            hint = did_you_mean(value, queues, f"its queues: {', '.join(queues) or 'none'}")
            raise fail(f"cluster '{result.cluster}' has no queue '{value}'; {hint}")
        result.queue = value
    else:
        if name in ("project", "subproject"):
            try:
                _check_name(value, name, "")
            except ConfigError as exc:
                raise fail(str(exc).lstrip(": ")) from None
        setattr(result, name, value)


def _finish(result, explicit, local):
    cluster = result.cluster
    if cluster is not None:
        result.definition = result.clusters[cluster]
        result.local = cluster == local
    if "execution" not in explicit:
        result.execution = "remote" if cluster else "process"
    if "persistent" not in explicit:
        result.persistent = cluster is not None
    if result.execution == "remote" and cluster is None:
        raise ConfigError(f"{_files(result)}: execution is 'remote' but no cluster is selected; "
                          "add `- cluster: NAME` (or use execution: process)")
    if result.persistent and cluster is None:
        raise ConfigError(f"{_files(result)}: persistent is true but no cluster is selected; "
                          "add `- cluster: NAME`, or drop persistent (zero-config caching needs no cluster)")
    if cluster is not None and result.persistent and not result.project:
        raise ConfigError(f"{_files(result)}: cluster '{cluster}' stores data per project, but no project is "
                          "selected; add `- project: NAME`")
    if result.queue is None and cluster is not None:
        result.queue = result.definition.get("default_queue")
    if result.execution == "remote":
        if "execution" not in explicit and "remote" not in explicit and not _backends(result):
            result.execution = "process"  # nothing to run remotely on: upstream stays silent
            result.warnings.append(f"cluster '{cluster}' has no jobserver or daskserver: running in "
                                   "process (say `- execution: process` to silence this)")
        else:
            result.remote = _remote_target(result, "remote" in explicit)
    if result.execution == "remote" and result.remote == "daskserver":
        # upstream's docs select pure Dask in the daskserver block, its code by persistent: false
        block = frontend_for(result, "daskserver")["daskserver"]
        result.pure_dask = bool(block.get("pure_dask")) or not result.persistent
    if result.execution == "spawn" and cluster is not None and not result.local:
        result.warnings.append(f"execution: spawn starts workers on this machine, not on cluster '{cluster}'")
    return result


def _backends(result):
    return [s for s in REMOTES if any(s in f for f in result.definition["frontends"])]


def _remote_target(result, explicit):
    offered = _backends(result)
    if explicit and result.remote is not None:
        if result.remote not in offered:
            raise ConfigError(f"{_files(result)}: remote: {result.remote}, but cluster '{result.cluster}' "
                              f"has no {result.remote} on any frontend")
        return result.remote
    if len(offered) == 2:
        raise ConfigError(f"{_files(result)}: cluster '{result.cluster}' offers both a jobserver and a "
                          "daskserver; choose with `- remote: jobserver` or `- remote: daskserver`")
    if not offered:
        raise ConfigError(f"{_files(result)}: execution is 'remote' but cluster '{result.cluster}' has no "
                          "jobserver or daskserver; add one to a frontend, or use execution: process")
    return offered[0]


def _files(result):
    return ", ".join(result.files) or "configuration"


def _seamless_cache(result, path, choices):
    """Upstream's SEAMLESS_CACHE shortcut: a local cluster on that directory."""
    root = os.path.abspath(os.path.expanduser(path))
    result.cluster = CACHE_CLUSTER
    result.definition = {"type": "local", "frontends": [
        {"hostname": "localhost", "hashserver": {"bufferdir": root}, "database": {"database_dir": root}}],
        "queues": {}}
    result.clusters = {CACHE_CLUSTER: result.definition}
    result.sources = {CACHE_CLUSTER: "SEAMLESS_CACHE"}
    result.local = True
    result.project = choices.get("project") or TOPLEVEL
    result.subproject = choices.get("subproject")
    result.execution = choices.get("execution", "process")
    result.persistent = True
    result.nparallel = choices.get("nparallel")
    return result
