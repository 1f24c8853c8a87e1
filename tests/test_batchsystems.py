"""The batch-system fixtures (batchsystems.py) run real jobs: SLURM, PBS over SLURM, OAR,
the job user's Python, and a one-task Dask cluster on each."""

import json
import os
import pathlib
import re
import subprocess

import pytest

BATCH = pathlib.Path(__file__).resolve().parent / "batch"


def read_when_there(path):
    return path.read_text() if path.exists() and path.stat().st_size else None


def wait_for_end(oar, job_id):
    """The state an OAR job ended in."""
    def ended():
        state = oar.job_state(job_id)
        return state if state in ("Terminated", "Error") else None
    return oar.wait_until(ended, 60, what=f"OAR job {job_id} to end")


def test_sbatch_job_runs_and_scancel_cancels(slurm, tmp_path):
    out = tmp_path / "job.out"
    proc = slurm.run(["sbatch", "--parsable", "-o", str(out), "--wrap",
                      "echo job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION node=$SLURMD_NODENAME"],
                     cwd=tmp_path, capture_output=True, text=True, check=True)
    job_id = proc.stdout.strip().split(";")[0]
    text = slurm.wait_until(lambda: read_when_there(out), 60, what="the job's output")
    assert text.split() == [f"job={job_id}", f"partition={slurm.partition}", f"node={slurm.node}"]
    assert slurm.wait_until(lambda: slurm.job(job_id)["JobState"] == "COMPLETED", 30)

    sleeper = slurm.run(["sbatch", "--parsable", "-J", "sleeper", "-o", "/dev/null", "--wrap", "sleep 300"],
                        cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    slurm.wait_until(lambda: (sleeper, "sleeper", "RUNNING") in slurm.squeue_jobs(), 60, what="RUNNING in squeue")
    slurm.run(["scancel", sleeper], check=True)
    slurm.wait_until(lambda: sleeper not in [job.id for job in slurm.squeue_jobs()], 60, what="the queue to empty")
    assert slurm.job(sleeper)["JobState"] == "CANCELLED"
    assert slurm.job("999999") is None


def test_slurm_clusters_are_independent_and_stop_with_their_owner(slurm, tmp_path):
    """A second cluster next to the session's, owned by a process that dies: its watchdog
    stops it (so a killed session leaves no daemons) and the session's cluster is untouched."""
    owner = subprocess.Popen(["sleep", "600"])
    directory = tmp_path / "second"
    env = {**os.environ, "OWNER_PID": str(owner.pid)}
    subprocess.run(["bash", str(BATCH / "start-slurm.sh"), directory], env=env, check=True, capture_output=True)
    pids = {p.stem: int(p.read_text()) for p in (directory / "pids").glob("*.pid")}
    assert set(pids) == {"munged", "slurmctld", "slurmd", "watchdog"}
    second = {"SLURM_CONF": str(directory / "slurm.conf")}
    assert slurm.run(["scontrol", "ping"], env=second, capture_output=True, text=True).stdout.count("UP") == 1
    ports = [re.findall(r"^Slurm\w*Port=(\d+)$", conf.read_text(), re.M) for conf in (directory / "slurm.conf",
                                                                                    slurm.dir / "slurm.conf")]
    assert len(set(ports[0] + ports[1])) == 4  # free ports of their own

    owner.kill()
    owner.wait()
    slurm.wait_until(lambda: not any(os.path.exists(f"/proc/{pid}/cmdline") and open(f"/proc/{pid}/cmdline").read()
                                     for pid in pids.values()), 60, what="the second cluster's daemons to stop")
    assert "owner" in (directory / "log" / "watchdog.out").read_text()
    assert "UP" in slurm.run(["scontrol", "ping"], capture_output=True, text=True).stdout  # the session's
    subprocess.run(["bash", str(BATCH / "stop-slurm.sh"), directory], check=True, capture_output=True)  # idempotent


def test_qsub_translates_pbs_directives(pbs, tmp_path):
    script = tmp_path / "job.pbs"
    out = tmp_path / "job.out"
    script.write_text("#!/bin/bash\n"
                      "#PBS -N pbs-smoke\n"
                      f"#PBS -q {pbs.partition}\n"
                      "#PBS -A someproject\n"
                      "#PBS -l walltime=00:07:00\n"
                      "#PBS -l select=1:ncpus=2:mem=300MB\n"
                      "echo cpus=$SLURM_CPUS_ON_NODE name=$SLURM_JOB_NAME\n")
    # qsub passes sbatch -o/-e of its own (default NAME.oID, NAME.eID in the cwd): they win over #PBS -o/-e
    proc = pbs.run(["qsub", "-o", str(out), "-e", str(tmp_path / "job.err"), str(script)],
                   cwd=tmp_path, capture_output=True, text=True, check=True)
    job_id = re.search(r"\d+", proc.stdout).group()  # what dask-jobqueue's PBSJob reads
    text = pbs.wait_until(lambda: read_when_there(out), 60, what="the job's output")
    assert text.split() == ["cpus=2", "name=pbs-smoke"]
    job = pbs.job(job_id)
    assert (job["JobName"], job["Partition"], job["Account"]) == ("pbs-smoke", pbs.partition, "someproject")
    assert (job["TimeLimit"], job["MinCPUsNode"], job["MinMemoryNode"]) == ("00:07:00", "2", "300M")
    assert (job_id, "pbs-smoke", "C") in pbs.qstat_jobs()

    script.write_text("#!/bin/bash\nsleep 300\n")
    sleeper = pbs.run(["qsub", "-N", "pbs-sleeper", str(script)],
                      cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    pbs.wait_until(lambda: (sleeper, "pbs-sleeper", "R") in pbs.qstat_jobs(), 60, what="R in qstat")
    pbs.run(["qdel", sleeper], check=True)
    pbs.wait_until(lambda: pbs.job(sleeper)["JobState"] == "CANCELLED", 60, what="qdel to cancel")


def test_oarsub_runs_as_the_job_user(oar):
    proc = oar.run_as_job_user(["oarsub", "-l", "/nodes=1/core=1,walltime=0:05:00",
                                "echo user=$(id -un) job=$OAR_JOB_ID dir=$(pwd) home=$HOME"],
                               capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    job_id = re.search(r"OAR_JOB_ID=(\d+)", proc.stdout).group(1)
    assert wait_for_end(oar, job_id) == "Terminated"
    text = (oar.jobdir / f"OAR.{job_id}.stdout").read_text()
    assert text.split() == [f"user={oar.user}", f"job={job_id}", f"dir={oar.jobdir}", f"home={oar.home}"]

    refused = subprocess.run(["oarsub", "-l", "/nodes=1/core=1", "true"], cwd=oar.jobdir,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0  # root's jobs: OAR's admission rules refuse them

    directory = oar.job_user_dir()
    proc = oar.run_as_job_user(["oarsub", "-n", "sleeper", "-l", "/nodes=1/core=1,walltime=0:05:00", "sleep 300"],
                               cwd=directory, capture_output=True, text=True, timeout=60)
    sleeper = re.search(r"OAR_JOB_ID=(\d+)", proc.stdout).group(1)
    oar.wait_until(lambda: (sleeper, "sleeper", "Running") in oar.oarstat_jobs(), 60, what="Running in oarstat")
    oar.run_as_job_user(["oardel", sleeper], capture_output=True, timeout=60, check=True)
    oar.wait_until(lambda: sleeper not in [job.id for job in oar.oarstat_jobs()], 60, what="oardel")
    assert oar.job_state(sleeper) == "Error"  # what OAR calls a deleted job


def test_job_user_python_has_the_project_and_dask(oar):
    python = oar.job_user_python
    assert not python.startswith(("/root", str(pathlib.Path(__file__).parents[1])))
    proc = oar.run_as_job_user([python, "-c", "import distributed, dask_jobqueue, seamless, sys, os; "
                                "print(sys.prefix, seamless.__file__, os.getuid())"],
                               capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    prefix, module, uid = proc.stdout.split()
    assert module.startswith(prefix + "/lib/")  # installed, not the checkout's sources
    assert int(uid) == oar.uid


def dask_smoke(kind, python, queue, logdir, run=subprocess.run, **kwargs):
    proc = run([python, "-", kind, queue, str(logdir)], input=(BATCH / "dask_smoke.py").read_text(),
               capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.batch_dask
@pytest.mark.parametrize("system", ["slurm", "pbs"])
def test_dask_jobqueue_worker_on_slurm_and_pbs(system, slurm, request, dask_python, tmp_path):
    cluster = request.getfixturevalue(system)
    report = dask_smoke(system, dask_python, cluster.partition, tmp_path, cwd=tmp_path,
                        env={**os.environ, **cluster.env})
    assert (report["result"], report["uid"]) == (2, 0)  # SLURM's jobs run as root here
    assert {"slurm": f"#SBATCH -p {cluster.partition}", "pbs": f"#PBS -q {cluster.partition}"}[system] \
        in report["job_script"].splitlines()
    job = cluster.job(report["job"])
    assert job["JobName"] == "dask-worker" and job["JobState"] in ("CANCELLED", "COMPLETED", "COMPLETING")
    cluster.wait_until(lambda: report["job"] not in [j.id for j in cluster.squeue_jobs()], 60,
                       what="close() to cancel the worker job")


@pytest.mark.batch_dask
def test_dask_jobqueue_worker_on_oar(oar):
    logdir = oar.job_user_dir("dask-")
    report = dask_smoke("oar", oar.job_user_python, "default", logdir, run=oar.run_as_job_user, cwd=logdir)
    assert (report["result"], report["uid"]) == (2, oar.uid)
    assert any(line.startswith("#OAR -l /nodes=1/core=1") for line in report["job_script"].splitlines())
    oar.wait_until(lambda: report["job"] not in [j.id for j in oar.oarstat_jobs()], 60,
                   what="close() to delete the worker job")
    assert wait_for_end(oar, report["job"])
