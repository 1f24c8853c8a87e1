"""seamless-dask-wrapper: start a Dask cluster from a launcher's status file and supervise it.

    seamless-dask-wrapper CLUSTER [--port-range A B] --status-file F [--host H] [--timeout S]
    seamless-dask-wrapper CLUSTER --status-file F --print-job-script

Life: wait for the status file, read its parameters, pick the scheduler and dashboard
ports, start the cluster (LocalCluster: maximum_jobs workers; a batch cluster: adaptive,
from int(interactive) to maximum_jobs jobs), write "running" with both ports. Then, every
second, look at the scheduler: after --timeout seconds without clients or tasks, or on
SIGTERM, SIGHUP or SIGINT, close the cluster (its jobs are cancelled) and remove the status
file. A failure before "running" writes "failed" with the error line.
"""

import argparse
import errno
import json
import logging
import os
import signal
import socket
import sys
import time

from seamless.cli import UserError, add_version, set_debug
from seamless.dask import clusters
from seamless.dask.parameters import ParameterError, build
from seamless.launch.status import StatusFileError, wait_for_status_file, write_status
from seamless.servers.service import pick_port, port, seconds

log = logging.getLogger("seamless.dask.wrapper")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="seamless-dask-wrapper",
        description="Start and supervise a Dask cluster (local, SLURM, OAR, PBS) from a status file.")
    add_version(parser)
    parser.add_argument("cluster", metavar="CLUSTER",
                        help="MODULE::SYMBOL, e.g. distributed::LocalCluster, dask_jobqueue::SLURMCluster")
    parser.add_argument("--port-range", type=port, nargs=2, metavar=("START", "END"),
                        help="scheduler and dashboard ports (and, by default, worker and nanny ports) "
                             "come from this inclusive range")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface the scheduler listens on (default 127.0.0.1; workers on other "
                             "nodes need one they can reach)")
    parser.add_argument("--status-file", metavar="FILE", required=True,
                        help="launcher handshake: JSON object with 'parameters'; gets status and ports")
    parser.add_argument("--timeout", type=seconds, metavar="SECONDS",
                        help="shut down after SECONDS without clients or tasks")
    parser.add_argument("--print-job-script", action="store_true",
                        help="print the job script workers would be submitted with (LocalCluster: its "
                             "keyword arguments as JSON) and exit, touching nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the cluster's events on stderr")
    return parser.parse_args(argv)


def main(argv) -> int:
    args = parse_args(argv)
    set_debug(args.verbose)
    if args.port_range and args.port_range[0] > args.port_range[1]:
        raise UserError(f"--port-range {args.port_range[0]} {args.port_range[1]}: START is above END")
    if args.print_job_script:
        return print_job_script(args)
    try:
        base = wait_for_status_file(args.status_file)
    except StatusFileError as exc:
        raise UserError(str(exc)) from None
    stopping = _install_signals()
    cluster = None
    try:
        cluster, plan, ports, how = _start(args, base)
    except BaseException as exc:
        interrupted = isinstance(exc, (KeyboardInterrupt, SystemExit))
        line = str(exc) if isinstance(exc, (UserError, ParameterError, clusters.ClusterError)) else (
            "interrupted" if interrupted else f"{type(exc).__name__}: {exc}")
        write_status(args.status_file, base, status="failed", error=line, pid=os.getpid())
        if interrupted:  # distributed may turn the interrupt into something else on its way up
            return stopping["code"] if stopping["code"] is not None else 130
        if isinstance(exc, (ParameterError, clusters.ClusterError)):
            raise UserError(line) from None
        raise
    stopping["running"] = True
    try:
        write_status(args.status_file, base, status="running", port=ports[0], dashboard_port=ports[1],
                     pid=os.getpid(), scheduler_address=cluster.scheduler_address,
                     seamless_workers=plan.settings.cores if not plan.settings.exclusive else 1)
        print(cluster.scheduler_address, flush=True)
        clusters.attach_dashboard(cluster, how)
        log.info("scheduler %s, dashboard http://%s:%d/status", cluster.scheduler_address, args.host, ports[1])
        return supervise(cluster, args.timeout, stopping)
    finally:
        _close(cluster)
        _remove(args.status_file)


def print_job_script(args) -> int:
    try:
        with open(args.status_file) as f:
            base = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read status file {args.status_file}: {exc}") from None
    if not isinstance(base, dict):
        raise UserError(f"status file {args.status_file} must contain a JSON object")
    # the ports a real start would take from the range, not bound here
    start, end = args.port_range or (49152, 65535)
    scheduler_port, dashboard_port = start, start + 1 if end > start else start
    try:
        plan, symbol, how = _plan(args, base, scheduler_port, dashboard_port)
        print(clusters.job_script(symbol, how, plan, args.host, scheduler_port, dashboard_port))
    except (ParameterError, clusters.ClusterError) as exc:
        raise UserError(str(exc)) from None
    return 0


def _plan(args, base, scheduler_port, dashboard_port):
    """Validate, apply the dask config, import the cluster: (plan, symbol, how)."""
    parameters = base.get("parameters") or {}
    options = dict(host=args.host, scheduler_port=scheduler_port, dashboard_port=dashboard_port,
                   port_range=args.port_range, log=base.get("log") or None)
    system = clusters.guess_system(args.cluster)
    local = args.cluster.endswith("::LocalCluster")
    plan = build(parameters, system=system, local=local, **options)
    clusters.apply_config(plan.dask_config)  # before distributed is imported
    symbol = clusters.load(args.cluster)
    how, actual = clusters.kind(symbol)
    if actual != system or (how == "local") != local:
        plan = build(parameters, system=actual, local=how == "local", **options)
    clusters.apply_config(jobqueue=plan.jobqueue)
    return plan, symbol, how


def _start(args, base):
    def free(candidate, taken=()):
        if candidate in taken:
            raise OSError(errno.EADDRINUSE, "taken by the scheduler")
        socket.create_server((args.host, candidate)).close()

    try:
        scheduler_port = pick_port(args.host, None, args.port_range, free)
        dashboard_port = pick_port(args.host, None, args.port_range,
                                   lambda c: free(c, taken=(scheduler_port,)))
    except OSError as exc:
        raise UserError(f"cannot use --host {args.host}: {exc}") from None
    plan, symbol, how = _plan(args, base, scheduler_port, dashboard_port)
    _logging(base.get("log"), args.verbose)  # now: importing distributed reconfigures logging
    os.environ.update(plan.environment)  # local workers inherit it; jobs get it exported
    cluster = clusters.start(symbol, how, plan, args.host, scheduler_port, dashboard_port)
    try:
        _configure(cluster, plan, how)
    except BaseException:
        _close(cluster)
        raise
    if hasattr(cluster, "job_script"):
        log.info("job script:\n%s", cluster.job_script())
    return cluster, plan, _ports(cluster, scheduler_port, dashboard_port), how


def _ports(cluster, scheduler_port, dashboard_port):
    """The ports the cluster listens on: ours, unless a factory or instance chose its own."""
    from urllib.parse import urlsplit

    try:
        scheduler_port = urlsplit(cluster.scheduler_address).port or scheduler_port
        dashboard_port = urlsplit(cluster.dashboard_link).port or dashboard_port
    except (AttributeError, ValueError, KeyError):
        pass
    return scheduler_port, dashboard_port


def _configure(cluster, plan, how):
    from distributed.protocol.pickle import dumps
    from distributed.utils import sync

    from seamless.dask import scaling

    scheduler = scaling.in_process_scheduler(cluster)
    if scheduler is not None:
        async def install():
            scaling.watch_batch_exits(scheduler)
            await scheduler.register_worker_plugin(None, dumps(scaling.BatchExit()), name=scaling.BATCH_EXIT,
                                                   idempotent=True)
        sync(cluster.loop, install)
    if how != "local" and hasattr(cluster, "adapt"):
        if plan.settings.minimum_jobs:  # interactive: a job now, not at the first adaptive tick
            cluster.scale(jobs=1) if how == "jobqueue" else cluster.scale(1)
        scaling.adapt(cluster, plan.adaptive, plan.settings.processes)


def supervise(cluster, timeout, stopping) -> int:
    """Until a signal, or `timeout` seconds without clients and tasks: the exit code."""
    from distributed.utils import sync

    from seamless.dask import scaling

    scheduler = scaling.in_process_scheduler(cluster)

    async def look():
        return scaling.activity(scheduler)

    idle_since = time.monotonic()
    while stopping["code"] is None:
        time.sleep(0.2 if timeout is None or timeout > 2 else 0.05)
        if scheduler is None or timeout is None:
            continue
        try:
            state = sync(cluster.loop, look)
        except Exception:  # the loop is closing: so are we
            break
        if state["clients"] or state["tasks"]:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= timeout:
            log.info("no clients and no tasks for %g s: shutting down", timeout)
            return 0
    if "signal" in stopping:
        log.info("%s: shutting down", stopping["signal"])
    return stopping["code"] or 0


def _install_signals():
    """SIGTERM/SIGHUP: shut down cleanly (exit 0); SIGINT: likewise, exit 130. Before the
    cluster runs, a signal aborts its start."""
    stopping = {"code": None, "running": False}

    def on_signal(signum, frame):
        stopping["signal"] = signal.Signals(signum).name  # logged outside the handler
        stopping["code"] = 130 if signum == signal.SIGINT else 0
        if not stopping["running"]:
            raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    return stopping


def _logging(path, verbose):
    """Our events, and dask's warnings, into the status file's log (and stderr with -v).
    Each logger gets handlers of its own: clusters silence the handlers of "distributed"."""
    log.disabled = False  # distributed's logging config disables the loggers that exist before it
    formatter = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("seamless", "distributed", "dask_jobqueue"):
        logger = logging.getLogger(name)
        logger.disabled = False
        for handler in ([logging.FileHandler(path)] if path else []) + (
                [logging.StreamHandler(sys.stderr)] if verbose else []):
            handler.setFormatter(formatter)
            logger.addHandler(handler)
        if name == "seamless":
            logger.setLevel(logging.INFO)


def _close(cluster):
    if cluster is None:
        return
    try:
        cluster.close(timeout=30)
    except Exception as exc:  # the jobs may be gone already
        log.warning("closing the cluster: %s", exc)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
