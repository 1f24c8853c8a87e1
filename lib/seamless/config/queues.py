"""A cluster's queue as the parameters of seamless-dask-wrapper (its status file's `parameters`).

The selected queue (else the cluster's default_queue), TEMPLATE already applied
(clusters.py), becomes the wrapper's parameters under upstream's names: the Dask
settings hyphenated (unknown-task-duration, target-duration, lifetime-stagger,
lifetime, dask-resources, internal-port-range), unset keys absent, and `conda` kept
for the launcher (the wrapper, and so its workers, run in that environment). Then:
  node       slurm: --nodelist=NODE; oar: the one directive -p host='NODE' (upstream
             writes -p and host='NODE' as two broken lines); pbs and local: refused
  exclusive  without cores, the whole node: slurm --exclusive, oar resource_spec
             /nodes=1, pbs -l place=excl. With cores the wrapper sizes the job
             (upstream also sends job_cores = cores, which its own wrapper rejects)
  local      cores defaults to the cluster's workers
  pure Dask  pure_dask: true, worker_threads 2 unless set, a local cluster's
             maximum_jobs defaults to its workers; exclusive and record do not apply
"""

from seamless.config.errors import ConfigError
from seamless.dask.parameters import ParameterError, build

HYPHENATED = ("unknown_task_duration", "target_duration", "lifetime_stagger", "dask_resources",
              "internal_port_range")
BATCH_TYPES = ("slurm", "oar", "pbs")


def _where(resolved):
    source = resolved.sources.get(resolved.cluster, "the cluster definition")
    return f"{source}: cluster '{resolved.cluster}'"


def queue_of(resolved):
    """(name, settings) of the queue a Dask server of `resolved` takes its jobs from."""
    queues = resolved.definition.get("queues") or {}
    if not queues:
        raise ConfigError(f"{_where(resolved)} defines no queues, and a daskserver takes its jobs' cores, memory "
                          "and walltime from one; add queues: {NAME: {cores: 4, memory: 8GB, walltime: "
                          "\"01:00:00\"}} and default_queue: NAME")
    name = resolved.queue
    if name is None:
        raise ConfigError(f"{_where(resolved)}: no queue is selected and the cluster has no default_queue; add "
                          f"`- queue: NAME` to seamless.yaml, or default_queue: NAME (its queues: {', '.join(queues)})")
    if name not in queues:
        raise ConfigError(f"{_where(resolved)} has no queue '{name}' (its queues: {', '.join(queues)})")
    return name, queues[name]


def wrapper_parameters(resolved, pure=False):
    """The wrapper's parameters for the Dask server of `resolved`: a Seamless one, or
    (pure) a plain Dask cluster."""
    name, queue = queue_of(resolved)
    definition = resolved.definition
    ctype = definition.get("type")
    where = f"{_where(resolved)}, queue '{name}'"
    if ctype not in ("local", *BATCH_TYPES):
        raise ConfigError(f"{_where(resolved)} has no type, and a daskserver needs one: add type: local, slurm, "
                          "oar or pbs")
    params = {(k.replace("_", "-") if k in HYPHENATED else k): v for k, v in queue.items() if k != "conda"}
    if definition.get("memory_per_core_property_name") is not None:
        params["memory_per_core_property_name"] = definition["memory_per_core_property_name"]
    workers = definition.get("workers")
    if ctype == "local" and "cores" not in params and workers is not None:
        params["cores"] = workers
    directives = list(params.get("job_extra_directives", []))
    if resolved.node:
        _add(directives, _node_directive(ctype, resolved.node, where))
    if pure:
        params.pop("exclusive", None)  # plain Dask workers: no Seamless exclusive mode
    exclusive = params.get("exclusive", False)
    if exclusive and "cores" not in params:  # the whole node (a local exclusive queue has cores)
        if ctype == "slurm":
            _add(directives, "--exclusive")
        elif ctype == "oar":
            params.setdefault("resource_spec", "/nodes=1")
        else:
            _add(directives, "-l place=excl")
    if directives:
        params["job_extra_directives"] = directives
    if "cores" not in params and not exclusive:
        fix = "set cores in the queue, or workers in the cluster" if ctype == "local" else "set cores in the queue"
        what = "a pure Dask job runs cores Dask worker processes" if pure else "cores is required"
        raise ConfigError(f"{where}: {what}; {fix}")
    if pure:
        params["pure_dask"] = True
        params.setdefault("worker_threads", 2)
        if ctype == "local" and workers is not None:
            params.setdefault("maximum_jobs", workers)
    else:
        params["record"] = bool(resolved.record)
    try:  # the wrapper's own checks, here, so that the error names the file and the queue
        build(params, system=None if ctype == "local" else ctype, local=ctype == "local")
    except ParameterError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return params


def conda_of(resolved):
    """The conda environment the Dask server runs in: its queue's, if it names one."""
    return queue_of(resolved)[1].get("conda")


def _add(directives, directive):
    if directive not in directives:
        directives.append(directive)


def _node_directive(ctype, node, where):
    if ctype == "slurm":
        return f"--nodelist={node}"
    if ctype == "oar":
        return f"-p host='{node}'"  # OAR takes the rest of the line as the SQL property filter
    if ctype == "local":
        raise ConfigError(f"{where}: node '{node}' is selected, but a type: local cluster is this one machine; "
                          "drop `node`")
    raise ConfigError(f"{where}: node '{node}' is selected, but node placement is for slurm and oar clusters; on "
                      "PBS name the host in the queue's job_extra_directives (e.g. '-l select=1:host=NODE' for "
                      "PBS Pro, '-l nodes=NODE' for Torque)")
