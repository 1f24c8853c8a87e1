"""`seamless-dask-wrapper --print-job-script` against upstream's wrapper, case by case.

The vectors (tests/compat/dask_job_scripts.json) were recorded from upstream seamless_dask 0.4
with the same dask_jobqueue release as ours. Each upstream script is turned into the one we
must print by the deviations that seamless-dask-wrapper(1) documents, and nothing else:

1. the job's Python environment comes first in the prologue (export PATH, and CONDA_PREFIX
   when set), on every batch system, instead of OAR's CONDA_PREFIX lines when a log is set;
2. the job-log directives (#SBATCH --output/--error, #OAR --stdout/--stderr) are in the
   header, where the batch system reads them, not after the user's prologue;
3. no `--name worker-$SLURM_JOB_ID`: workers keep dask_jobqueue's names, which adaptive
   scaling uses to find a worker's job;
4. with maximum_jobs 1, no worker lifetime;
5. every extra_dask_config key is exported, not only distributed.worker/scheduler/nanny ones;
6. a Seamless worker (neither pure nor exclusive) offers its slots, resource S = cores x
   throttle, from its start (upstream's plugin adds it later, which strands tasks
   submitted before it on no worker at all);
7. and it has twice as many threads as slots (--nthreads 2 x cores x throttle; 2 in
   exclusive mode): the others are for nested transformations while their parents wait.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("dask_jobqueue")

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = json.load(open(os.path.join(HERE, "compat", "dask_job_scripts.json")))
CASES = {case["name"]: case for case in VECTORS["cases"]}
HOST = VECTORS["wrapper_invocation"]["host"]
PORTS = VECTORS["wrapper_invocation"]["port_range"]
LOG_DIRECTIVE = re.compile(r"^#(SBATCH --(output|error)|OAR --(stdout|stderr))=")
UPSTREAM_EXPORTED = ("distributed.worker.", "distributed.scheduler.", "distributed.nanny.")


def print_job_script(case, tmp_path):
    status = {"status": "starting", "parameters": case["parameters"]}
    if case.get("status_file_log"):
        status["log"] = str(tmp_path / "wrapper.log")
    path = tmp_path / f"{case['name']}.json"
    path.write_text(json.dumps(status))
    env = {k: v for k, v in os.environ.items() if k != "CONDA_PREFIX"}
    env.update(case.get("env", {}))
    result = subprocess.run(
        ["seamless-dask-wrapper", case["cluster"], "--status-file", str(path), "--print-job-script",
         "--host", HOST, "--port-range", str(PORTS[0]), str(PORTS[1])],
        capture_output=True, text=True, env=env, timeout=120)
    assert path.read_text() == json.dumps(status), "--print-job-script must not touch the status file"
    return result, status.get("log")


def expected(case) -> list:
    """Upstream's script with our documented deviations applied."""
    lines = case["job_script"].splitlines()
    params = case["parameters"]
    # 1. our environment lines instead of upstream's OAR ones
    lines = [l for l in lines if l not in ("export CONDA_PREFIX=" + case.get("env", {}).get("CONDA_PREFIX", "?"),
                                           'export PATH="$CONDA_PREFIX/bin:$PATH"')]
    # 2. log directives into the header (where dask_jobqueue puts job_extra_directives)
    logs = [l for l in lines if LOG_DIRECTIVE.match(l)]
    lines = [l for l in lines if not LOG_DIRECTIVE.match(l)]
    header_end = max(i for i, l in enumerate(lines) if l.startswith("#") and i > 0) + 1
    prefix = next(l.split()[0] for l in lines if l.startswith("#") and not l.startswith("#!"))
    extra = [f"{prefix} {d}" for d in params.get("job_extra_directives", [])]
    at = lines.index(extra[-1]) + 1 if extra else header_end
    if prefix == "#OAR" and not extra:  # OAR's memory filter follows the extra directives
        at = next((i for i, l in enumerate(lines) if l.startswith("#OAR -p ")), at)
    lines[at:at] = logs
    ours = [f'export PATH={os.path.dirname(sys_executable())}:"$PATH"']
    if "CONDA_PREFIX" in case.get("env", {}):
        ours.insert(0, f"export CONDA_PREFIX={case['env']['CONDA_PREFIX']}")
    header_end += len(logs)
    lines[header_end:header_end] = ours
    # 3. dask_jobqueue's worker names
    lines = [l.replace(" --name worker-$SLURM_JOB_ID", "") for l in lines]
    # 4. no lifetime with one job
    if params.get("maximum_jobs", 1) == 1:
        lines = [l for l in lines if "__LIFETIME__" not in l]
    # 6. the Seamless slots, from the start
    if not (params.get("pure_dask") or params.get("exclusive")):
        resources = {"S": float(params["cores"] * params.get("transformation_throttle", 3)),
                     **params.get("dask-resources", {})}
        line = f"export DASK_DISTRIBUTED__WORKER__RESOURCES={shlex.quote(json.dumps(resources))}"
        known = [i for i, l in enumerate(lines) if l.startswith("export DASK_DISTRIBUTED__WORKER__RESOURCES=")]
        if known:
            lines[known[0]] = line
        else:
            before = {f"export DASK_DISTRIBUTED__{key}" for key in (  # the exports that precede it
                "WORKER__DAEMON", "SCHEDULER__UNKNOWN_TASK_DURATION", "SCHEDULER__TARGET_DURATION", "WORKER__PORT",
                "NANNY__PORT", "WORKER__LIFETIME__STAGGER", "WORKER__LIFETIME__DURATION")}
            lines.insert(max(i for i, l in enumerate(lines) if l.split("=")[0] in before) + 1, line)
    # 7. threads for the slots and as many for nested work
    if not (params.get("pure_dask") or "worker_threads" in params):
        threads = 1 if params.get("exclusive") else params["cores"] * params.get("transformation_throttle", 3)
        lines = [l.replace(f" --nthreads {threads} --worker-port", f" --nthreads {2 * threads} --worker-port")
                 for l in lines]
    # 5. every extra_dask_config key
    previous = None
    for key, value in params.get("extra_dask_config", {}).items():
        line = f"export {export_name(key)}={value}"
        if not key.startswith(UPSTREAM_EXPORTED):
            lines.insert(lines.index(previous) + 1, line)
        previous = line
    return lines


def export_name(key):
    return "DASK_" + "__".join(p.replace("-", "_").upper() for p in key.split("."))


def sys_executable():
    return subprocess.run(["python", "-c", "import sys; print(sys.executable)"],
                          capture_output=True, text=True).stdout.strip()


def normalize(text, log):
    text = re.sub(r"tcp://[^ ]+:\d+", "{SCHEDULER_ADDRESS}", text)
    if log:
        text = text.replace(log, "{LOG}")
    return text.rstrip().splitlines()


SCRIPTS = sorted(name for name, case in CASES.items() if case.get("job_script"))
ERRORS = sorted(name for name, case in CASES.items() if case.get("error"))
LOCAL = sorted(name for name, case in CASES.items() if case.get("local_cluster_kwargs"))


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    """Every case printed once, two at a time (each is a Python start)."""
    base = tmp_path_factory.mktemp("scripts")

    def run(name):
        directory = base / name
        directory.mkdir()
        return name, print_job_script(CASES[name], directory)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, sorted(CASES)))


def test_vectors_cover_the_cases_the_issue_names():
    wanted = {"slurm_seed_example_1", "slurm_seed_example_2", "slurm_maximum_jobs_1",
              "slurm_exclusive_without_cores", "slurm_exclusive_with_cores", "slurm_job_extra_directives",
              "slurm_job_script_prologue_with_log", "slurm_project", "slurm_transformation_throttle",
              "slurm_worker_threads", "slurm_processes", "slurm_internal_port_range_list", "slurm_extra_dask_config",
              "slurm_dask_resources", "slurm_lifetime_stagger", "oar_memory_per_core_property_name",
              "oar_resource_spec", "pbs", "error_memory_missing", "error_cores_missing",
              "error_job_extra_directives_not_list", "error_extra_dask_config_non_string_value",
              "error_lifetime_negative", "error_oar_without_memory_per_core_property_name"}
    assert wanted <= set(CASES)


@pytest.mark.parametrize("name", SCRIPTS)
def test_job_script_matches_upstream(printed, name):
    result, log = printed[name]
    assert result.returncode == 0, result.stderr
    assert normalize(result.stdout, log) == expected(CASES[name])


@pytest.mark.parametrize("name", ERRORS)
def test_rejected_like_upstream(printed, name):
    result, _ = printed[name]
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seamless-dask-wrapper: error: "), result.stderr
    # the one line names the parameter that upstream's message names
    named = re.findall(r"'([a-z_-]+)'", CASES[name]["error"]["message"]) or ["lifetime"]
    assert f"'{named[0]}'" in lines[0] or (named[0] == "lifetime" and "walltime" in lines[0]), lines[0]


@pytest.mark.parametrize("name", LOCAL)
def test_local_cluster_keywords(printed, name):
    """Upstream's kwargs, where it is right: n_workers, threads, ports, resources. Ours add
    the job's memory and tmpdir, bind the dashboard to --host, and set no lifetime without
    a walltime to end (upstream forced 24h with one worker)."""
    result, _ = printed[name]
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)
    theirs = CASES[name]["local_cluster_kwargs"]
    for key in ("n_workers", "host", "worker_port", "port"):
        assert ours[key] == theirs[key], key
    assert ours["threads_per_worker"] == 2 * theirs["threads_per_worker"]
    assert ours.get("resources") == {"S": float(CASES[name]["parameters"].get("cores", 1) * 3), **(theirs["resources"] or {})}
    assert ours["dashboard_address"] == f"{HOST}:{ours['dashboard_address'].rsplit(':', 1)[1]}"
    assert "lifetime" not in ours
    assert ours["local_directory"] == "/tmp" and ours["memory_limit"] == 2 * 10**9
