"""The launcher side of Dask clusters: share/tools.yaml's daskserver and pure_daskserver,
a queue as seamless-dask-wrapper's parameters, their keys and errors; and, with the real
wrapper, `seamless-launch daskserver` here and over ssh, seamless-init, pure Dask."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

import sshd
from conftest import tool
from seamless.config.errors import ConfigError
from seamless.config.resolve import resolve
from seamless.config.tools import render
from test_launch import frontend  # noqa: F401 (fixture)

CLUSTERS = """
laptop:
  type: local
  workers: 3
  default_queue: small
  queues:
    small: {memory: 2GB, walltime: "01:00:00"}
    excl: {exclusive: true, cores: 2, memory: 2GB, walltime: "01:00:00"}
  frontends:
    - hashserver: {bufferdir: /tmp/nowhere}
      database: {database_dir: /tmp/nowhere}
      daskserver: {}
slurmy:
  type: slurm
  default_queue: normal
  queues:
    normal: {cores: 4, memory: 8GB, walltime: "01:00:00", conda: daskenv, maximum_jobs: 10,
             job_extra_directives: ["--qos=high"], unknown-task-duration: 30s, lifetime_stagger: 2m}
    highmem: {TEMPLATE: normal, memory: 64GB, maximum_jobs: null, dask_resources: {GPU: 1},
              internal_port_range: [62000, 62099]}
    whole: {exclusive: true, memory: 100GB, walltime: "02:00:00"}
    fixed: {exclusive: true, cores: 8, memory: 16GB, walltime: "02:00:00"}
  frontends:
    - hostname: login.slurm
      daskserver: {network_interface: 10.1.0.5, port_start: 60000, port_end: 60100}
oary:
  type: oar
  memory_per_core_property_name: memcore
  default_queue: normal
  queues:
    normal: {cores: 4, memory: 8GB, walltime: "01:00:00", project: capsid}
    whole: {exclusive: true, memory: 16GB, walltime: "02:00:00"}
  frontends:
    - hostname: login.oar
      daskserver: {}
pureslurm:
  type: slurm
  default_queue: normal
  queues:
    normal: {cores: 4, memory: 8GB, walltime: "01:00:00", exclusive: true}
    whole: {exclusive: true, memory: 16GB, walltime: "02:00:00"}
  frontends:
    - hostname: login.slurm
      daskserver: {pure_dask: true}
pbsy:
  type: pbs
  default_queue: normal
  queues:
    normal: {cores: 4, memory: 8GB, walltime: "01:00:00", partition: batch}
    whole: {exclusive: true, memory: 16GB, walltime: "02:00:00"}
  frontends:
    - hostname: login.pbs
      daskserver: {}
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    (h / ".seamless").mkdir(parents=True)
    (h / ".seamless" / "clusters.yaml").write_text(CLUSTERS)
    monkeypatch.setenv("HOME", str(h))
    return h


def configured(tmp_path, text, stage=None, **choices):
    d = tmp_path / "work"
    d.mkdir(exist_ok=True)
    (d / "seamless.yaml").write_text(textwrap.dedent(text))
    return resolve(str(d), stage, None, choices)


def dask_spec(tmp_path, cluster, extra="", stage=None, **choices):
    r = configured(tmp_path, f"- project: p\n- cluster: {cluster}\n- execution: remote\n{extra}", stage, **choices)
    return render("pure_daskserver" if r.pure_dask else "daskserver", r), r


# --- the command and the launch settings -------------------------------------------------------


@pytest.mark.parametrize("cluster, cluster_string, options", [
    ("laptop", "distributed::LocalCluster", []),
    ("slurmy", "dask_jobqueue::SLURMCluster", ["--port-range", "60000", "60100", "--host", "10.1.0.5"]),
    ("oary", "dask_jobqueue::OARCluster", []),
    ("pbsy", "dask_jobqueue::PBSCluster", []),
])
def test_the_wrapper_command_per_cluster_type(home, tmp_path, cluster, cluster_string, options):
    spec = render("daskserver", configured(tmp_path, f"- project: p\n- cluster: {cluster}\n"))
    # no --token-file: the Dask protocol has no tokens
    assert spec["argv"] == ["seamless-dask-wrapper", cluster_string, *options[:3], "--status-file", "STATUS_FILE",
                            *options[3:], "--timeout", "600"]
    assert (spec["handshake"], spec["handshake_port"], spec["protocol"]) == ("health", "dashboard_port", "tcp")
    assert spec["same_parameters"] and spec["workdir"] == "~/.seamless/daskserver"
    assert spec["hostname"] == ("localhost" if cluster == "laptop" else f"login.{cluster[:-1]}")


def test_parameters_of_the_default_queue_and_of_a_template(home, tmp_path):
    spec, _ = dask_spec(tmp_path, "slurmy")
    assert spec["key"] == "daskserver-slurmy-rw-p--QUEUE-normal"
    assert spec["conda"] == "daskenv"  # the wrapper (and so its workers) run in the queue's environment
    assert spec["parameters"] == {"cores": 4, "memory": "8GB", "walltime": "01:00:00", "maximum_jobs": 10,
                                  "job_extra_directives": ["--qos=high"], "unknown-task-duration": "30s",
                                  "lifetime-stagger": "2m", "record": False}
    spec, _ = dask_spec(tmp_path, "slurmy", "- queue: highmem\n")
    assert spec["key"] == "daskserver-slurmy-rw-p--QUEUE-highmem"
    # TEMPLATE copies normal; an explicit null unsets maximum_jobs; Dask names are hyphenated
    assert spec["parameters"] == {"cores": 4, "memory": "64GB", "walltime": "01:00:00",
                                  "job_extra_directives": ["--qos=high"], "unknown-task-duration": "30s",
                                  "lifetime-stagger": "2m", "dask-resources": {"GPU": 1},
                                  "internal-port-range": [62000, 62099], "record": False}
    spec, _ = dask_spec(tmp_path, "oary", "- record: true\n")
    assert spec["parameters"] == {"cores": 4, "memory": "8GB", "walltime": "01:00:00", "project": "capsid",
                                  "memory_per_core_property_name": "memcore", "record": True}


def test_a_local_clusters_cores_default_to_its_workers(home, tmp_path):
    spec, _ = dask_spec(tmp_path, "laptop")
    assert spec["parameters"] == {"cores": 3, "memory": "2GB", "walltime": "01:00:00", "record": False}
    clusters = home / ".seamless" / "clusters.yaml"
    clusters.write_text(CLUSTERS.replace("  workers: 3\n", ""))
    with pytest.raises(ConfigError, match=r"queue 'small': cores is required; set cores in the queue, or workers"):
        dask_spec(tmp_path, "laptop")


@pytest.mark.parametrize("cluster, directives", [
    ("slurmy", {"job_extra_directives": ["--qos=high", "--nodelist=n12"]}),
    ("oary", {"job_extra_directives": ["-p host='n12'"]}),  # one directive, not upstream's two broken lines
])
def test_node_placement(home, tmp_path, cluster, directives):
    spec, _ = dask_spec(tmp_path, cluster, "- node: n12\n")
    assert {k: spec["parameters"][k] for k in directives} == directives
    assert spec["key"] == f"daskserver-{cluster}-rw-p--QUEUE-normal--NODE-n12"  # another node, another cluster


def test_a_nodelist_the_queue_has_is_not_repeated(home, tmp_path):
    clusters = home / ".seamless" / "clusters.yaml"
    clusters.write_text(CLUSTERS.replace('["--qos=high"]', '["--qos=high", "--nodelist=n12"]'))
    spec, _ = dask_spec(tmp_path, "slurmy", "- node: n12\n")
    assert spec["parameters"]["job_extra_directives"] == ["--qos=high", "--nodelist=n12"]


@pytest.mark.parametrize("cluster, message", [
    ("pbsy", "node placement is for slurm and oar clusters; on PBS name the host in the queue's job_extra_directives"),
    ("laptop", "a type: local cluster is this one machine; drop `node`"),
])
def test_node_placement_refused(home, tmp_path, cluster, message):
    with pytest.raises(ConfigError, match=message) as info:
        dask_spec(tmp_path, cluster, "- node: n12\n")
    assert "clusters.yaml: cluster '" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("cluster, queue, expected", [
    ("slurmy", "whole", {"exclusive": True, "job_extra_directives": ["--exclusive"]}),
    ("oary", "whole", {"exclusive": True, "resource_spec": "/nodes=1"}),
    ("pbsy", "whole", {"exclusive": True, "job_extra_directives": ["-l place=excl"]}),
    # with cores the wrapper sizes the job: no job_cores (upstream's wrapper rejects its own config's)
    ("slurmy", "fixed", {"exclusive": True, "cores": 8}),
    ("laptop", "excl", {"exclusive": True, "cores": 2}),
])
def test_exclusive_queues(home, tmp_path, cluster, queue, expected):
    spec, _ = dask_spec(tmp_path, cluster, f"- queue: {queue}\n")
    params = spec["parameters"]
    assert {k: params.get(k) for k in expected} == expected
    assert "job_cores" not in params and ("cores" in params) == ("cores" in expected)


def test_pure_dask_from_the_daskserver_block_or_persistent_false(home, tmp_path):
    spec, r = dask_spec(tmp_path, "pureslurm", "- record: true\n")  # pure_dask: true in its daskserver block
    assert r.pure_dask and spec["tool"] == "pure_daskserver"
    assert spec["key"] == "pure-daskserver-pureslurm-p--QUEUE-normal"
    # plain Dask workers: no exclusive mode, no record
    assert spec["parameters"] == {"cores": 4, "memory": "8GB", "walltime": "01:00:00", "pure_dask": True,
                                  "worker_threads": 2}
    spec, r = dask_spec(tmp_path, "laptop", "- persistent: false\n- record: true\n- stage s:\n    - queue: excl\n")
    assert r.pure_dask and spec["key"] == "pure-daskserver-laptop-p--QUEUE-small"
    # no record in pure Dask; a local cluster's workers are the default jobs
    assert spec["parameters"] == {"cores": 3, "memory": "2GB", "walltime": "01:00:00", "pure_dask": True,
                                  "worker_threads": 2, "maximum_jobs": 3}
    spec, _ = dask_spec(tmp_path, "laptop", "- persistent: false\n- stage s:\n    - queue: excl\n", stage="s")
    assert "exclusive" not in spec["parameters"] and spec["key"].startswith("pure-daskserver-laptop-p--STAGE-s--")
    assert not configured(tmp_path, "- project: p\n- cluster: slurmy\n- execution: remote\n").pure_dask
    # pure Dask is a way to execute: not when the stage runs in process
    assert not configured(tmp_path, "- project: p\n- cluster: pureslurm\n- execution: process\n").pure_dask


def test_pure_dask_needs_cores(home, tmp_path):
    with pytest.raises(ConfigError, match="queue 'whole': a pure Dask job runs cores Dask worker processes; set cores"):
        dask_spec(tmp_path, "pureslurm", "- queue: whole\n")


def test_keys_name_the_queue_node_and_substage(home, tmp_path):
    keys = set()
    for queue in ("normal", "highmem"):
        for node in (None, "n1"):
            r = configured(tmp_path, "- project: p\n- subproject: a/b\n- cluster: slurmy\n- stage prod: []\n",
                           "prod", queue=queue, node=node)
            r.substage = "gpu"
            keys.add(render("daskserver", r)["key"])
    assert keys == {"daskserver-slurmy-rw-p--a--b--STAGE-prodSUBSTAGE-gpu--QUEUE-normal",
                    "daskserver-slurmy-rw-p--a--b--STAGE-prodSUBSTAGE-gpu--QUEUE-highmem",
                    "daskserver-slurmy-rw-p--a--b--STAGE-prodSUBSTAGE-gpu--QUEUE-normal--NODE-n1",
                    "daskserver-slurmy-rw-p--a--b--STAGE-prodSUBSTAGE-gpu--QUEUE-highmem--NODE-n1"}


@pytest.mark.parametrize("edit, text, message", [
    (("  type: slurm\n", ""), "",
     "cluster 'slurmy' has no type, and a daskserver needs one of: type: local, slurm, oar, pbs"),
    (("  default_queue: normal\n", ""), "", "cluster 'slurmy': no queue is selected and the cluster has no "
                                             "default_queue; add `- queue: NAME` to seamless.yaml, or default_queue"),
    (("walltime: \"02:00:00\"}\n    fixed", "walltime: 2:00:00}\n    fixed"), "",
     "queue 'whole': 'walltime' must be a quoted duration such as \"01:00:00\" or \"30m\", not 7200"),
    (("    whole:", "    my queue:"), "", "queue 'my queue': a queue name must use letters, digits"),
    (("{network_interface: 10.1.0.5,", "{pure_dask: yes please, network_interface: 10.1.0.5,"), "",
     "daskserver: 'pure_dask' must be true or false, not 'yes please'"),
    (("", ""), "- node: n1;reboot\n",
     "('node'): expects a node name (letters, digits, '.', '_' and '-'), not 'n1;reboot'"),
    (("", ""), "- queue: huge\n", "cluster 'slurmy' has no queue 'huge'; its queues: normal, highmem"),
])
def test_errors_are_one_line_with_the_fix(home, tmp_path, edit, text, message):
    clusters = home / ".seamless" / "clusters.yaml"
    clusters.write_text(CLUSTERS.replace(*edit, 1))
    with pytest.raises(ConfigError) as info:
        dask_spec(tmp_path, "slurmy", text)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_cluster_without_queues(home, tmp_path):
    (home / ".seamless" / "clusters.yaml").write_text(
        "bare:\n  type: slurm\n  frontends:\n    - hostname: h\n      daskserver: {}\n")
    with pytest.raises(ConfigError, match=r"clusters.yaml: cluster 'bare' defines no queues, and a daskserver takes "
                                          r"its jobs' cores, memory and walltime from one; add queues:"):
        dask_spec(tmp_path, "bare")


def test_dask_client_outside_a_pure_dask_stage(fresh_python, home, tmp_path):
    import seamless.config

    with pytest.raises(ConfigError, match="dask_client\\(\\): the configuration in force is not a pure Dask one "
                                          "\\(no configuration files\\)"):
        seamless.config.dask_client()
    (tmp_path / "seamless.yaml").write_text(
        "- project: p\n- cluster: slurmy\n- execution: process\n- persistent: false\n")
    seamless.config.set_stage()
    with pytest.raises(ConfigError, match="not a pure Dask one \\(cluster 'slurmy', execution process\\)"):
        seamless.config.dask_client()


def test_seamless_launch_dry_run(home, tmp_path):
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.run([tool("seamless-launch"), "daskserver", "--cluster", "slurmy", "--project", "p",
                           "--queue", "highmem", "--node", "n3", "--dry-run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["key"] == "daskserver-slurmy-rw-p--QUEUE-highmem--NODE-n3" and shown["where"] == "login.slurm"
    assert shown["command"] == ("seamless-dask-wrapper dask_jobqueue::SLURMCluster --port-range 60000 60100 "
                                "--status-file {status_file} --host 10.1.0.5 --timeout 600")
    assert shown["parameters"]["job_extra_directives"] == ["--qos=high", "--nodelist=n3"]
    bad = subprocess.run([tool("seamless-launch"), "daskserver", "--cluster", "slurmy", "--project", "p",
                          "--queue", "nope"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "has no queue 'nope'" in bad.stderr


def test_rm_removes_the_batch_jobs_logs(tmp_path, monkeypatch):
    from seamless.launch import host

    monkeypatch.setenv("SEAMLESS_LAUNCH_DIR", str(tmp_path))
    server = tmp_path / "server"
    server.mkdir()
    names = ["k.json", "k.log", "k.log-1234.out", "k.log-1234.err", "k.log-x.out", "k.log-1.log-2.out",
             "k.logs-5.out", "other.log-1234.out"]
    for name in names:
        (server / name).write_text("{}" if name.endswith(".json") else "x")
    assert host.remove("k")
    assert sorted(p.name for p in server.iterdir()) == ["k.log-1.log-2.out", "k.log-x.out", "k.logs-5.out",
                                                        "other.log-1234.out"]


SERVICE = """
import http.server, json, os, sys, time
status_file = sys.argv[sys.argv.index("--status-file") + 1]
while not os.path.exists(status_file):
    time.sleep(0.01)
status = json.load(open(status_file))
for n in range(50):  # as the wrapper does: its output, and lines it writes to the log by name
    with open(status["log"], "a") as log:
        log.write(f"by name {n}\\n")
    print(f"output {n}", flush=True)

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

server = http.server.HTTPServer(("127.0.0.1", 0), Health)
status.update(status="running", port=server.server_address[1])
open(status_file + ".tmp", "w").write(json.dumps(status))
os.replace(status_file + ".tmp", status_file)
server.serve_forever()
"""


def test_a_service_writing_to_its_log_by_name_overwrites_nothing(tmp_path, monkeypatch):
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"key: logger\nworkdir: {tmp_path}\ncommand: [{sys.executable}, {script}, --status-file, "
                    "'{status_file}']\n")
    env = {**os.environ, "SEAMLESS_LAUNCH_DIR": str(tmp_path / "launch")}
    try:
        assert launch([str(spec)], env, tmp_path).returncode == 0
        log = (tmp_path / "launch" / "server" / "logger.log").read_text().splitlines()
    finally:
        launch(["stop", "logger"], env, tmp_path)
    expected = [line for n in range(50) for line in (f"by name {n}", f"output {n}")]
    assert log[:100] == expected  # (then the requests it answered)


# --- with the real seamless-dask-wrapper --------------------------------------------------------

wrapper = pytest.mark.skipif(shutil.which("seamless-dask-wrapper") is None,
                             reason="seamless-dask-wrapper is not installed (pip install -e '.[dask]')")

LOCAL = """
local_cluster: box
box:
  type: local
  workers: 2
  default_queue: small
  queues:
    small: {memory: 1GB, walltime: "01:00:00", maximum_jobs: 1}
  frontends:
    - hashserver: {bufferdir: WORK/bufs}
      database: {database_dir: WORK/dbs}
      daskserver: {}
"""


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    e.update(SEAMLESS_LAUNCH_DIR=str(tmp_path / "launch"), HOME=str(tmp_path / "home"),
             XDG_CACHE_HOME=str(tmp_path / "xdg"), SEAMLESS_LAUNCH_REMOTE=tool("seamless-launch"))
    (tmp_path / "home" / ".seamless").mkdir(parents=True)
    (tmp_path / "home" / ".seamless" / "clusters.yaml").write_text(LOCAL.replace("WORK", str(tmp_path)))
    yield e
    rows = launch(["ps", "--json"], e, tmp_path).stdout.splitlines()
    keys = [json.loads(row)["key"] for row in rows]
    if keys:
        launch(["stop", *keys], e, tmp_path)


def launch(argv, env, cwd):
    return subprocess.run([tool("seamless-launch"), *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def health(host, port):
    with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=10) as answer:
        return answer.status, answer.read().decode()


def runs_a_task(address, env):
    """A Dask client of the scheduler at `address` gets a task's result (in a process of
    its own, as a user's would be)."""
    code = (f"from distributed import Client; c = Client({address!r}, timeout=20); "
            "print(c.submit(sum, [20, 22]).result())")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return proc.stdout.strip() == "42" or proc.stderr


def pid_of(env, key):
    with open(os.path.join(env["SEAMLESS_LAUNCH_DIR"], "server", key + ".json")) as f:
        return json.load(f)["pid"]


@wrapper
def test_seamless_launch_daskserver_local(tmp_path, env):
    started = time.monotonic()
    proc = launch(["daskserver", "--cluster", "box", "--project", "p"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    connection = json.loads(proc.stdout)
    key = connection["key"]
    assert key == "daskserver-box-rw-p--QUEUE-small" and time.monotonic() - started < 120
    assert connection["url"] == f"tcp://127.0.0.1:{connection['port']}" and "token_file" not in connection
    assert connection["dashboard_port"] != connection["port"]
    assert connection["parameters"] == {"cores": 2, "memory": "1GB", "walltime": "01:00:00", "maximum_jobs": 1,
                                        "record": False}
    assert health("127.0.0.1", connection["dashboard_port"]) == (200, "ok")
    assert runs_a_task(connection["url"], env) is True
    # its output and what it logs to the status file's `log` by name share the file, neither overwriting the other
    log = launch(["logs", key], env, tmp_path).stdout.splitlines()
    assert connection["url"] in log and any(f"INFO scheduler {connection['url']}" in line for line in log), log
    rows = [json.loads(row) for row in launch(["ps", "--json"], env, tmp_path).stdout.splitlines()]
    assert [(r["key"], r["status"], r["url"], r["dashboard_port"]) for r in rows] == [
        (key, "running", connection["url"], connection["dashboard_port"])]
    # found again: from the client file, then from the status file alone
    assert json.loads(launch(["daskserver", "--cluster", "box", "--project", "p"], env, tmp_path).stdout) == connection
    os.unlink(os.path.join(env["SEAMLESS_LAUNCH_DIR"], "client", key + ".json"))
    again = json.loads(launch(["daskserver", "--cluster", "box", "--project", "p"], env, tmp_path).stdout)
    assert again["port"] == connection["port"]
    # the queue's settings changed: a cluster with the new ones replaces the old
    pid = pid_of(env, key)
    clusters = tmp_path / "home" / ".seamless" / "clusters.yaml"
    clusters.write_text(clusters.read_text().replace("memory: 1GB", "memory: 2GB"))
    changed = launch(["daskserver", "--cluster", "box", "--project", "p"], env, tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)["parameters"]["memory"] == "2GB" and pid_of(env, key) != pid
    from seamless.launch.host import alive

    assert not alive(pid)
    pid = pid_of(env, key)
    stopped = launch(["stop", key], env, tmp_path)
    assert stopped.stdout == f"{key}: stopped\n" and not alive(pid)
    assert launch(["rm", key], env, tmp_path).stdout == f"{key}: removed\n"
    assert not list((tmp_path / "launch" / "server").glob(key + ".*"))


@wrapper
def test_seamless_init_starts_the_stages_daskserver(tmp_path, env):
    work = tmp_path / "work"
    work.mkdir()
    (work / "seamless.yaml").write_text("- project: p\n- cluster: box\n- execution: remote\n- remote: daskserver\n")
    proc = subprocess.run([tool("seamless-init")], cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    row = [line.split() for line in proc.stdout.splitlines() if line.startswith("daskserver")]
    assert row and row[0][1].startswith("tcp://127.0.0.1:") and row[0][2] == "running,", proc.stdout
    dashboard = row[0][4].removesuffix("/status")
    assert urllib.request.urlopen(dashboard + "/health", timeout=10).read() == b"ok"
    assert "warning" not in proc.stderr  # its transformations run there: nothing to warn about


@wrapper
def test_pure_dask_client_after_init(tmp_path, env):
    work = tmp_path / "work"
    work.mkdir()
    (work / "seamless.yaml").write_text("- project: p\n- cluster: box\n- execution: remote\n- remote: daskserver\n"
                                        "- persistent: false\n- stage plain:\n    - execution: process\n")
    code = textwrap.dedent("""
        import json
        import seamless.config
        from distributed import default_client

        seamless.config.init()
        client = seamless.config.dask_client()
        futures = client.map(lambda x: x * x, range(5))
        out = [sum(client.gather(futures)), default_client() is client, client.scheduler.address]
        seamless.config.set_stage()  # the same stage again: the same client, its futures alive
        out.append(seamless.config.dask_client() is client and futures[4].result() == 16)
        seamless.config.set_stage("plain")  # another stage: its cluster is not used by accident
        try:
            seamless.config.dask_client()
        except seamless.config.ConfigError as exc:
            out.append(client.status + ": " + str(exc)[:60])
        print(json.dumps(out))
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    total, default, address, kept, left = json.loads(proc.stdout)
    assert (total, default, kept) == (30, True, True)
    assert left == "closed: dask_client(): the configuration in force is not a pure Dask"
    status = json.loads((tmp_path / "launch" / "server" / "pure-daskserver-box-p--QUEUE-small.json").read_text())
    assert address == f"tcp://127.0.0.1:{status['port']}"
    assert status["parameters"] == {"cores": 2, "memory": "1GB", "walltime": "01:00:00", "maximum_jobs": 1,
                                    "pure_dask": True, "worker_threads": 2}
    # seamless's own transformations in that stage run here: its Dask cluster is the user's
    run = subprocess.run(["seamless-run", "echo pure"], cwd=work, env=env, capture_output=True, text=True,
                         timeout=120)
    assert (run.returncode, run.stdout) == (0, "pure\n"), run.stderr


@wrapper
def test_daskserver_over_ssh_with_a_tunnel(frontend, tmp_path, env):  # noqa: F811
    (tmp_path / "home" / ".seamless" / "clusters.yaml").write_text(
        f"front:\n  type: local\n  tunnel: true\n  workers: 1\n  default_queue: q\n"
        f"  queues: {{q: {{memory: 1GB, walltime: \"01:00:00\", maximum_jobs: 1}}}}\n"
        f"  frontends:\n    - hostname: 127.0.0.1\n      ssh_hostname: {sshd.ALIAS}\n      daskserver: {{}}\n")
    proc = launch(["daskserver", "--cluster", "front", "--project", "p"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    connection = json.loads(proc.stdout)
    assert connection["ssh_hostname"] == sshd.ALIAS and connection["tunnel_pid"]
    # both ports forwarded: the scheduler's (Dask protocol) and the dashboard's
    assert connection["tunneled-port"] != connection["port"]
    assert connection["tunneled-dashboard_port"] != connection["dashboard_port"]
    assert health("127.0.0.1", connection["dashboard_port"]) == (200, "ok")
    assert runs_a_task(connection["url"], env) is True
    assert (frontend.launch_dir / "server" / f"{connection['key']}.json").exists()  # it runs on the frontend
    assert launch(["stop", connection["key"]], env, tmp_path).stdout == f"{connection['key']}: stopped\n"
    from seamless.launch.host import alive

    deadline = time.monotonic() + 10
    while alive(connection["tunnel_pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(connection["tunnel_pid"])


@wrapper
def test_the_pure_dask_man_page_example(tmp_path, env):
    from test_config import man_blocks, session

    shown = session(next(b for b in man_blocks("man5/seamless.yaml.5", ".SS Pure Dask on this machine")
                         if "dask_client()" in b))
    (tmp_path / "home" / ".seamless" / "clusters.yaml").write_text("\n".join(shown["cat ~/.seamless/clusters.yaml"]))
    work = tmp_path / "work"
    work.mkdir()
    (work / "seamless.yaml").write_text("\n".join(shown["cat seamless.yaml"]) + "\n")
    command = next(c for c in shown if c.startswith("python3 -c"))
    *code, answer = [command.split("'", 1)[1], *shown[command]]
    proc = subprocess.run([sys.executable, "-c", "\n".join(code).rstrip("'")], cwd=work, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and proc.stdout == answer + "\n", proc.stderr
    (row,) = [line.split() for line in launch(["ps"], env, work).stdout.splitlines()[1:]]
    assert row[:3] == shown["seamless-launch ps"][1].split()[:3]
    status = json.loads((tmp_path / "launch" / "server" / f"{row[0]}.json").read_text())
    page = open(os.path.join(os.path.dirname(__file__), "..", "man", "man5", "seamless.yaml.5")).read()
    assert json.dumps(status["parameters"]) in page.replace("\n ", " ").replace("\\-", "-")


def test_the_wrappers_checks_run_at_launch_naming_the_queue(home, tmp_path):
    """A value the wrapper would refuse is refused here, with the file and the queue."""
    clusters = home / ".seamless" / "clusters.yaml"
    clusters.write_text(CLUSTERS.replace('normal: {cores: 4, memory: 8GB, walltime: "01:00:00", partition: batch}',
                                         'normal: {cores: 4, memory: 4gigs, walltime: "01:00:00", partition: batch}'))
    with pytest.raises(ConfigError) as info:
        dask_spec(tmp_path, "pbsy")
    message = str(info.value)
    assert "queue 'normal'" in message and "parameter 'memory' is '4gigs'" in message and "clusters.yaml" in message
