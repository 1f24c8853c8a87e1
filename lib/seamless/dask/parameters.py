"""Status-file parameters -> what a Dask cluster is started with. Pure: no dask import.

`build(parameters, ...)` validates the launcher's parameters (upstream seamless-dask-wrapper's
names and defaults) and derives everything else from them: the sizing of one job, the flat
dask config, the environment exports and prologue of a job script, the jobqueue config
section, the LocalCluster keyword arguments and the adaptive-scaling settings. A bad
parameter is a ParameterError whose text is one line naming it and the fix.

Where upstream is wrong, this does what a user expects (the man page lists each one): the
job-log directives go into the header, where the batch system reads them, not after the
user's prologue; every job finds the wrapper's own Python environment (PATH, CONDA_PREFIX),
whatever the batch system; with maximum_jobs 1 no worker lifetime is set at all; workers keep
the names dask_jobqueue gives them, so adaptive scaling can match workers to their jobs;
every extra_dask_config key reaches the workers.
"""

import json
import math
import os
import re
import shlex
import sys
from dataclasses import dataclass, field

from seamless.config.errors import did_you_mean
from seamless.dask.batch import BatchSystem, system as batch_system

DEFAULTS = {
    "transformation_throttle": 3,
    "unknown-task-duration": "1m",
    "target-duration": "10m",
    "lifetime-stagger": "4m",
    "tmpdir": "/tmp",
    "maximum_jobs": 1,
}
LIFETIME_GRACE = 60.0  # seconds between a worker's planned end and its job's walltime

PARAMETERS = (
    "walltime", "memory", "cores", "job_cores", "processes", "worker_threads", "transformation_throttle",
    "tmpdir", "partition", "project", "job_extra_directives", "job_script_prologue", "resource_spec",
    "memory_per_core_property_name", "unknown-task-duration", "target-duration", "internal-port-range",
    "lifetime-stagger", "lifetime", "dask-resources", "extra_dask_config", "interactive", "maximum_jobs",
    "exclusive", "pure_dask", "record",
)


class ParameterError(ValueError):
    """One line: which parameter, what is wrong, how to fix it."""


@dataclass
class Settings:
    """One job's sizing and the cluster's behaviour, all defaults applied."""
    cores: int            # Seamless workers per Dask worker (what the client should start)
    job_cores: int        # the batch job's CPU request
    processes: int        # Dask worker processes per job
    worker_threads: int   # threads per Dask worker
    throttle: int
    throttled: bool       # the thread count comes from the throttle: the workers are told it
    memory: str
    walltime: str | None
    tmpdir: str
    maximum_jobs: int
    minimum_jobs: int     # int(interactive)
    exclusive: bool
    pure_dask: bool
    record: bool
    lifetime: str | None          # None: no rolling restarts
    lifetime_stagger: str | None
    resources: dict | None
    target_duration: float        # seconds
    port_range: str | None        # "a:b" for worker and nanny ports, or None (any)


@dataclass
class Plan:
    settings: Settings
    system: BatchSystem
    dask_config: dict             # flat dotted keys, in upstream's order
    environment: dict             # SEAMLESS_* variables of the workers
    exports: list                 # "export NAME=value" lines of a job script
    jobqueue: dict                # one dask_jobqueue config section
    local_cluster: dict           # LocalCluster keyword arguments (no ports)
    adaptive: dict = field(default_factory=dict)


def build(parameters, *, system=None, host="127.0.0.1", scheduler_port=None, dashboard_port=None,
          port_range=None, log=None, local=False, environ=None, python=None) -> Plan:
    """Everything a cluster is started with, from the status file's parameters.

    system: "slurm", "oar", "pbs", ... (None: a cluster whose batch system is not known);
    port_range: the wrapper's --port-range (the default for worker and nanny ports);
    log: the status file's log path (job logs go next to it); local: a LocalCluster.
    """
    environ = os.environ if environ is None else environ
    python = python or sys.executable
    if not isinstance(parameters, dict):
        raise ParameterError("the status file's 'parameters' must be a JSON object")
    _check_names(parameters)
    p = {**DEFAULTS, **{k: v for k, v in parameters.items() if v is not None}}
    batch = batch_system(system)
    settings = _settings(p, port_range, local)
    flat = _dask_config(p, settings)
    environment = _environment_variables(settings)
    exports = [f"export {k}={v}" for k, v in environment.items()] + _dask_exports(flat)
    plan = Plan(settings=settings, system=batch, dask_config=flat, environment=environment, exports=exports,
                jobqueue=_jobqueue(p, settings, batch, exports, host, scheduler_port, dashboard_port, log,
                                   environ, python),
                local_cluster=_local_cluster(settings, host))
    plan.adaptive = _adaptive(settings, p)
    if batch.name == "oar" and not p.get("memory_per_core_property_name"):
        raise ParameterError("parameter 'memory_per_core_property_name' is required for OAR: set it to the "
                             "OAR resource property that holds memory per core (e.g. memcore), or "
                             "'not_applicable' if your OAR has none")
    return plan


def _check_names(parameters):
    for name in parameters:
        if name not in PARAMETERS:
            hint = did_you_mean(name, PARAMETERS, "see seamless-dask-wrapper(1) for the parameters")
            raise ParameterError(f"unknown parameter '{name}': {hint}")


def _settings(p, port_range, local) -> Settings:
    exclusive = boolean(p, "exclusive")
    pure = boolean(p, "pure_dask")
    if "memory" not in p and not local:
        raise ParameterError("parameter 'memory' is missing: set the memory of one job (e.g. memory: 8GB)")
    memory = str(p.get("memory", ""))
    if memory and not _MEMORY.match(memory):
        raise ParameterError(f"parameter 'memory' is {memory!r}: write a size such as 8GB, 54000MB or 16GiB")
    throttle = positive(p, "transformation_throttle")
    if exclusive:  # one transformation per job, which may use all of the job's cores
        if "job_cores" in p:
            raise ParameterError("parameter 'job_cores' must not be set in exclusive mode "
                                 "(the job has the whole node, or 'cores' cores)")
        cores = positive(p, "cores") if "cores" in p else 1
        job_cores, processes, default_threads = cores, 1, 2  # its one slot, and one for a nested task
    else:
        if "cores" not in p:
            raise ParameterError("parameter 'cores' is missing: set the cores of one job (or exclusive: true)")
        cores = positive(p, "cores")
        job_cores = positive(p, "job_cores") if "job_cores" in p else cores
        processes = positive(p, "processes") if "processes" in p else (cores if pure else 1)
        # a Seamless worker's threads: its slots, and as many again for nested tasks whose
        # parents wait (so no task has to leave the thread pool)
        default_threads = 2 if pure else 2 * cores * throttle
    threads = positive(p, "worker_threads") if "worker_threads" in p else default_threads
    maximum_jobs = positive(p, "maximum_jobs")
    for name in ("unknown-task-duration", "target-duration", "lifetime-stagger"):
        duration(p, name)
    if "walltime" not in p and not local:
        raise ParameterError("parameter 'walltime' is missing: set the walltime of one job (e.g. 01:00:00)")
    if "walltime" in p:
        duration(p, "walltime")  # checked also where no lifetime is derived from it
    lifetime, stagger = _lifetime(p, local, maximum_jobs)
    resources = p.get("dask-resources")
    if resources is not None:
        if not isinstance(resources, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                for k, v in resources.items()):
            raise ParameterError("parameter 'dask-resources' must map resource names to numbers (e.g. {\"GPU\": 1})")
        resources = dict(resources)
    if exclusive:
        resources = {**(resources or {}), "S": 1.0}
    scale = (resources or {}).get("S") or (1 if exclusive else cores)
    if not (pure or exclusive):  # a Seamless worker's slots (cores x throttle), offered from its start:
        # a slot the plugin added later would leave tasks that came first without any worker
        resources = {"S": float(cores * throttle), **(resources or {})}
    return Settings(
        cores=cores, job_cores=job_cores, processes=processes, worker_threads=threads, throttle=throttle,
        memory=memory, walltime=clock(duration(p, "walltime")) if "walltime" in p else None,
        tmpdir=str(p["tmpdir"]),
        maximum_jobs=maximum_jobs, minimum_jobs=int(boolean(p, "interactive")), exclusive=exclusive,
        throttled=not (pure or exclusive or "worker_threads" in p),
        pure_dask=pure, record=boolean(p, "record"), lifetime=lifetime, lifetime_stagger=stagger,
        resources=resources, target_duration=duration(p, "target-duration") * scale,
        port_range=_port_range(p, port_range))


def _lifetime(p, local, maximum_jobs):
    """(lifetime, stagger): workers end before the walltime does, staggered, so that
    rolling restarts lose no task. None where there is nothing to rotate for."""
    if maximum_jobs == 1 and "lifetime" not in p:
        return None, None  # one job: a restart would leave no worker at all for a while
    if local and "lifetime" not in p:
        return None, None  # no walltime on this machine
    stagger = str(p["lifetime-stagger"])
    if "lifetime" in p:
        value = duration(p, "lifetime")
        if value <= 0:
            raise ParameterError(f"parameter 'lifetime' is {p['lifetime']!r}: it must be positive")
        if "walltime" in p and not local and value >= duration(p, "walltime"):
            raise ParameterError(f"parameter 'lifetime' ({p['lifetime']}) is not shorter than the walltime "
                                 f"({p['walltime']}): the batch system would kill workers instead of retiring them")
        return str(p["lifetime"]), stagger
    seconds = duration(p, "walltime") - duration(p, "lifetime-stagger") - LIFETIME_GRACE
    if seconds <= 0:
        raise ParameterError(f"walltime {p['walltime']} leaves no time for a worker (walltime - lifetime-stagger "
                             f"{stagger} - 1m grace): set a longer walltime, a shorter lifetime-stagger, or lifetime")
    return f"{int(seconds)}s", stagger


def _port_range(p, port_range):
    value = p.get("internal-port-range")
    if value is None:
        return f"{port_range[0]}:{port_range[1]}" if port_range else None
    if isinstance(value, str) and re.fullmatch(r"\d+:\d+", value):
        a, b = (int(x) for x in value.split(":"))
    elif isinstance(value, list) and len(value) == 2 and all(type(x) is int for x in value):
        a, b = value
    else:
        raise ParameterError(f"parameter 'internal-port-range' is {value!r}: write [START, END] or \"START:END\"")
    if not 0 < a <= b <= 65535:
        raise ParameterError(f"parameter 'internal-port-range' is {value!r}: ports must be 1-65535, START <= END")
    return f"{a}:{b}"


def _dask_config(p, s: Settings) -> dict:
    flat = {
        "distributed.worker.daemon": False,  # workers start Seamless child processes
        "distributed.scheduler.unknown-task-duration": str(p["unknown-task-duration"]),
        "distributed.scheduler.target-duration": str(p["target-duration"]),
    }
    if s.port_range:
        flat["distributed.worker.port"] = s.port_range
        flat["distributed.nanny.port"] = s.port_range
    if s.lifetime is not None:
        flat["distributed.worker.lifetime.stagger"] = s.lifetime_stagger
        flat["distributed.worker.lifetime.duration"] = s.lifetime
    if s.resources is not None:
        flat["distributed.worker.resources"] = s.resources
    extra = p.get("extra_dask_config", {})
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise ParameterError("parameter 'extra_dask_config' must map dotted dask config keys to strings "
                             "(e.g. {\"distributed.scheduler.worker-ttl\": \"10m\"})")
    flat.update(extra)
    return flat


def nested(flat: dict) -> dict:
    """{"a.b.c": v} -> {"a": {"b": {"c": v}}}, as dask.config.update takes it."""
    out = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def export_name(key: str) -> str:
    """dask's environment-variable spelling of a config key."""
    return "DASK_" + "__".join(part.replace("-", "_").upper() for part in key.split("."))


def _environment_variables(s: Settings) -> dict:
    env = {"SEAMLESS_DASK_QUEUE_EXCLUSIVE": str(int(s.exclusive)), "SEAMLESS_DASK_RECORD_MODE": str(int(s.record))}
    if s.throttled:
        env["SEAMLESS_WORKER_TRANSFORMATION_THROTTLE"] = str(s.throttle)
    return env


def _dask_exports(flat: dict) -> list:
    lines = []
    for key, value in flat.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        lines.append(f"export {export_name(key)}={shlex.quote('' if value is None else str(value))}")
    return lines


def _python_environment(environ, python) -> list:
    """Lines that give a job the wrapper's Python environment: batch systems such as OAR
    start jobs with a bare environment, where `python` would not be ours."""
    lines = [f'export PATH={shlex.quote(os.path.dirname(python))}:"$PATH"']
    conda = environ.get("CONDA_PREFIX")
    if conda:
        lines.insert(0, f"export CONDA_PREFIX={shlex.quote(conda)}")
    return lines


def _jobqueue(p, s: Settings, batch, exports, host, scheduler_port, dashboard_port, log, environ, python) -> dict:
    directives = string_list(p, "job_extra_directives")
    if log:
        directives += [d.format(log=log) for d in batch.log_directives]
    prologue = _python_environment(environ, python) + string_list(p, "job_script_prologue") + exports
    if batch.cpus_variable:  # Python >= 3.13 sizes its pools by the job's CPUs, not the node's
        cpus = batch.cpus_variable
        prologue.append(f"export PYTHON_CPU_COUNT=${cpus}")
        if s.exclusive:  # the one transformation of the job may use every CPU of it
            if batch.task_cpus_variable:
                prologue.append(f"export {batch.task_cpus_variable}=${cpus}")
            threads = {name: "${" + cpus + "}" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                            "OPENBLAS_NUM_THREADS")}
            environ_json = json.dumps(threads, separators=(",", ":")).replace('"', '\\"')
            prologue.append(f'export DASK_DISTRIBUTED__NANNY__ENVIRON="{environ_json}"')
    worker_args = [f"--nthreads {s.worker_threads}"]
    if s.port_range:
        worker_args += [f"--worker-port={s.port_range}", f"--nanny-port={s.port_range}"]
    # `python` as found on the PATH set above, like upstream's scripts say it
    here = os.path.dirname(python)
    section = {
        "processes": s.processes,
        "python": "python" if os.path.exists(os.path.join(here, "python")) else python,
        "cores": s.job_cores,
        "memory": s.memory,
        "local-directory": s.tmpdir,
        "scheduler-options": {"host": host, **({"port": scheduler_port} if scheduler_port else {}),
                              **({"dashboard_address": f"{host}:{dashboard_port}"} if dashboard_port else {})},
        "worker-extra-args": worker_args,
        "job-script-prologue": prologue,
    }
    if s.walltime:
        section["walltime"] = s.walltime
    if p.get("partition"):
        section["queue"] = str(p["partition"])
    if directives:
        section["job-extra-directives"] = directives
    if p.get("project"):
        section[batch.project_key] = str(p["project"])
    for name in ("memory_per_core_property_name", "resource_spec"):
        if p.get(name):
            section[name.replace("_", "-")] = str(p[name])
    if batch.property_directive:
        _merge_properties(section, batch.property_directive, s)
    return section


def _merge_properties(section, flag, s: Settings):
    """One property filter: the user's (e.g. a node, -p host='n12') AND the memory one.
    Only the last filter counts; dask_jobqueue's own merge quotes the user's quotes away."""
    directives = section.get("job-extra-directives", [])
    filters = [d[len(flag):].strip() for d in directives if d.startswith(flag + " ")]
    prop = section.get("memory-per-core-property-name")
    if not filters or not prop or prop == "not_applicable":
        return
    filters = [f[1:-1] if len(f) > 1 and f[0] == f[-1] == '"' else f for f in filters]
    filters.append(f"{prop}>={math.ceil(memory_bytes(s.memory) / (s.job_cores * 2**20))}")
    others = [d for d in directives if not d.startswith(flag + " ")]
    section["job-extra-directives"] = others + [f'{flag} "{" AND ".join(filters)}"']
    section["memory-per-core-property-name"] = "not_applicable"  # already in the filter


def _local_cluster(s: Settings, host) -> dict:
    # maximum_jobs workers, as upstream (a local "job" is one worker process)
    kwargs = {"n_workers": s.maximum_jobs, "threads_per_worker": s.worker_threads,
              "host": host, "processes": True, "local_directory": s.tmpdir}
    if s.memory:
        kwargs["memory_limit"] = int(memory_bytes(s.memory))
    if s.port_range:
        kwargs["worker_port"] = kwargs["port"] = s.port_range  # port: the nannies'
    if s.lifetime is not None:  # a restarted local worker comes back (no job to resubmit)
        kwargs.update(lifetime=s.lifetime, lifetime_stagger=s.lifetime_stagger, lifetime_restart=True)
    if s.resources is not None:
        kwargs["resources"] = s.resources
    return kwargs


def _adaptive(s: Settings, p) -> dict:
    """Adaptive scaling between minimum_jobs and maximum_jobs: checked every 2 s, a job
    released after about target-duration without work (at most 5 min, at least 6 s)."""
    interval = 2.0
    wait = min(max(duration(p, "target-duration"), 6.0), 300.0)
    return {"minimum_jobs": s.minimum_jobs, "maximum_jobs": s.maximum_jobs,
            "target_duration": s.target_duration, "interval": interval,
            "wait_count": max(1, math.ceil(wait / interval)),
            "kind": "exclusive" if s.exclusive else "dask" if s.pure_dask else "waiting-aware"}


# --- values --------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*([kmgtp]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "seconds": 1, "m": 60, "min": 60, "minutes": 60,
          "h": 3600, "hr": 3600, "hours": 3600, "d": 86400, "days": 86400, "w": 604800}


_BYTES = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}


def memory_bytes(text: str) -> float:
    """8GB -> 8e9, 16GiB -> 16 * 2**30 (dask's reading of sizes)."""
    number, unit = re.fullmatch(r"\s*([\d.]+)\s*([a-z]*)\s*", text.lower()).groups()
    binary = "i" in unit
    unit = unit.replace("i", "").removesuffix("b") if unit != "b" else ""
    factor = 1024 ** " kmgtp".index(unit) if binary else _BYTES[unit]
    return float(number) * factor


def boolean(p, name) -> bool:
    value = p.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ParameterError(f"parameter '{name}' is {value!r}: write true or false")


def positive(p, name) -> int:
    value = p[name]
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if type(value) is not int or value < 1:
        raise ParameterError(f"parameter '{name}' is {value!r}: it must be a positive whole number")
    return value


def string_list(p, name) -> list:
    value = p.get(name, [])
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ParameterError(f"parameter '{name}' must be a list of strings (one line each), not {value!r}")
    return list(value)


def duration(p, name) -> float:
    """Seconds of HH:MM:SS, MM:SS, D-HH:MM:SS, a number, or a number with a unit (5m, 30s, 1.5h)."""
    value = p.get(name)
    seconds = parse_duration(value)
    if seconds is None:
        raise ParameterError(f"parameter '{name}' is {value!r}: write a duration such as 01:00:00, 10m or 30s")
    if seconds < 0:
        raise ParameterError(f"parameter '{name}' is {value!r}: a duration cannot be negative")
    return seconds


def clock(seconds: float) -> str:
    """HH:MM:SS, the walltime form that every batch system reads (SLURM would read 30m as an
    error and 3600 as minutes)."""
    seconds = int(math.ceil(seconds))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def parse_duration(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+)(?::(\d+))?", text)
    if match:
        days, a, b, c = match.groups()
        h, m, s = (a, b, c) if c is not None else (0, a, b)
        return int(days or 0) * 86400 + int(h) * 3600 + int(m) * 60 + int(s)
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*([a-z]*)", text)
    if match and match.group(2) in _UNITS | {"": 1}:
        return float(match.group(1)) * (_UNITS.get(match.group(2)) or 1)
    return None
