"""seamless-dask-wrapper on real batch systems (tests/batchsystems.py): SLURM, PBS through
slurm-wlm-torque's qsub over that SLURM, OAR with the wrapper run as its job user, and pure
Dask on SLURM. Each cluster is started from a status file, as the launcher starts it."""

import json
import os
import subprocess
import time

import pytest

from daskwrapper import start, status_file, stop, suspicious, wait_exit, wait_status

pytest.importorskip("dask_jobqueue")
pytestmark = pytest.mark.batch_dask


JOB = {"cores": 1, "memory": "400MB", "walltime": "00:10:00", "maximum_jobs": 2, "target-duration": "4s"}


def by_value():
    """The tasks' functions, defined where pickle cannot name them: they travel by value
    (the scheduler and the workers cannot import this test module)."""
    def slow(x, seconds=0.5):
        time.sleep(seconds)
        return x * 2

    def job_of_worker():
        return os.environ.get("SLURM_JOB_ID") or os.environ.get("OAR_JOB_ID")

    return slow, job_of_worker


slow, job_of_worker = by_value()


@pytest.fixture
def slurm_wrapper(slurm, tmp_path, monkeypatch):
    """start(parameters, *args) -> (process, status) of a SLURMCluster wrapper; stopped after."""
    for key, value in slurm.env.items():
        monkeypatch.setenv(key, value)
    running = []

    def launch(parameters, *args, cluster="dask_jobqueue::SLURMCluster"):
        directory = tmp_path / f"w{len(running)}"
        directory.mkdir()
        path = status_file(directory, {"partition": slurm.partition, "tmpdir": str(directory), **parameters},
                           log=str(directory / "wrapper.log"))
        process = start(path, "--port-range", "43000", "43999", *args, cluster=cluster, cwd=directory)
        running.append(process)
        status = wait_status(path, process)
        assert status and status["status"] == "running", (status, process.stderr.read())
        return process, status, path

    yield launch
    for process in running:
        stop(process)
    slurm.wait_until(lambda: not slurm.squeue_jobs(), 60, what="the wrapper's jobs to leave the queue")


def test_slurm_tasks_scale_up_finish_and_scale_down(slurm, slurm_wrapper):
    from distributed import Client

    process, status, _ = slurm_wrapper(JOB, "--timeout", "300")
    assert slurm.squeue_jobs() == []  # not interactive: no job before there is work
    with Client(status["scheduler_address"], timeout=30) as client:
        futures = client.map(slow, range(20))
        most = slurm.wait_until(lambda: len(slurm.squeue_jobs()) >= 2 and len(slurm.squeue_jobs()), 60,
                                what="two jobs in squeue")
        assert sorted(f.result(timeout=120) for f in futures) == [2 * x for x in range(20)]
        assert most <= JOB["maximum_jobs"] and max(len(slurm.squeue_jobs()), 0) <= JOB["maximum_jobs"]
        jobs = set(client.run(job_of_worker).values())
        assert jobs and all(jobs)  # the workers are SLURM jobs
        # idle: the jobs are released, while the client is still connected
        slurm.wait_until(lambda: not slurm.squeue_jobs(), 60, what="idle jobs to leave the queue")
        assert process.poll() is None


def test_slurm_scancel_of_a_worker_loses_nothing_and_counts_nothing(slurm, slurm_wrapper):
    from distributed import Client

    _, status, _ = slurm_wrapper(JOB, "--timeout", "300")
    with Client(status["scheduler_address"], timeout=30) as client:
        futures = client.map(slow, range(12), seconds=3)
        slurm.wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, 90, what="two workers")
        time.sleep(1.5)  # both are running tasks now
        victim = slurm.squeue_jobs()[0].id
        slurm.run(["scancel", victim], check=True)
        assert sorted(f.result(timeout=180) for f in futures) == [2 * x for x in range(12)]
        # the cancelled job's tasks were rescheduled as after a graceful retirement
        assert suspicious(client) == 0


def test_slurm_lifetime_rotation_before_walltime_loses_no_task(slurm, slurm_wrapper):
    """walltime 1:30 - stagger 10s - 1m grace: workers retire after 10-30 s and new jobs
    take over; the batch system never kills a worker at walltime. The client takes each
    result as it comes (as Seamless does: results live in the stores, not on workers)."""
    from distributed import Client, as_completed

    # 3 threads a worker (not the 6 of 1 core x throttle 3, twice): the work outlasts the first workers
    _, status, _ = slurm_wrapper({**JOB, "walltime": "00:01:30", "lifetime-stagger": "10s", "worker_threads": 3},
                                 "--timeout", "300")
    with Client(status["scheduler_address"], timeout=30) as client:
        futures = client.map(slow, range(60), seconds=3)
        results, jobs = [], set()
        for future in as_completed(futures, timeout=420):
            results.append(future.result())
            jobs.update(client.run(job_of_worker).values())
        assert sorted(results) == [2 * x for x in range(60)]
        assert len(jobs) > JOB["maximum_jobs"], f"no rotation: jobs {jobs}"
        assert suspicious(client) == 0


def test_slurm_inactivity_timeout_removes_status_file_and_jobs(slurm, slurm_wrapper):
    process, status, path = slurm_wrapper({**JOB, "interactive": True}, "--timeout", "5")
    slurm.wait_until(lambda: slurm.squeue_jobs(), 60, what="the interactive minimum of one job")
    assert wait_exit(process, 120) == 0
    assert not path.exists()
    slurm.wait_until(lambda: not slurm.squeue_jobs(), 60, what="the jobs to be cancelled")


def test_pure_dask_on_slurm(slurm, slurm_wrapper):
    from distributed import Client

    _, status, _ = slurm_wrapper({**JOB, "cores": 2, "maximum_jobs": 1, "pure_dask": True}, "--timeout", "300")
    with Client(status["scheduler_address"], timeout=30) as client:
        assert client.submit(sum, [1, 2, 3]).result(timeout=120) == 6
        assert client.gather(client.map(slow, range(6))) == [0, 2, 4, 6, 8, 10]
        workers = client.scheduler_info()["workers"].values()
        assert len(workers) == 2 and all(w["nthreads"] == 2 for w in workers)  # cores processes, 2 threads
        env = client.run(lambda: os.environ.get("SEAMLESS_WORKER_TRANSFORMATION_THROTTLE"))
        assert set(env.values()) == {None}  # plain Dask workers


def test_pbs_through_torque_qsub(pbs, slurm_wrapper):
    """PBSCluster's #PBS job scripts, submitted with slurm-wlm-torque's qsub to SLURM."""
    from distributed import Client

    _, status, _ = slurm_wrapper(JOB, "--timeout", "300", cluster="dask_jobqueue::PBSCluster")
    with Client(status["scheduler_address"], timeout=30) as client:
        futures = client.map(slow, range(8))
        assert sorted(f.result(timeout=120) for f in futures) == [2 * x for x in range(8)]
        assert all(client.run(job_of_worker).values())
        pbs.wait_until(lambda: not [j for j in pbs.qstat_jobs() if j.state in "QR"], 60,
                       what="idle PBS jobs to end")


def test_oar_as_its_job_user(oar, tmp_path):
    """The wrapper runs as the job user from a virtualenv of Debian's Python, as a user on
    an OAR frontend would; OAR starts jobs with a bare environment, and they still find it."""
    from distributed import Client

    work = oar.job_user_dir("wrapper-")
    bindir = os.path.dirname(oar.job_user_python)
    status = {"status": "starting", "log": str(work / "wrapper.log"),
              "parameters": {**JOB, "memory_per_core_property_name": "not_applicable", "tmpdir": str(work),
                             "job_extra_directives": [f"-d {work}"]}}
    oar.run_as_job_user(["sh", "-c", f"cat > {work}/status.json"], input=json.dumps(status), text=True, check=True)
    path = work / "status.json"
    process = oar.as_job_user([f"{bindir}/seamless-dask-wrapper", "dask_jobqueue::OARCluster", "--port-range",
                               "44000", "44999", "--status-file", str(path), "--timeout", "20"], cwd=work,
                              env={"PATH": f"{bindir}:/usr/bin:/bin"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        data = wait_status(path, process, timeout=120)
        assert data and data["status"] == "running", (data, process.stderr.read())
        with Client(data["scheduler_address"], timeout=30) as client:
            futures = client.map(slow, range(10))
            assert sorted(f.result(timeout=180) for f in futures) == [2 * x for x in range(10)]
            assert all(client.run(job_of_worker).values())  # OAR jobs did the work
            oar.wait_until(lambda: not oar.oarstat_jobs(), 90, what="idle OAR jobs to end")
        assert wait_exit(process, 120) == 0  # inactivity timeout
        assert not path.exists()
    finally:
        stop(process)
