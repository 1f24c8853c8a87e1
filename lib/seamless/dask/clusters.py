"""Cluster strings (MODULE::SYMBOL) -> a running Dask cluster, or the job script it would submit.

SYMBOL may be a LocalCluster subclass (started with explicit keyword arguments: it does
not read ports from the dask config), any other Cluster subclass (started without
arguments: dask_jobqueue classes read everything from the jobqueue config section), a
function that returns a Cluster, or a Cluster instance.

Only the dask config is imported before the parameters are applied: distributed reads
some of its settings when it is first imported.
"""

import importlib
import inspect
import json
import re
import sys

from seamless.dask.batch import JOBQUEUE_SECTIONS
from seamless.dask.parameters import ParameterError, nested

# batch system by the class names dask_jobqueue gives, before anything is imported
_KNOWN = {"SLURMCluster": "slurm", "OARCluster": "oar", "PBSCluster": "pbs", "SGECluster": "sge",
          "LSFCluster": "lsf", "HTCondorCluster": "htcondor", "MoabCluster": "moab"}


# the wrapper's own process: a job whose worker has left (its lifetime reached) is replaced
# after 2 s, not dask's 15
WRAPPER_CONFIG = {"distributed.deploy.lost-worker-timeout": "2s"}


class ClusterError(ValueError):
    pass


def split(cluster_string):
    module, sep, symbol = cluster_string.partition("::")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w.]*", module) or not re.fullmatch(r"[A-Za-z_]\w*", symbol):
        raise ClusterError(f"cluster {cluster_string!r} is not MODULE::SYMBOL "
                           "(e.g. distributed::LocalCluster, dask_jobqueue::SLURMCluster)")
    return module, symbol


def guess_system(cluster_string):
    """The batch system a cluster string names, without importing it (None: unknown)."""
    return _KNOWN.get(split(cluster_string)[1])


def apply_config(flat=None, jobqueue=None):
    import dask.config

    if flat:
        dask.config.update(dask.config.config, nested({**WRAPPER_CONFIG, **flat}), priority="new")
    if jobqueue is not None:
        dask.config.update(dask.config.config, {"jobqueue": {s: dict(jobqueue) for s in JOBQUEUE_SECTIONS}},
                           priority="new")


def load(cluster_string):
    module_name, name = split(cluster_string)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = " (pip install 'seamless-toolbox[dask]')" if module_name.split(".")[0] in (
            "distributed", "dask_jobqueue", "dask") else ""
        raise ClusterError(f"cannot import {module_name!r} for cluster {cluster_string!r}: {exc}{hint}") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ClusterError(f"module {module_name!r} has no {name!r} (cluster {cluster_string!r})") from None


def kind(symbol):
    """("local" | "jobqueue" | "class" | "factory" | "instance", batch system or None)."""
    from distributed import LocalCluster
    from distributed.deploy.cluster import Cluster

    # not imported by the cluster's module: then it cannot be one (and importing costs 0.25 s)
    jobqueue = sys.modules.get("dask_jobqueue.core")
    if inspect.isclass(symbol):
        if issubclass(symbol, LocalCluster):
            return "local", None
        if jobqueue and issubclass(symbol, jobqueue.JobQueueCluster):
            return "jobqueue", symbol.job_cls.config_name if symbol.job_cls else None
        if issubclass(symbol, Cluster):
            return "class", None
    elif isinstance(symbol, Cluster):
        return "instance", getattr(getattr(symbol, "job_cls", None), "config_name", None)
    elif callable(symbol):
        return "factory", None
    raise ClusterError(f"{symbol!r} is not a Dask Cluster class, instance or factory")


def start(symbol, how, plan, host, scheduler_port, dashboard_port):
    """The running cluster. Ours start their HTTP server (/health) without the bokeh
    dashboard, whose import takes half a second: attach_dashboard() adds it once the
    cluster runs."""
    from distributed.deploy.cluster import Cluster

    if how == "local":
        return symbol(**plan.local_cluster, scheduler_port=scheduler_port,
                      dashboard_address=f"{host}:{dashboard_port}", scheduler_kwargs={"dashboard": False})
    if how == "jobqueue":
        options = {**plan.jobqueue["scheduler-options"], "dashboard": False}
        apply_config(jobqueue={**plan.jobqueue, "scheduler-options": options})
        return symbol()
    if how == "class":
        return symbol()
    cluster = symbol
    if how == "factory":
        try:
            cluster = symbol()
        except Exception as exc:
            raise ClusterError(f"the cluster factory {symbol.__module__}.{symbol.__name__}() failed: "
                               f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(cluster, Cluster):
        raise ClusterError(f"the cluster factory returned {type(cluster).__name__}, not a Dask Cluster")
    return cluster


def attach_dashboard(cluster, how):
    """The bokeh dashboard (/status) on the HTTP server of a cluster that start() made."""
    if how not in ("local", "jobqueue"):
        return
    try:
        import distributed.dashboard.scheduler as dashboard
    except ImportError:  # bokeh missing: /health and the other routes still answer
        return
    from distributed.utils import sync

    scheduler = cluster.scheduler

    async def attach():
        dashboard.connect(scheduler.http_application, scheduler.http_server, scheduler, prefix="/")

    sync(cluster.loop, attach)


def reachable(host):
    """The address workers dial for a scheduler listening on `host` (all interfaces: this
    machine's address, as the scheduler itself reports it)."""
    if host in ("0.0.0.0", "", "::"):
        from distributed.utils import get_ip

        return get_ip()
    return host


def job_script(symbol, how, plan, host, scheduler_port, dashboard_port) -> str:
    """What the cluster would submit: a job script, or a LocalCluster's keyword arguments."""
    if how == "local":
        kwargs = {**plan.local_cluster, "scheduler_port": scheduler_port,
                  "dashboard_address": f"{host}:{dashboard_port}"}
        return json.dumps(kwargs, indent=2)
    if how == "jobqueue":  # the job alone: no scheduler needs to start for its script
        return symbol.job_cls(scheduler=f"tcp://{reachable(host)}:{scheduler_port}", name="dummy-name").job_script()
    cluster = start(symbol, how, plan, host, scheduler_port, dashboard_port)
    try:
        if not hasattr(cluster, "job_script"):
            raise ParameterError(f"{type(cluster).__name__} submits no job script")
        return cluster.job_script()
    finally:
        cluster.close()
