"""seamless-jobserver on loopback, and execution: remote through it (real servers, no mocks)."""

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import tool


def post(url, path, body=None, method="POST", token=None, timeout=120):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def jobserver(start_service, hashserver):
    clients = json.dumps({"buffer": [{"url": hashserver.url, "readonly": False}]})

    def start(*args, env=None):
        return start_service("seamless-jobserver", "--clients", clients, *args, env=env)

    return start


@pytest.fixture
def api(fresh_python, hashserver):
    """The Python API with the test hashserver in force; job(tf) -> the request body."""
    import seamless.config
    from seamless.cache import cache

    seamless.config.set_remote_clients({"buffer": [{"url": hashserver.url, "readonly": False}]})

    def job(tf, scratch=False):
        tf.construct()
        for cs, data in tf._definition.buffers.items():
            cache.stores().put_buffer(data, cs)
        return {"transformation_dict": tf._transformation, "tf_checksum": tf._tf.hex(), "tf_dunder": {},
                "scratch": scratch}

    return job


def value(cs):
    from seamless.cache import cache

    return json.loads(cache.stores().get_buffer(cs))


def test_python_runs_in_a_worker_and_the_answer_is_upstreams(jobserver, api):
    from seamless.transformer import delayed

    @delayed
    def where(x):
        import os

        return [x * 2, os.getpid(), os.getppid()]

    js = jobserver("--workers", "2")
    status, text = post(js.url, "/run-transformation", api(where(21)))
    assert status == 200, text
    answer = json.loads(text)
    doubled, pid, parent = value(answer["result_checksum"])
    assert doubled == 42 and parent == js.proc.pid and pid != js.proc.pid  # in a worker of the job server
    runtime = answer["record_runtime"]
    for key in ("started_at", "finished_at", "wall_time_seconds", "cpu_user_seconds", "cpu_system_seconds",
                "memory_peak_bytes", "gpu_memory_peak_bytes"):
        assert key in runtime
    assert runtime["pid"] == pid and runtime["cpu_user_seconds"] is not None


def test_endpoints_and_get_with_a_body(jobserver, api):
    from seamless.transformer import delayed

    @delayed
    def inc(x):
        return x + 1

    js = jobserver()
    assert post(js.url, "/", method="GET") == (200, "Seamless jobserver is running")
    assert post(js.url, "/healthcheck", method="GET") == (200, "OK")
    body = api(inc(1))
    status, text = post(js.url, "/run-transformation", body, method="GET")  # as upstream's client sends it
    assert status == 200 and value(json.loads(text)["result_checksum"]) == 2
    assert json.loads(post(js.url, f"/transformation-status/{body['tf_checksum']}", method="GET")[1]) == \
        {"status": "done"}
    assert json.loads(post(js.url, "/transformation-status/" + "0" * 64, method="GET")[1]) == {"status": "not-running"}
    assert json.loads(post(js.url, "/cancel-transformation/" + "0" * 64)[1]) == \
        {"canceled": False, "status": "not-running"}
    assert post(js.url, "/transformation-status/nothex", method="GET")[0] == 400


A64 = "a" * 64
OUT = '"__output__": ["result", "mixed", null]'


@pytest.mark.parametrize("body", [
    "{not json", "[1, 2]", '{"tf_checksum": "' + A64 + '"}',
    '{"transformation_dict": {"__language__": "python"}, "tf_checksum": "xyz"}',
    '{"transformation_dict": {"__language__": "python", "a": 5}, "tf_checksum": "' + A64 + '"}',
    '{"transformation_dict": [], "tf_checksum": "' + A64 + '"}',
    # issue 12 review: these were 500s (and the first left its status "running")
    '{"transformation_dict": {"__language__": "bash"}, "tf_checksum": "' + A64 + '"}',
    '{"transformation_dict": {"__language__": "python", ' + OUT + '}, "tf_checksum": "' + A64 + '"}',
    '{"transformation_dict": {"__language__": "python", ' + OUT + ', "code": ["python", "transformer", "nothex"]}, '
    '"tf_checksum": "' + A64 + '"}',
    # a tf_checksum that is not the dict's own: identical jobs are merged by it
    '{"transformation_dict": {"__language__": "python", ' + OUT + ', "code": ["python", "transformer", "' + A64
    + '"]}, "tf_checksum": "' + A64 + '"}',
    '{"transformation_dict": {"__language__": "python", "__bogus__": 1, ' + OUT + ', "code": ["python", '
    '"transformer", "' + A64 + '"]}, "tf_checksum": "' + A64 + '"}',
])
def test_malformed_requests_get_400_never_500(jobserver, body):
    js = jobserver()
    status, text = post(js.url, "/run-transformation", body.encode())
    assert status == 400, text
    assert text.startswith(("Invalid JSON", "Invalid payload"))
    assert json.loads(post(js.url, "/transformation-status/" + A64, method="GET")[1]) == {"status": "not-running"}


def test_a_job_whose_inputs_are_missing_fails_with_a_clear_500(jobserver):
    from seamless.identity import transformation_checksum

    js = jobserver()
    transformation = {"__language__": "python", "__output__": ["result", "int", None],
                      "code": ["python", "transformer", "1" * 64]}
    body = {"transformation_dict": transformation, "tf_checksum": transformation_checksum(transformation)}
    status, text = post(js.url, "/run-transformation", body)
    assert status == 500 and "1" * 64 in text and "no store" in text


def test_a_token_is_required_when_given(jobserver, tmp_path, api):
    from seamless.transformer import delayed

    @delayed
    def one():
        return 1

    (tmp_path / "token").write_text("s3cret\n")
    js = jobserver("--token-file", tmp_path / "token")
    body = api(one())
    assert post(js.url, "/run-transformation", body)[0] == 401
    assert post(js.url, "/healthcheck", method="GET")[0] == 200
    assert post(js.url, "/run-transformation", body, token="s3cret")[0] == 200


def test_cancel_stops_the_job_and_frees_its_slot(jobserver, api, tmp_path):
    from seamless.transformer import delayed

    @delayed
    def slow(n):
        import time

        time.sleep(n)
        return n

    @delayed
    def quick():
        return "quick"

    js = jobserver("--workers", "1", env={**os.environ, "SEAMLESS_WORKER_TRANSFORMATION_THROTTLE": "1"})
    body = api(slow(60))
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(post(js.url, "/run-transformation", body)))
    waiting.start()
    deadline = time.monotonic() + 20
    while json.loads(post(js.url, f"/transformation-status/{body['tf_checksum']}", method="GET")[1])["status"] != \
            "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert json.loads(post(js.url, f"/cancel-transformation/{body['tf_checksum']}")[1]) == \
        {"canceled": True, "status": "canceled"}
    waiting.join(20)
    assert answers == [(200, "Transformation was canceled")]
    started = time.monotonic()
    status, text = post(js.url, "/run-transformation", api(quick()))
    assert status == 200 and time.monotonic() - started < 15  # the only slot is free again
    assert json.loads(post(js.url, f"/transformation-status/{body['tf_checksum']}", method="GET")[1]) == \
        {"status": "canceled"}


def test_a_worker_that_dies_fails_the_job_it_never_hangs(jobserver, api):
    from seamless.transformer import delayed

    @delayed
    def crash():
        import os

        os.kill(os.getpid(), 9)

    js = jobserver("--workers", "1")
    status, text = post(js.url, "/run-transformation", api(crash()), timeout=120)
    assert status == 500 and "died" in text


def test_identical_jobs_submitted_together_run_once(jobserver, api, tmp_path):
    from seamless.transformer import delayed

    @delayed
    def logged(path):
        import time

        with open(path, "a") as f:
            f.write("ran\n")
        time.sleep(1)
        return 7

    js = jobserver("--workers", "2")
    body = api(logged(str(tmp_path / "log")))
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(post(js.url, "/run-transformation", body)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [a[0] for a in answers] == [200, 200, 200]
    assert len({json.loads(a[1])["result_checksum"] for a in answers}) == 1
    assert (tmp_path / "log").read_text() == "ran\n"


# --- execution: remote from the configuration ---------------------------------------------


@pytest.fixture
def remote(tmp_path, monkeypatch):
    """A cluster on this machine with a hashserver, a database and a job server; a project
    with execution: remote. Returns (work directory, environment, database file)."""
    home = tmp_path / "home"
    (home / ".seamless").mkdir(parents=True)
    (home / ".seamless" / "clusters.yaml").write_text(f"""
lab:
  workers: 2
  frontends:
    - hostname: localhost
      hashserver: {{bufferdir: {tmp_path}/bufs}}
      database: {{database_dir: {tmp_path}/dbs}}
      jobserver: {{}}
""")
    work = tmp_path / "work"
    work.mkdir()
    (work / "seamless.yaml").write_text("- project: proj\n- cluster: lab\n- execution: remote\n")
    (work / "data.txt").write_text("b\na\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.update(HOME=str(home), SEAMLESS_LAUNCH_DIR=str(tmp_path / "launch"))
    yield work, env, tmp_path / "dbs" / "proj" / "seamless.db"
    for key in ("jobserver-lab-rw-proj", "hashserver-lab-rw-proj", "database-lab-rw-proj"):
        subprocess.run([tool("seamless-launch"), "stop", key], env=env, capture_output=True, timeout=60)


def records(db):
    with sqlite3.connect(db) as c:
        return [json.loads(row[0]) for row in c.execute("SELECT metadata FROM meta_data")]


def run(work, env, *argv, timeout=120, **kw):
    return subprocess.run([tool("seamless-run"), *argv], cwd=work, env=env, capture_output=True, timeout=timeout, **kw)


def test_seamless_run_delegates_a_miss_and_a_hit_never_contacts_the_jobserver(remote):
    work, env, db = remote
    proc = run(work, env, "sort data.txt")
    assert proc.returncode == 0 and proc.stdout == b"a\nb\n", proc.stderr
    assert b"waiting for the result" in proc.stderr
    (record,) = records(db)
    assert record["execution_mode"] == "remote" and record["remote_target"].startswith("http://")
    assert record["cpu_time_user_seconds"] is not None
    local = {**env, "SEAMLESS_CACHE": str(work.parent / "local-cache")}  # the same command, run here
    assert run(work, local, "sort data.txt").stdout == b"a\nb\n"
    again = run(work, local, "-v", "sort data.txt").stderr.decode()
    assert f"transformation {record['tf_checksum']}" in again and f"cache hit: result {record['result_checksum']}" in again
    subprocess.run([tool("seamless-launch"), "stop", "jobserver-lab-rw-proj"], env=env, check=True,
                   capture_output=True, timeout=60)
    proc = run(work, env, "-v", "sort data.txt")
    assert proc.returncode == 0 and proc.stdout == b"a\nb\n" and b"cache hit" in proc.stderr
    listing = subprocess.run([tool("seamless-launch"), "ps"], env=env, capture_output=True, text=True).stdout
    assert not [line for line in listing.splitlines() if line.startswith("jobserver") and "running" in line]
    proc = run(work, env, "--local", "sort -r data.txt")
    assert proc.returncode == 0 and proc.stdout == b"b\na\n"
    assert [r["execution_mode"] for r in records(db)] == ["remote", "process"]


PROLOGUE = """
import json, os, signal, sys, time
import seamless.config
from seamless.transformer import delayed, direct, parallel
seamless.config.init()
"""


def run_python(work, env, code, *args):
    """Our Python (the venv's), running PROLOGUE + code as a script in the project."""
    script = work / "script.py"
    script.write_text(PROLOGUE + code)
    python = os.path.join(os.path.dirname(tool("seamless-run")), "python")
    return subprocess.run([python, str(script), *map(str, args)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)


def test_python_delegates_and_nested_transformations_work(remote):
    work, env, db = remote
    proc = run_python(work, env, """
@direct
def where(x):
    import os
    return [x * 2, os.getppid()]

@delayed
def outer(n):
    from seamless.transformer import direct

    @direct
    def inner(k):
        return k + 1

    return inner(n) * 10

@delayed
def square(x):
    return x * x

here = delayed(lambda x: x - 1)
here.local = True
print(json.dumps([where(21), outer(4).run(), sum(t.value for t in parallel([square(i) for i in range(20)])),
                  here(5).run(), os.getpid()]))
""")
    assert proc.returncode == 0, proc.stderr
    (doubled, parent), nested, squares, local, me = json.loads(proc.stdout)
    assert doubled == 42 and parent != me and nested == 50 and squares == sum(i * i for i in range(20))
    assert local == 4
    modes = sorted(r["execution_mode"] for r in records(db))
    assert "remote" in modes and "process" in modes  # .local stayed here


def test_a_killed_jobserver_is_one_clear_line_and_nothing_is_recorded(remote):
    work, env, db = remote
    assert run(work, env, "cat data.txt").returncode == 0  # everything is launched
    proc = subprocess.Popen([tool("seamless-run"), "sleep 30; echo late"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    status_dir = work.parent / "launch" / "server"
    time.sleep(2)
    with open(status_dir / "jobserver-lab-rw-proj.json") as f:
        os.kill(json.load(f)["pid"], signal.SIGKILL)
    out, err = proc.communicate(timeout=90)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 1 and out == b""
    assert lines[-1].startswith("seamless-run: error: ") and "job server" in lines[-1], err
    assert len(records(db)) == 1  # only the first command's


def jobserver_of(work):
    """The launched job server's URL and token (services the launcher starts require one)."""
    with open(work.parent / "launch" / "server" / "jobserver-lab-rw-proj.json") as f:
        status = json.load(f)
    with open(status["token_file"]) as f:
        return f"http://127.0.0.1:{status['port']}", f.read().strip()


def test_ctrl_c_cancels_the_job_on_the_server(remote):
    work, env, db = remote
    assert run(work, env, "cat data.txt").returncode == 0
    tf = run(work, env, "--dry", "sleep 60; echo late").stdout.decode().strip()
    proc = subprocess.Popen([tool("seamless-run"), "sleep 60; echo late"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url, token = jobserver_of(work)
    deadline = time.monotonic() + 30
    while json.loads(post(url, f"/transformation-status/{tf}", method="GET", token=token)[1])["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    assert json.loads(post(url, f"/transformation-status/{tf}", method="GET", token=token)[1]) == \
        {"status": "canceled"}
    assert len(records(db)) == 1


def test_fifty_concurrent_clients(jobserver, api):
    from seamless.transformer import delayed

    @delayed
    def triple(x):
        return 3 * x

    js = jobserver("--workers", "2")
    bodies = [api(triple(i)) for i in range(50)]
    answers = [None] * 50

    def submit(i):
        answers[i] = post(js.url, "/run-transformation", bodies[i])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [value(json.loads(text)["result_checksum"]) for status, text in answers] == [3 * i for i in range(50)]
    rss_kib = int(next(line for line in open(f"/proc/{js.proc.pid}/status") if line.startswith("VmRSS")).split()[1])
    assert rss_kib < 200 * 1024


def test_a_job_longer_than_the_read_timeout_still_answers(remote):
    """Upstream's client fails jobs longer than its 1200 s read timeout; ours waits (TCP
    keepalive notices a dead server instead). Here: a 2-minute job, a 5 s read timeout."""
    work, env, db = remote
    proc = run(work, {**env, "SEAMLESS_REMOTE_READ_TIMEOUT": "5"}, "sleep 120; echo done", timeout=300)
    assert proc.returncode == 0 and proc.stdout == b"done\n", proc.stderr


def test_a_worker_killed_mid_job_is_replaced_and_the_job_retried(jobserver, api, tmp_path):
    from seamless.transformer import delayed

    @delayed
    def nap(path):
        import os
        import time

        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(3)
        return "rested"

    js = jobserver("--workers", "1")
    log = tmp_path / "starts"
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(post(js.url, "/run-transformation", api(nap(str(log))))))
    waiting.start()
    deadline = time.monotonic() + 20
    while not (log.exists() and log.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(int(log.read_text().split()[0]), signal.SIGKILL)
    waiting.join(60)
    (status, text), = answers
    assert status == 200 and value(json.loads(text)["result_checksum"]) == "rested"
    first, second = log.read_text().split()
    assert first != second  # it ran again, in the worker that replaced the killed one


def test_a_remote_command_keeps_its_exit_code_and_its_stderr(remote):
    """Issue 12 review: a failing remote command exited 1, and its stderr was lost."""
    work, env, db = remote
    proc = run(work, env, "echo to-stderr >&2; echo out; exit 7")
    assert proc.returncode == 7, proc.stderr
    assert b"to-stderr" in proc.stderr and b"the command failed with exit code 7" in proc.stderr
    proc = run(work, env, "echo warn-msg >&2; echo ok1")
    assert proc.returncode == 0 and proc.stdout == b"ok1\n" and b"warn-msg" in proc.stderr
    proc = run(work, env, "-q", "echo hidden >&2; echo ok2")
    assert proc.returncode == 0 and b"hidden" not in proc.stderr


def test_python_finds_a_new_jobserver_after_the_old_one_died(remote):
    """Issue 12 review: a process whose job server died could not use another one."""
    work, env, db = remote
    status = work.parent / "launch" / "server" / "jobserver-lab-rw-proj.json"
    proc = run_python(work, env, """
@direct
def inc(x):
    return x + 1

print(inc(1))
with open(sys.argv[1]) as f:
    os.kill(json.load(f)["pid"], signal.SIGKILL)
time.sleep(3)
print(inc(2))  # the dead server is noticed before use: a new one is launched
""", status)
    assert proc.returncode == 0 and proc.stdout.split() == ["2", "3"], proc.stderr
