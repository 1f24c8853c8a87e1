"""The wrapper's parameter builder: parameters in; sizing, dask config, exports, jobqueue out.
Pure Python: no dask is imported here."""

import sys

import pytest

from seamless.dask.parameters import ParameterError, build, memory_bytes, nested, parse_duration

BASE = {"cores": 4, "memory": "8GB", "walltime": "01:00:00", "maximum_jobs": 4}


def plan(system="slurm", **params):
    return build({**BASE, **params}, system=system, port_range=(61000, 61099), scheduler_port=61000,
                 dashboard_port=61001, environ={})


def test_importing_the_builder_imports_no_dask():
    import subprocess

    code = "import sys, seamless.dask.parameters; print([m for m in sys.modules if m.split('.')[0] in " \
           "('dask', 'distributed', 'dask_jobqueue')])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_default_mode_sizing():
    s = plan().settings
    assert (s.cores, s.job_cores, s.processes, s.worker_threads) == (4, 4, 1, 24)  # slots x 2: room for nested work
    assert s.lifetime == "3300s" and s.lifetime_stagger == "4m"
    assert s.target_duration == 600 * 4  # one job runs `cores` transformations at once


def test_pure_dask_sizing():
    p = plan(pure_dask=True)
    assert (p.settings.processes, p.settings.worker_threads) == (4, 2)
    assert "SEAMLESS_WORKER_TRANSFORMATION_THROTTLE" not in p.environment
    assert p.adaptive["kind"] == "dask"


def test_exclusive_sizing():
    p = plan(exclusive=True, cores=None)
    s = p.settings
    assert (s.cores, s.job_cores, s.processes, s.worker_threads) == (1, 1, 1, 2)  # its slot, and a nested one
    assert s.resources == {"S": 1.0} and p.environment["SEAMLESS_DASK_QUEUE_EXCLUSIVE"] == "1"
    assert "export SLURM_CPUS_PER_TASK=$SLURM_JOB_CPUS_PER_NODE" in p.jobqueue["job-script-prologue"]
    assert p.adaptive["kind"] == "exclusive"
    with_cores = plan(exclusive=True, cores=8).settings
    assert (with_cores.job_cores, with_cores.worker_threads) == (8, 2)


def test_job_cores_and_throttle():
    s = plan(job_cores=2, transformation_throttle=5).settings
    assert (s.job_cores, s.worker_threads) == (2, 40)
    assert plan(transformation_throttle=5).environment["SEAMLESS_WORKER_TRANSFORMATION_THROTTLE"] == "5"


def test_one_job_has_no_lifetime():
    p = plan(maximum_jobs=1)
    assert p.settings.lifetime is None
    assert not [k for k in p.dask_config if "lifetime" in k]
    assert plan(maximum_jobs=1, lifetime="20m").settings.lifetime == "20m"


def test_lifetime_from_walltime():
    assert plan(walltime="00:10:00", **{"lifetime-stagger": "1m"}).settings.lifetime == "480s"
    assert plan(walltime="2-00:00:00").settings.lifetime == f"{2 * 86400 - 300}s"


def test_dask_config_and_exports_order():
    p = plan(**{"internal-port-range": [62000, 62099], "dask-resources": {"GPU": 1},
                "extra_dask_config": {"distributed.comm.timeouts.connect": "60s"}})
    assert list(p.dask_config) == [
        "distributed.worker.daemon", "distributed.scheduler.unknown-task-duration",
        "distributed.scheduler.target-duration", "distributed.worker.port", "distributed.nanny.port",
        "distributed.worker.lifetime.stagger", "distributed.worker.lifetime.duration",
        "distributed.worker.resources", "distributed.comm.timeouts.connect"]
    assert p.exports[-2:] == ["export DASK_DISTRIBUTED__WORKER__RESOURCES='{\"S\": 12.0, \"GPU\": 1}'",
                              "export DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=60s"]
    assert nested(p.dask_config)["distributed"]["worker"]["lifetime"] == {"stagger": "4m", "duration": "3300s"}
    assert p.jobqueue["worker-extra-args"] == ["--nthreads 24", "--worker-port=62000:62099",
                                              "--nanny-port=62000:62099"]


def test_values_are_quoted_in_exports():
    p = plan(extra_dask_config={"distributed.worker.x": "a b; rm -rf ~"})
    assert "export DASK_DISTRIBUTED__WORKER__X='a b; rm -rf ~'" in p.exports


def test_log_directives_are_in_the_header():
    slurm = build(BASE, system="slurm", log="/logs/w", environ={})
    assert slurm.jobqueue["job-extra-directives"] == ["--output=/logs/w-%j.out", "--error=/logs/w-%j.err"]
    oar = build({**BASE, "memory_per_core_property_name": "memcore"}, system="oar", log="/logs/w", environ={})
    assert oar.jobqueue["job-extra-directives"] == ["--stdout=/logs/w-%jobid%.out", "--stderr=/logs/w-%jobid%.err"]
    assert "job-extra-directives" not in build(BASE, system="pbs", log="/logs/w", environ={}).jobqueue


def test_jobs_find_our_python_on_every_system():
    for system in ("slurm", "pbs"):
        prologue = build(BASE, system=system, environ={"CONDA_PREFIX": "/opt/env"}, python="/opt/env/bin/python3"
                         ).jobqueue["job-script-prologue"]
        assert prologue[:2] == ["export CONDA_PREFIX=/opt/env", 'export PATH=/opt/env/bin:"$PATH"']
    # the user's prologue comes after ours, so that it may change the environment
    prologue = plan(job_script_prologue=["module load x"]).jobqueue["job-script-prologue"]
    assert prologue.index("module load x") == 1


def test_project_is_the_account_on_slurm_and_pbs():
    assert plan(project="p").jobqueue["account"] == "p"
    assert plan("pbs", project="p").jobqueue["account"] == "p"
    assert plan("oar", project="p", memory_per_core_property_name="m").jobqueue["project"] == "p"


@pytest.mark.parametrize("params, named", [
    ({"memory": None}, "'memory'"),
    ({"memory": "lots"}, "'memory'"),
    ({"cores": None}, "'cores'"),
    ({"cores": 0}, "'cores'"),
    ({"cores": True}, "'cores'"),
    ({"maximum_jobs": -1}, "'maximum_jobs'"),
    ({"walltime": None}, "'walltime'"),
    ({"walltime": "soon"}, "'walltime'"),
    ({"walltime": "00:04:00"}, "walltime 00:04:00 leaves no time"),
    ({"lifetime": "0s"}, "'lifetime'"),
    ({"lifetime": "-5m"}, "'lifetime'"),
    ({"lifetime": "2h"}, "not shorter than the walltime"),
    ({"job_extra_directives": "--exclusive"}, "'job_extra_directives'"),
    ({"job_script_prologue": [1]}, "'job_script_prologue'"),
    ({"extra_dask_config": {"a.b": 600}}, "'extra_dask_config'"),
    ({"dask-resources": ["S"]}, "'dask-resources'"),
    ({"internal-port-range": "1-2"}, "'internal-port-range'"),
    ({"interactive": "maybe"}, "'interactive'"),
    ({"exclusive": True, "job_cores": 2}, "'job_cores'"),
    ({"maximum_job": 2}, "did you mean 'maximum_jobs'"),
])
def test_rejections_name_the_parameter(params, named):
    with pytest.raises(ParameterError) as info:
        build({k: v for k, v in {**BASE, **params}.items() if v is not None}, system="slurm", environ={})
    assert named in str(info.value) and "\n" not in str(info.value)


def test_oar_needs_the_memory_property():
    with pytest.raises(ParameterError, match="'memory_per_core_property_name'"):
        plan("oar")


def test_local_cluster_needs_no_walltime_and_sizes_like_a_job():
    p = build({"cores": 2, "maximum_jobs": 3, "memory": "4GB", "pure_dask": True}, local=True, environ={})
    assert p.local_cluster["n_workers"] == 3 and p.local_cluster["memory_limit"] == 4 * 10**9
    assert "lifetime" not in p.local_cluster
    restart = build({"cores": 1, "lifetime": "1h", "maximum_jobs": 2}, local=True, environ={}).local_cluster
    assert restart["lifetime"] == "1h" and restart["lifetime_restart"] is True


def test_booleans_as_upstream_reads_them():
    assert plan(interactive="yes").settings.minimum_jobs == 1
    assert plan(interactive="off").settings.minimum_jobs == 0


def test_scale_down_follows_target_duration():
    a = plan(**{"target-duration": "20s"}).adaptive
    assert a["interval"] * a["wait_count"] == 20
    assert plan().adaptive["interval"] * plan().adaptive["wait_count"] == 300  # at most 5 min


@pytest.mark.parametrize("text, seconds", [("01:00:00", 3600), ("10:30", 630), ("1-00:00:01", 86401),
                                           ("4m", 240), ("30s", 30), ("1.5h", 5400), (90, 90), ("soon", None)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_memory_sizes():
    assert memory_bytes("54000MB") == 54e9 and memory_bytes("16GiB") == 16 * 2**30 and memory_bytes("2 gb") == 2e9


def test_oar_node_and_memory_filters_are_one_directive():
    """OAR reads only the last -p; dask_jobqueue's own merge breaks the node's quotes."""
    section = plan("oar", memory_per_core_property_name="memcore",
                   job_extra_directives=["-p host='n12'", "-t besteffort"]).jobqueue
    assert section["job-extra-directives"] == ["-t besteffort", "-p \"host='n12' AND memcore>=1908\""]
    assert section["memory-per-core-property-name"] == "not_applicable"
    alone = plan("oar", memory_per_core_property_name="memcore").jobqueue
    assert "job-extra-directives" not in alone and alone["memory-per-core-property-name"] == "memcore"


@pytest.mark.parametrize("walltime, clock", [("01:00:00", "01:00:00"), ("30m", "00:30:00"), ("1.5h", "01:30:00"),
                                             (3600, "01:00:00"), ("1-00:00:00", "24:00:00"), ("90:00", "01:30:00")])
def test_walltime_reaches_the_batch_system_as_a_clock(walltime, clock):
    assert plan(walltime=walltime).jobqueue["walltime"] == clock
