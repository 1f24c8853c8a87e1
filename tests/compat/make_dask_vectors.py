"""Record test vectors from upstream's seamless-dask-wrapper (seamless_dask 0.4).

For each named case this builds what upstream's ``seamless_dask.wrapper.main``
would build for a status-file ``parameters`` dict -- the jobqueue job script
(SLURM, OAR, PBS) or the LocalCluster keyword arguments -- without submitting
a job and without starting a worker, and writes them to a JSON file.

It must be run with the Python of a throwaway *upstream* virtualenv, never
with ours:

    python3 -m venv /tmp/dask-up
    /tmp/dask-up/bin/pip install 'seamless-dask==0.4.*' dask-jobqueue
    /tmp/dask-up/bin/python tests/compat/make_dask_vectors.py \
        --out tests/compat/dask_job_scripts.json

Upstream code paths used, in the order of ``main()``:

1. ``configure_log_handle({"log": PATH})`` when the case has a log file (the
   log path feeds the ``#SBATCH --output``/``#OAR --stdout`` prologue lines);
2. ``build_wrapper_configuration(host=, port_range=, parameters=)``; its
   exceptions are the "error" of the rejected cases;
3. ``dask.config.update(dask.config.config, {"jobqueue": ...})``, the check
   that no ``distributed*`` module is imported yet, then
   ``dask.config.update(dask.config.config, cfg.dask_config)``;
4. ``load_cluster_from_string(CLUSTER_STRING, Cluster)``: for a jobqueue class
   this instantiates it with no arguments (every setting comes from
   dask.config); that starts a local scheduler only, no job is submitted;
5. the OARCluster check of ``main()`` (memory_per_core_property_name);
6. ``cluster.job_script()``, which ``main()`` logs after "SLURM job script:" /
   "Job script:"; then ``cluster.close()``.

Not done, because it would submit jobs or start workers: ``cluster.scale``,
``_adapt_cluster`` and ``keep_cluster_alive``.  For ``distributed::LocalCluster``
the class is *not* instantiated (that would start workers): the keyword
arguments are assembled by the same lines as in ``main()`` (copied below,
including the maximum_jobs == 1 lifetime KLUDGE) and recorded.  The adaptive
settings are likewise assembled by the lines copied from ``main()``, using
upstream's ``scale_target_duration``.

Each case runs in its own subprocess (``--case NAME``), because upstream
requires that ``distributed`` is not imported before the dask config is
applied, and because the wrapper keeps module-global state (the log handle).

No batch-system command (sbatch, oarsub, qsub) is needed: dask_jobqueue only
calls them when scaling, so no stub directory on PATH is used.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import warnings

HOST = "0.0.0.0"  # the wrapper's default --host
PORT_RANGE = (61000, 61099)  # the wrapper's --port-range START END

SLURM = "dask_jobqueue::SLURMCluster"
OAR = "dask_jobqueue::OARCluster"
PBS = "dask_jobqueue::PBSCluster"
LOCAL = "distributed::LocalCluster"

SEED_1 = {
    "cores": 24,
    "memory": "54000MB",
    "walltime": "01:00:00",
    "partition": "all",
    "maximum_jobs": 10,
    "interactive": True,
    "tmpdir": "/tmp",
}
SMALL = {"cores": 4, "memory": "8GB", "walltime": "01:00:00", "maximum_jobs": 4}


def _with(base, **kw):
    d = dict(base)
    d.update(kw)
    return d


# name -> (cluster string, parameters, options)
# options: log (bool: the status file names a log file), env (extra env vars)
CASES = [
    ("slurm_seed_example_1", SLURM, SEED_1, {}),
    (
        "slurm_seed_example_2",
        SLURM,
        _with(SEED_1, job_extra_directives=["--exclusive", "--nodelist=n1"]),
        {"log": True},
    ),
    (
        "slurm_maximum_jobs_1",
        SLURM,
        {"cores": 4, "memory": "8GB", "walltime": "01:00:00", "maximum_jobs": 1},
        {},
    ),
    (
        "slurm_exclusive_without_cores",
        SLURM,
        {
            "exclusive": True,
            "memory": "16GB",
            "walltime": "02:00:00",
            "partition": "all",
            "job_extra_directives": ["--exclusive"],
            "maximum_jobs": 4,
        },
        {},
    ),
    (
        "slurm_exclusive_with_cores",
        SLURM,
        {
            "exclusive": True,
            "cores": 8,
            "memory": "16GB",
            "walltime": "02:00:00",
            "partition": "all",
            "maximum_jobs": 4,
        },
        {},
    ),
    (
        "slurm_job_extra_directives",
        SLURM,
        _with(SMALL, job_extra_directives=["--qos=high", "--constraint=avx2"]),
        {},
    ),
    (
        "slurm_job_script_prologue_with_log",
        SLURM,
        _with(
            SMALL,
            job_script_prologue=["module load conda", "conda activate seamless"],
        ),
        {"log": True},
    ),
    ("slurm_log_without_prologue", SLURM, SMALL, {"log": True}),
    ("slurm_project", SLURM, _with(SMALL, project="myproject"), {}),
    ("slurm_transformation_throttle", SLURM, _with(SMALL, transformation_throttle=5), {}),
    ("slurm_worker_threads", SLURM, _with(SMALL, worker_threads=7), {}),
    ("slurm_processes", SLURM, _with(SMALL, processes=2), {}),
    ("slurm_pure_dask", SLURM, _with(SMALL, pure_dask=True), {}),
    ("slurm_record", SLURM, _with(SMALL, record=True), {}),
    (
        "slurm_internal_port_range_list",
        SLURM,
        _with(SMALL, **{"internal-port-range": [62000, 62099]}),
        {},
    ),
    (
        "slurm_internal_port_range_string",
        SLURM,
        _with(SMALL, **{"internal-port-range": "62000:62099"}),
        {},
    ),
    (
        "slurm_extra_dask_config",
        SLURM,
        _with(
            SMALL,
            extra_dask_config={
                "distributed.scheduler.worker-ttl": "10m",
                "distributed.worker.memory.target": "0.8",
                "distributed.comm.timeouts.connect": "60s",
            },
        ),
        {},
    ),
    (
        "slurm_dask_resources",
        SLURM,
        _with(SMALL, **{"dask-resources": {"S": 2, "GPU": 1}}),
        {},
    ),
    (
        "slurm_lifetime_stagger",
        SLURM,
        _with(SMALL, **{"lifetime-stagger": "2m"}),
        {},
    ),
    ("slurm_lifetime_explicit", SLURM, _with(SMALL, lifetime="30m"), {}),
    (
        "slurm_durations",
        SLURM,
        _with(SMALL, **{"unknown-task-duration": "30s", "target-duration": "5m"}),
        {},
    ),
    (
        "oar_memory_per_core_property_name",
        OAR,
        _with(SMALL, memory_per_core_property_name="memcore", project="myproject"),
        {"log": True},
    ),
    (
        "oar_resource_spec",
        OAR,
        {
            "exclusive": True,
            "memory": "16GB",
            "walltime": "02:00:00",
            "resource_spec": "/nodes=1",
            "memory_per_core_property_name": "memcore",
            "maximum_jobs": 2,
        },
        {"log": True, "env": {"CONDA_PREFIX": "/opt/conda/envs/seamless"}},
    ),
    (
        "pbs",
        PBS,
        _with(SMALL, partition="batch", project="myproject"),
        {"log": True},
    ),
    (
        "local_cluster_maximum_jobs_1",
        LOCAL,
        {"cores": 2, "memory": "2GB", "walltime": "01:00:00", "maximum_jobs": 1},
        {},
    ),
    (
        "local_cluster_maximum_jobs_3",
        LOCAL,
        {
            "cores": 2,
            "memory": "2GB",
            "walltime": "01:00:00",
            "maximum_jobs": 3,
            "dask-resources": {"S": 2},
        },
        {},
    ),
    # rejected cases
    ("error_memory_missing", SLURM, {"cores": 4, "walltime": "01:00:00"}, {}),
    ("error_cores_missing", SLURM, {"memory": "8GB", "walltime": "01:00:00"}, {}),
    (
        "error_job_extra_directives_not_list",
        SLURM,
        _with(SMALL, job_extra_directives="--exclusive"),
        {},
    ),
    (
        "error_job_script_prologue_not_list",
        SLURM,
        _with(SMALL, job_script_prologue="module load conda"),
        {},
    ),
    (
        "error_extra_dask_config_non_string_value",
        SLURM,
        _with(SMALL, extra_dask_config={"distributed.scheduler.worker-ttl": 600}),
        {},
    ),
    ("error_lifetime_zero", SLURM, _with(SMALL, lifetime="0s"), {}),
    (
        "error_lifetime_negative_from_walltime",
        SLURM,
        _with(SMALL, walltime="00:04:00"),
        {},
    ),
    ("error_lifetime_negative", SLURM, _with(SMALL, lifetime="-5m"), {}),
    ("error_walltime_missing", SLURM, {"cores": 4, "memory": "8GB"}, {}),
    (
        "error_job_cores_in_exclusive",
        SLURM,
        {"exclusive": True, "job_cores": 4, "memory": "8GB", "walltime": "01:00:00"},
        {},
    ),
    ("error_cores_not_positive", SLURM, _with(SMALL, cores=0), {}),
    (
        "error_oar_without_memory_per_core_property_name",
        OAR,
        SMALL,
        {},
    ),
]

NORMALIZED = [
    "{LOG}: the status file's 'log' path (a per-run temporary file, opened by "
    "configure_log_handle); the wrapper appends -%j.out/-%j.err (SLURM) or "
    "-%jobid%.out/-%jobid%.err (OAR) to it",
    "{SCHEDULER_ADDRESS}: the scheduler address in the dask_worker command "
    "line, tcp://<host>:<scheduler port>; the port is picked at random from "
    "--port-range and the host is the machine's address",
    "{SCHEDULER_PORT} and {DASHBOARD_PORT}: the random ports in the "
    "LocalCluster kwargs (in job scripts the scheduler port appears only "
    "inside {SCHEDULER_ADDRESS}; the dashboard port does not appear)",
    "{HOSTNAME}: socket.gethostname(), if it appears",
    "{PYTHON}: sys.executable, if it appears (upstream sets jobqueue "
    "python='python', so the scripts say 'python' literally)",
    "Not normalized: the --port-range (61000 61099) and host (0.0.0.0) are "
    "fixed inputs recorded in 'wrapper_invocation'; the default "
    "internal-port-range is this --port-range, so '61000:61099' appears in the "
    "scripts literally",
    "CONDA_PREFIX is removed from the environment of every case (upstream's OAR "
    "prologue exports it when set), except where a case sets it in 'env'",
]


def _normalize(text, subs):
    if text is None:
        return None
    for old, new in subs:
        if old:
            text = text.replace(old, new)
    return text


def _normalize_obj(obj, subs):
    if isinstance(obj, str):
        return _normalize(obj, subs)
    if isinstance(obj, list):
        return [_normalize_obj(x, subs) for x in obj]
    if isinstance(obj, dict):
        return {k: _normalize_obj(v, subs) for k, v in obj.items()}
    return obj


def run_case(name, workdir):
    import seamless_dask.wrapper as w

    cases = {c[0]: c for c in CASES}
    _, cluster_string, parameters, options = cases[name]
    result = {"name": name, "cluster": cluster_string, "parameters": parameters}
    log_path = None
    if options.get("log"):
        log_path = os.path.join(workdir, "wrapper.log")
        result["status_file_log"] = "{LOG}"
        w.configure_log_handle({"log": log_path})
    if options.get("env"):
        result["env"] = options["env"]
    subs = []
    if log_path:
        subs.append((log_path, "{LOG}"))

    caught = []
    cluster = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                cfg = w.build_wrapper_configuration(
                    host=HOST, port_range=PORT_RANGE, parameters=parameters
                )
            except Exception as exc:
                result["error"] = {
                    "stage": "build_wrapper_configuration",
                    "type": type(exc).__name__,
                    "message": str(exc),
                }
                return result
            result["derived"] = {
                "cores": cfg.cores,
                "processes": cfg.worker_processes,
                "worker_threads": cfg.worker_threads,
                "pure_dask": cfg.pure_dask,
                "exclusive": cfg.exclusive,
                "record": cfg.record,
                "interactive": cfg.interactive,
                "maximum_jobs": cfg.maximum_jobs,
                "worker_lifetime": cfg.worker_lifetime,
                "worker_lifetime_stagger": cfg.worker_lifetime_stagger,
                "worker_resources": cfg.worker_resources,
                "dask_config": cfg.dask_config,
                "env_exports": cfg.env_exports,
            }

            # as in main()
            import dask

            dask.config.update(dask.config.config, {"jobqueue": cfg.jobqueue_config})
            for modname in sys.modules.keys():
                assert not modname.startswith("distributed"), modname
            dask.config.update(dask.config.config, cfg.dask_config)
            from distributed.deploy.cluster import Cluster
            from distributed import LocalCluster

            cluster = w.load_cluster_from_string(cluster_string, Cluster)

            if isinstance(cluster, type) and issubclass(cluster, LocalCluster):
                # copied from main(); the class is not instantiated
                if cfg.maximum_jobs == 1:
                    assert cfg.worker_lifetime is None
                    assert cfg.worker_lifetime_stagger is None
                    cfg.worker_lifetime = "24h"
                    cfg.worker_lifetime_stagger = "10m"
                cluster_kwargs = {
                    "n_workers": cfg.maximum_jobs,
                    "host": cfg.common["scheduler-options"]["host"],
                    "scheduler_port": cfg.scheduler_port,
                    "dashboard_address": ":" + str(cfg.dashboard_port),
                    "worker_port": cfg.worker_port_range,
                    "port": cfg.nanny_port_range,
                    "lifetime": cfg.worker_lifetime,
                    "lifetime_stagger": cfg.worker_lifetime_stagger,
                    "resources": cfg.worker_resources,
                }
                if cfg.worker_threads is not None:
                    cluster_kwargs["threads_per_worker"] = cfg.worker_threads
                cluster_kwargs["scheduler_port"] = "{SCHEDULER_PORT}"
                cluster_kwargs["dashboard_address"] = ":{DASHBOARD_PORT}"
                result["local_cluster_kwargs"] = cluster_kwargs
                cluster = None
                return result

            try:
                from dask_jobqueue import OARCluster
            except Exception:
                OARCluster = None
            if OARCluster is not None and isinstance(cluster, OARCluster):
                if cfg.memory_per_core_property_name is None:
                    exc = RuntimeError(
                        "Parameter 'memory_per_core_property_name' is required for OARCluster"
                    )
                    result["error"] = {
                        "stage": "main (after cluster construction)",
                        "type": type(exc).__name__,
                        "message": str(exc),
                    }
                    return result

            # adaptive settings, copied from main() (not applied)
            if cfg.exclusive:
                result["adaptive_settings"] = None
            else:
                target_duration = parameters.get(
                    "target-duration", w.DEFAULT_TARGET_DURATION
                )
                if not cfg.pure_dask:
                    scale_factor = None
                    if cfg.worker_resources is not None:
                        try:
                            scale_factor = float(cfg.worker_resources.get("S"))
                        except Exception:
                            scale_factor = None
                        if scale_factor is not None and scale_factor <= 0:
                            scale_factor = None
                    if scale_factor is None and cfg.cores > 0:
                        scale_factor = float(cfg.cores)
                    if scale_factor:
                        target_duration = w.scale_target_duration(
                            target_duration, 1.0 / scale_factor
                        )
                result["adaptive_settings"] = {
                    "Adaptive": "Adaptive" if cfg.pure_dask else "WaitingAwareAdaptive",
                    "minimum_jobs": int(cfg.interactive),
                    "maximum_jobs": cfg.maximum_jobs,
                    "target_duration": target_duration,
                    "wait_count": w.ADAPTIVE_WAIT_COUNT,
                    "interval": w.ADAPTIVE_INTERVAL,
                }

            script = cluster.job_script()
            result["job_script_label"] = (
                "SLURM job script:"
                if cluster.__class__.__name__ == "SLURMCluster"
                else "Job script:"
            )
            address = cluster.scheduler_address
            subs = [(address, "{SCHEDULER_ADDRESS}")] + subs
            subs.append((sys.executable, "{PYTHON}"))
            hostname = socket.gethostname()
            if hostname and len(hostname) > 3:
                subs.append((hostname, "{HOSTNAME}"))
            result["job_script"] = _normalize(script, subs)
    finally:
        if cluster is not None and not isinstance(cluster, type):
            try:
                cluster.close()
            except Exception:
                pass
        # warnings raised while building the configuration and the cluster
        # (e.g. dask_jobqueue's FutureWarning for SLURM/PBS 'project')
        msgs = [
            {"category": wn.category.__name__, "message": str(wn.message)}
            for wn in caught
            if issubclass(wn.category, (FutureWarning, UserWarning, DeprecationWarning))
        ]
        if msgs:
            result["warnings"] = _normalize_obj(msgs, subs)
        if "derived" in result:
            result["derived"] = _normalize_obj(result["derived"], subs)
    return result


def versions():
    from importlib.metadata import version

    out = {}
    for dist in ("dask", "distributed", "dask-jobqueue", "seamless-dask"):
        key = dist.replace("-", "_")
        try:
            out[key] = version(dist)
        except Exception as exc:
            out[key] = f"unknown ({exc})"
    out["python"] = sys.version.split()[0]
    return out


def driver(out_path):
    here = os.path.abspath(__file__)
    cases, missing = [], []
    for name, _cs, _params, options in CASES:
        with tempfile.TemporaryDirectory(prefix="dask-vectors-") as workdir:
            env = dict(os.environ)
            env.pop("CONDA_PREFIX", None)
            env.update(options.get("env", {}))
            res_path = os.path.join(workdir, "result.json")
            proc = subprocess.run(
                [sys.executable, here, "--case", name, "--workdir", workdir,
                 "--result", res_path],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if proc.returncode != 0 or not os.path.exists(res_path):
                missing.append(
                    {"name": name, "reason": f"case process failed (rc={proc.returncode}): "
                     + proc.stderr.strip()[-2000:]}
                )
                continue
            with open(res_path) as f:
                cases.append(json.load(f))
    doc = {
        "generator": "tests/compat/make_dask_vectors.py",
        "upstream": "seamless_dask.wrapper (console script seamless-dask-wrapper)",
        "versions": versions(),
        "wrapper_invocation": {
            "host": HOST,
            "port_range": list(PORT_RANGE),
            "cluster": "per case ('cluster')",
        },
        "normalized": NORMALIZED,
        "notes": [
            "The seeds' two SLURM examples are reconstructed from "
            "/work/shared/reference/dask-and-jobserver.md section 1.12 "
            "(input of the verified script; the second adds the directives "
            "--exclusive and --nodelist=n1 and a log file).",
            "'derived' and 'adaptive_settings' are what main() logs/uses; "
            "adaptive settings are computed but never applied (no scale/adapt).",
            "'job_script' is the text of cluster.job_script(), exactly as main() "
            "logs it after 'job_script_label' (main() strips trailing whitespace).",
            "'local_cluster_kwargs' are the kwargs main() would pass to "
            "LocalCluster; the class is not instantiated.",
            "'error.stage' says where upstream raises: in "
            "build_wrapper_configuration (status 'failed' before any cluster), "
            "or in main() after the jobqueue cluster object was constructed.",
            "Upstream venv: pip install 'seamless-dask==0.4.*' dask-jobqueue "
            "(unpinned dask/distributed resolved to the versions in 'versions'); "
            "the SLURM seed-1 script is identical to the one the reference "
            "verified with dask/distributed 2025.12.0 and dask_jobqueue 0.9.0.",
            "A negative lifetime (explicit, or walltime - stagger - 1m < 0) is "
            "not rejected as 'must be positive': upstream renders/parses it "
            "with dask.utils.parse_timedelta, which fails first, giving "
            "\"Invalid 'lifetime' value: could not convert string to float: "
            "'1-60'\" for '-60s' ('1-5' for '-5m'). Only a zero lifetime reaches \"Computed 'lifetime' must "
            "be positive\".",
        ],
        "missing": missing,
        "cases": cases,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=False)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out_path}; missing: {len(missing)}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "dask_job_scripts.json"))
    p.add_argument("--case")
    p.add_argument("--workdir")
    p.add_argument("--result")
    args = p.parse_args()
    if args.case:
        res = run_case(args.case, args.workdir)
        with open(args.result, "w") as f:
            json.dump(res, f)
        return
    driver(args.out)


if __name__ == "__main__":
    main()
