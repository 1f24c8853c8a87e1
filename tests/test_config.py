"""The configuration language: every command, every error message, storage paths, the API."""

import os
import re
import subprocess
import textwrap

import pytest

from conftest import tool
import seamless.config as api
from seamless.config import storage
from seamless.config.errors import ConfigError
from seamless.config.resolve import resolve

CLUSTERS = """
local_cluster: laptop
laptop:
  type: local
  workers: 4
  frontends:
    - hashserver: {bufferdir: BUF}
      database: {database_dir: DB}
hpc:
  type: slurm
  default_queue: normal
  queues:
    normal: {cores: 4, conda: seamless, walltime: "01:00:00"}
    highmem: {TEMPLATE: normal, memory: 64GB}
  frontends:
    - hostname: login.hpc
      hashserver: {bufferdir: ~/bufs}
      database: {database_dir: ~/dbs}
      daskserver: {network_interface: ib0, port_start: 60000, port_end: 60100, pure_dask: true}
both:
  type: slurm
  queues: {q: {cores: 1}}
  frontends:
    - hostname: h
      jobserver: {conda: x, network_interface: i, port_start: 1, port_end: 2}
      daskserver: {network_interface: i, port_start: 3, port_end: 4}
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    (h / ".seamless").mkdir(parents=True)
    clusters = CLUSTERS.replace("BUF", str(tmp_path / "bufs")).replace("DB", str(tmp_path / "dbs"))
    (h / ".seamless" / "clusters.yaml").write_text(clusters)
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SEAMLESS_CACHE", raising=False)
    monkeypatch.delenv("SEAMLESS_REMOTE_CLIENTS", raising=False)
    return h


def write(directory, text, name="seamless.yaml"):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def res(directory, stage=None, substage=None, **choices):
    return resolve(str(directory), stage, substage, choices)


# --- commands --------------------------------------------------------------------------------


def test_every_command(home, tmp_path):
    d = tmp_path / "p"
    write(d, """
        - project: proj
        - subproject: sub/x
        - cluster: hpc
        - execution: remote
        - remote: daskserver
        - queue: highmem
        - persistent: true
        - record: true
        - node: n17
        - nparallel: 8
        """)
    r = res(d)
    assert (r.project, r.subproject, r.cluster, r.execution, r.remote, r.queue) == (
        "proj", "sub/x", "hpc", "remote", "daskserver", "highmem")
    assert (r.persistent, r.record, r.node, r.nparallel, r.local) == (True, True, "n17", 8, False)
    assert r.definition["queues"]["highmem"] == {"cores": 4, "conda": "seamless", "walltime": "01:00:00",
                                                   "memory": "64GB"}


def test_defaults(home, tmp_path):
    d = tmp_path / "p"
    write(d, "- project: x\n")
    r = res(d)
    assert (r.cluster, r.execution, r.persistent) == (None, "process", False)
    write(d, "- project: x\n- cluster: laptop\n")
    r = res(d)
    assert (r.execution, r.persistent, r.local) == ("process", True, True)  # no job backend: process
    assert r.warnings and "no jobserver or daskserver" in r.warnings[0]
    write(d, "- project: x\n- cluster: hpc\n")
    r = res(d)
    assert (r.execution, r.remote, r.queue, r.persistent) == ("remote", "daskserver", "normal", True)


def test_no_config_means_none(home, tmp_path):
    assert res(tmp_path / "empty-dir-that-does-not-exist") is None


def test_profile_after_yaml_and_inheritance(home, tmp_path):
    parent, child = tmp_path / "p", tmp_path / "p" / "c"
    write(parent, "- project: parent\n- cluster: laptop\n- execution: process\n")
    write(child, "- inherit_from_parent\n- project: child\n")
    write(child, "- subproject: prof\n", "seamless.profile.yaml")
    r = res(child)
    assert (r.project, r.subproject, r.cluster) == ("child", "prof", "laptop")
    assert r.files == [str(parent / "seamless.yaml"), str(child / "seamless.yaml"),
                       str(child / "seamless.profile.yaml")]
    write(child, "- project: alone\n")  # no inheritance: the parent is not read
    assert res(child).cluster is None


def test_stage_blocks_nested_and_leaving_a_stage(home, tmp_path):
    d = tmp_path / "p"
    write(d, """
        - project: proj
        - cluster: laptop
        - execution: process
        - stage prod:
            - cluster: hpc
            - execution: remote
            - project: prodproj
            - stage prod:
                - queue: highmem
        """)
    r = res(d, "prod")
    assert (r.cluster, r.project, r.queue) == ("hpc", "prodproj", "highmem")
    r = res(d)  # a fresh evaluation: nothing of prod survives
    assert (r.cluster, r.project, r.queue) == ("laptop", "proj", None)


def test_inline_clusters_are_applied_first(home, tmp_path):
    d = tmp_path / "p"
    write(d, f"""
        - project: x
        - cluster: mine
        - execution: process
        - clusters:
            mine:
              type: local
              frontends: [{{hashserver: {{bufferdir: {tmp_path}/b}}, database: {{database_dir: {tmp_path}/d}}}}]
        """)
    assert res(d).cluster == "mine"


def test_clusters_directory_sorted(home, tmp_path):
    (home / ".seamless" / "clusters").mkdir()
    (home / ".seamless" / "clusters" / "b.yaml").write_text("extra: {type: local, frontends: [{}]}\n")
    (home / ".seamless" / "clusters" / "a.yaml").write_text("extra: {type: slurm, frontends: [{hostname: h}]}\n")
    d = tmp_path / "p"
    write(d, "- project: x\n- cluster: extra\n- persistent: false\n")
    assert res(d).definition["type"] == "local"  # b.yaml comes last and wins


def test_choices_override_files(home, tmp_path):
    d = tmp_path / "p"
    write(d, "- project: x\n- cluster: hpc\n- execution: remote\n")
    r = res(d, project="y", queue="highmem")
    assert (r.project, r.queue) == ("y", "highmem")


# --- errors that teach --------------------------------------------------------------------------


@pytest.mark.parametrize("text,message", [
    ("- projet: x\n", "entry 1: unknown command 'projet'; did you mean 'project'?"),
    ("- execution: remot\n", "entry 1 ('execution'): expects one of process, spawn, remote, not 'remot'"),
    ("- persistent: yes please\n", "('persistent'): expects true or false"),
    ("- nparallel: 0\n", "('nparallel'): expects an integer >= 1"),
    ("- nparallel: true\n", "('nparallel'): expects an integer >= 1"),
    ("- cluster: hcp\n", "unknown cluster 'hcp'; did you mean 'hpc'?"),
    ("- queue: highmem\n- cluster: hpc\n", "select a cluster before its queue (put `- cluster: NAME` above it)"),
    ("- project: x\n- cluster: hpc\n- queue: higmem\n", "cluster 'hpc' has no queue 'higmem'; did you mean 'highmem'?"),
    ("- project: x\n- cluster: both\n", "offers both a jobserver and a daskserver; choose with `- remote: jobserver` or `- remote: daskserver`"),
    ("- project: x\n- execution: remote\n", "execution is 'remote' but no cluster is selected"),
    ("- project: x\n- cluster: laptop\n- execution: remote\n", "execution is 'remote' but cluster 'laptop' has no jobserver or daskserver"),
    ("- project: x\n- persistent: true\n", "persistent is true but no cluster is selected"),
    ("- cluster: laptop\n- execution: process\n", "no project is selected; add `- project: NAME`"),
    ("- project: x\n- stage prod:\n    - clustr: hpc\n", "entry 1 (in stage 'prod'): unknown command 'clustr'; did you mean 'cluster'?"),
    ("- project: x\n- stage prod:\n    - project: ../escape\n", "project name '../escape' must use letters"),
    ("- project: x\n- subproject: a/../../b\n", "subproject name 'a/../../b' must use letters"),
    ("- stage: prod\n", "write a stage block as `- stage prod:` followed by a list of commands"),
    ("- stage prod: hpc\n", "a stage block must be followed by a YAML list of commands"),
    ("- {project: x, cluster: y}\n", "entry 1: a command is a bare word"),
    ("- [project]\n", "entry 1: a command is a bare word"),
    ("project: x\n", "expected a YAML list of commands, for example `- project: myproject`"),
    ("", "expected a YAML list of commands"),
    ("- project: [unclosed\n", "not valid YAML (line 2)"),
    ("- project: a--b\n", "project name 'a--b' must use letters, digits"),
    ("- project: a/b\n", "no /"),
])
def test_config_errors(home, tmp_path, text, message):
    d = tmp_path / "p"
    path = write(d, text)
    with pytest.raises(ConfigError) as info:
        res(d)
    text = str(info.value)
    assert message in text and text.count("\n") == 0
    if "clusters" not in text:
        assert str(path) in text or "configuration" in text


@pytest.mark.parametrize("cluster,message", [
    ("bad: {frontends: [{hostname: h}], typ: slurm}\n", "cluster 'bad': unknown key 'typ'; did you mean 'type'?"),
    ("bad: {type: cloud, frontends: [{}]}\n", "type must be one of local, slurm, oar, pbs"),
    ("bad: {type: slurm}\n", "'frontends' is required"),
    ("bad: {type: slurm, frontends: [{}]}\n", "'hostname' is required unless the cluster has type: local"),
    ("bad: {type: local, frontends: [{hashserver: {}}]}\n", "hashserver: 'bufferdir' is required"),
    ("bad: {type: local, frontends: [{hashserver: {bufferdir: x, port_start: 5}}]}\n",
     "'port_start' and 'port_end' must both be set or both be omitted"),
    ("bad: {type: local, frontends: [{hashserver: {bufferdir: x, prot_start: 5}}]}\n", "did you mean 'port_start'?"),
    ("bad: {type: slurm, frontends: [{hostname: h}], queues: {q: {conda: x}}}\n",
     "'cores' is required when 'exclusive' is not set"),
    ("bad: {type: slurm, frontends: [{hostname: h}], queues: {q: {exclusive: true, job_cores: 2}}}\n",
     "'job_cores' must not be set in exclusive mode"),
    ("bad: {type: slurm, frontends: [{hostname: h}], queues: {q: {TEMPLATE: r, cores: 1}, r: {cores: 2}}}\n",
     "TEMPLATE 'r' is not a queue defined above it"),
    ("bad: {type: slurm, frontends: [{hostname: h}], default_queue: x, queues: {q: {cores: 1}}}\n",
     "default_queue 'x' is not one of its queues"),
    ("local_cluster: nowhere\n", "local_cluster 'nowhere' is not a defined cluster"),
])
def test_cluster_errors(home, tmp_path, cluster, message):
    (home / ".seamless" / "clusters" ).mkdir()
    (home / ".seamless" / "clusters" / "z.yaml").write_text(cluster)
    d = tmp_path / "p"
    write(d, "- project: x\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        res(d)


def test_pure_dask_and_job_script_prologue_are_accepted(home, tmp_path):
    (home / ".seamless" / "clusters").mkdir()
    (home / ".seamless" / "clusters" / "z.yaml").write_text(
        "q: {type: slurm, frontends: [{hostname: h, daskserver: {pure_dask: true}}], "
        "queues: {a: {cores: 1, job_script_prologue: ['module load x']}, b: {TEMPLATE: a}}}\n")
    d = tmp_path / "p"
    write(d, "- project: x\n- cluster: q\n")
    assert res(d).definition["queues"]["b"]["job_script_prologue"] == ["module load x"]


# --- storage paths and keys (config-and-launch reference, section 3) -------------------------------


def test_reference_storage_examples(home, tmp_path):
    (home / ".seamless" / "clusters").mkdir()
    (home / ".seamless" / "clusters" / "z.yaml").write_text(
        "loc: {type: slurm, frontends: [{hostname: h, hashserver: {bufferdir: ~/bufs}, "
        "database: {database_dir: ~/dbs}, daskserver: {}}], queues: {q: {cores: 1}}}\n")
    d = tmp_path / "p"
    write(d, "- project: proj\n- subproject: sub/x\n- cluster: loc\n- remote: daskserver\n- stage prod: []\n")
    r = res(d, "prod", "gpu")
    assert storage.bufferdir(r) == "~/bufs/proj/sub/x/STAGE-prod"
    assert storage.database_file(r) == "~/dbs/proj/sub/x/STAGE-prod/seamless.db"
    assert storage.service_key("hashserver", r) == "hashserver-loc-rw-proj--sub--x--STAGE-prod"
    assert storage.service_key("database", r, "ro") == "database-loc-ro-proj--sub--x--STAGE-prod"
    assert storage.service_key("jobserver", r) == "jobserver-loc-rw-proj--sub--x--STAGE-prodSUBSTAGE-gpu"
    # the queue is part of a dask server's identity (upstream would reuse another queue's)
    r = res(d, "prod", "gpu", queue="q")
    assert storage.service_key("daskserver", r) == "daskserver-loc-rw-proj--sub--x--STAGE-prodSUBSTAGE-gpu--QUEUE-q"
    # substages never split storage
    assert storage.bufferdir(res(d, "prod")) == storage.bufferdir(res(d, "prod", "cpu"))


def test_seamless_cache_shortcut(home, tmp_path, monkeypatch):
    monkeypatch.setenv("SEAMLESS_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "p"
    write(d, "- project: ignored\n- cluster: hpc\n")  # files are skipped
    r = res(d, "s")
    assert (r.cluster, r.project, r.execution, r.persistent, r.local) == (
        "__SEAMLESS_CACHE__", "__TOPLEVEL__", "process", True, True)
    assert storage.bufferdir(r) == str(tmp_path / "cache") + "/__TOPLEVEL__/STAGE-s"


def test_tools_yaml_rendering(home, tmp_path):
    from seamless.config.tools import render

    d = tmp_path / "p"
    write(d, "- project: proj\n- cluster: hpc\n- stage prod: []\n")
    spec = render("hashserver", res(d, "prod"), "rw", status_file="/s.json")
    assert spec["key"] == "hashserver-hpc-rw-proj--STAGE-prod"
    assert spec["argv"] == ["seamless-hashserver", "--status-file", "/s.json", "--token-file", "TOKEN_FILE",
                            "--timeout", "600", "~/bufs/proj/STAGE-prod", "--writable"]
    assert spec["hostname"] == "login.hpc"
    db = render("database", res(d, "prod"), "ro", status_file="/s.json")
    assert db["argv"][-1] == "~/dbs/proj/STAGE-prod/seamless.db" and "--writable" not in db["argv"]


# --- the Python API --------------------------------------------------------------------------------


@pytest.fixture
def clean_api():
    api._reset()
    yield api
    api._reset()


def test_api_stage_changes_restore_the_default(home, tmp_path, clean_api):
    d = tmp_path / "p"
    write(d, """
        - project: proj
        - cluster: laptop
        - execution: process
        - stage other:
            - project: otherproj
        """)
    r = api.init(workdir=str(d))  # the argument is honoured
    assert (r.cluster, r.project) == ("laptop", "proj")
    assert api.stores().buffer_write[0].directory == str(tmp_path / "bufs" / "proj")
    api.set_stage("other")
    assert api.current().project == "otherproj"
    assert api.stores().buffer_write[0].directory == str(tmp_path / "bufs" / "otherproj" / "STAGE-other")
    api.set_stage(None)
    assert api.current().project == "proj"
    api.set_substage("x")  # re-evaluates and re-activates
    assert api.current().substage == "x" and api.stores() is not None


def test_api_nparallel(home, tmp_path, clean_api):
    assert api.get_nparallel() == os.cpu_count()
    with pytest.raises(ConfigError):
        api.set_nparallel(0)
    api.set_nparallel(3)
    assert api.get_nparallel() == 3


def test_api_remote_clients(home, tmp_path, clean_api, monkeypatch):
    monkeypatch.setenv("SEAMLESS_REMOTE_CLIENTS", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):  # surfaced, not swallowed
        api.set_remote_clients_from_env()
    monkeypatch.setenv("SEAMLESS_REMOTE_CLIENTS", '{"buffer": [{"url": "http://h:1"}]}')
    assert api.set_remote_clients_from_env() is True
    assert api.stores().buffer_read[0].url == "http://h:1"
    with pytest.raises(ConfigError, match="remote clients were set"):
        api.set_stage("x")


def test_api_collect_remote_clients(home, tmp_path, clean_api, monkeypatch):
    monkeypatch.setenv("SEAMLESS_LAUNCH_DIR", str(tmp_path / "launch"))
    d = tmp_path / "p"
    write(d, "- project: proj\n- cluster: laptop\n- execution: process\n")
    api.init(workdir=str(d))
    clients = api.collect_remote_clients()
    try:
        assert set(clients) == {"buffer", "database"}
        entry = clients["buffer"][0]
        assert entry["readonly"] is False and entry["url"].startswith("http://127.0.0.1:")
        assert entry["directory"] == str(tmp_path / "bufs" / "proj")
        from seamless.store.clients import StoreSet

        stores = StoreSet.from_clients(clients)
        cs = stores.put_buffer(b"through the server")
        assert stores.get_buffer(cs) == b"through the server"
    finally:
        _stop_launched(tmp_path / "launch")


def _stop_launched(base):
    import json
    import signal

    for status in (base / "server").glob("*.json"):
        try:
            os.kill(json.loads(status.read_text())["pid"], signal.SIGTERM)
        except (OSError, KeyError, ValueError):
            pass


# --- the man pages' examples, run -------------------------------------------------------------


def man_blocks(page, section):
    """The literal (.nf/.fi) blocks of a man page from `section` on, as a reader sees them."""
    with open(os.path.join(os.path.dirname(__file__), "..", "man", page)) as f:
        text = f.read()
    text = text[text.index(section):]
    return [b.replace("\\-", "-").replace("\\e", "\\") for b in re.findall(r"^\.nf\n(.*?)^\.fi$", text, re.M | re.S)]


def session(block):
    """{command: its output lines} of a shell session shown as `$ command` lines."""
    out, lines = {}, None
    for line in block.splitlines():
        if line.startswith("$ "):
            lines = out[line[2:]] = []
        else:
            lines.append(line)
    return out


def test_seamless_init_man_page_example(tmp_path):
    clusters, config, shown = man_blocks("man1/seamless-init.1", ".SH EXAMPLES")[:3]
    home = tmp_path / "home"
    write(home / ".seamless", clusters, "clusters.yaml")
    write(home / "work", config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    proc = subprocess.run([tool("seamless-init"), "--show"], cwd=home / "work", env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    expected = [line.replace("/tmp/man1/home", str(home)) for line in session(shown)["seamless-init --show"]]
    assert proc.stdout.splitlines() == expected


def test_launch_directory_man_page_example(tmp_path):
    shown = session(next(b for b in man_blocks("man5/seamless.yaml.5", ".SS Services on this machine")
                         if "$ ls $SEAMLESS_LAUNCH_DIR/server" in b))
    write(tmp_path / "work", "\n".join(shown["cat seamless.yaml"]).replace("/tmp/man5", str(tmp_path)) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"),
               SEAMLESS_LAUNCH_DIR=str(tmp_path / "launch"))
    try:
        proc = subprocess.run([tool("seamless-init")], cwd=tmp_path / "work", env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        ports = [re.sub(r":\d+ ", ":PORT ", line) for line in proc.stdout.splitlines()]
        assert ports == [re.sub(r":\d+ ", ":PORT ", line) for line in shown["seamless-init"]]
        listing = shown["ls $SEAMLESS_LAUNCH_DIR/server"]
        assert sorted(os.listdir(tmp_path / "launch" / "server")) == sorted(listing)
    finally:
        _stop_launched(tmp_path / "launch")
