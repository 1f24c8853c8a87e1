"""One dask-jobqueue worker job on a real batch system, one task, all on loopback.

    python dask_smoke.py slurm|pbs|oar QUEUE LOGDIR

Run with the python the worker jobs are to use (it is their interpreter), from a directory
the jobs may write into (qsub puts its NAME.oID and NAME.eID there); for OAR as the job user. Prints one JSON line: the task's result, the batch
job that ran it and its uid, the job script and the seconds from scale() to the result.
"""

import json
import os
import sys
import time

import dask
from distributed import Client

kind, queue, logdir = sys.argv[1:4]
dask.config.set({"temporary-directory": logdir})  # not a /tmp/dask-scratch-space of another user's
common = dict(cores=1, memory="1GB", walltime="00:05:00", python=sys.executable, log_directory=logdir,
              local_directory=logdir,
              scheduler_options={"host": "127.0.0.1"}, worker_extra_args=["--host", "127.0.0.1"])
if kind == "slurm":
    from dask_jobqueue import SLURMCluster as Cluster
    options, job_variable = dict(queue=queue), "SLURM_JOB_ID"
elif kind == "pbs":
    from dask_jobqueue import PBSCluster as Cluster
    options, job_variable = dict(queue=queue), "SLURM_JOB_ID"  # a SLURM job under its PBS face
elif kind == "oar":
    from dask_jobqueue import OARCluster as Cluster
    # no memory property on this OAR's resources
    options, job_variable = dict(memory_per_core_property_name="not_applicable"), "OAR_JOB_ID"
else:
    sys.exit(f"dask_smoke.py: unknown batch system {kind!r} (slurm, pbs or oar)")

with Cluster(**common, **options) as cluster, Client(cluster) as client:
    start = time.monotonic()
    cluster.scale(jobs=1)
    result, job, uid = client.submit(lambda x: (x + 1, os.environ.get(job_variable), os.getuid()), 1).result(240)
    print(json.dumps({"result": result, "job": job, "uid": uid, "job_script": cluster.job_script(),
                      "seconds": round(time.monotonic() - start, 2)}), flush=True)
