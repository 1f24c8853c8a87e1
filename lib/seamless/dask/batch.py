"""What differs between batch systems, as data (the mechanism is in parameters.py).

dask_jobqueue writes each system's header (#SBATCH, #OAR, #PBS) from the same keys; what
seamless adds on top differs only in these fields. `None` for a system that dask_jobqueue
knows but seamless has nothing special for (SGE, LSF, HTCondor, Moab): the common part.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchSystem:
    name: str
    # job-log directives for a log path L: where a job's stdout/stderr go ("{log}" = L)
    log_directives: tuple = ()
    # the variable that holds the job's own CPU count, and the one a program reads as
    # its share of them
    cpus_variable: str | None = None
    task_cpus_variable: str | None = None
    # the jobqueue key that becomes the accounting project (-A / --project)
    project_key: str = "project"
    # the directive of resource-property filters, of which only the last one counts
    property_directive: str | None = None


SYSTEMS = {
    "slurm": BatchSystem(
        name="slurm",
        log_directives=("--output={log}-%j.out", "--error={log}-%j.err"),
        cpus_variable="SLURM_JOB_CPUS_PER_NODE",
        task_cpus_variable="SLURM_CPUS_PER_TASK",
        project_key="account",  # dask_jobqueue >= 0.9 warns about "project" for -A
    ),
    "oar": BatchSystem(
        name="oar",
        log_directives=("--stdout={log}-%jobid%.out", "--stderr={log}-%jobid%.err"),
        property_directive="-p",
    ),
    "pbs": BatchSystem(name="pbs", project_key="account"),
}

# every dask_jobqueue config section: a Cluster given as a factory reads whichever it uses
JOBQUEUE_SECTIONS = ("slurm", "oar", "pbs", "sge", "lsf", "htcondor", "moab", "condor")

GENERIC = BatchSystem(name="generic")


def system(name: str | None) -> BatchSystem:
    return SYSTEMS.get(name or "", GENERIC)
