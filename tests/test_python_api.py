"""The Python face: direct/delayed transformations, their states, caching, dependencies,
nesting, parallel, the spawn pool (crash, retry, cancel) and the persistent stores."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import seamless
import seamless.config
from seamless.transformer import (TransformationError, TransformationList, delayed, direct, has_spawned, parallel,
                                  parallel_async, spawn)
from seamless.cache import cache


@pytest.fixture(autouse=True)
def fresh(fresh_python):
    """Every test starts with empty caches and no configuration (conftest.fresh_python)."""


def runs_of(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


# --- direct / delayed, states --------------------------------------------------------------


@direct
def logged_add(a, b, log):
    with open(log, "a") as f:
        f.write("ran\n")
    return a + b


def test_direct_computes_once(tmp_path):
    log = tmp_path / "log"
    assert logged_add(19, 23, str(log)) == 42
    assert logged_add(19, 23, str(log)) == 42
    assert runs_of(log) == 1


@delayed
def add(a, b):
    return a + b


def test_transformation_states_and_attributes():
    tf = add(19, 23)
    assert tf.status == "Status: ready"
    with pytest.raises(TransformationError, match="not been constructed"):
        _ = tf.result_checksum
    assert tf.construct() == "b305d13f07b5d60227ab9085d44f9abc346793f684d20fd246b199907311a006"
    assert tf.transformation_checksum.hex() == tf.construct()
    with pytest.raises(TransformationError, match="not been computed"):
        _ = tf.value
    assert tf.compute() == "084c799cd551dd1d8d5c5f9a5d593b2e931f5e36122ee5c793c1d08a19839cc0"
    assert tf.status == "Status: OK" and tf.exception is None
    assert tf.run() == 42 and tf.value == 42
    assert repr(tf.result_checksum) == "'084c799cd551dd1d8d5c5f9a5d593b2e931f5e36122ee5c793c1d08a19839cc0'"
    assert tf.buffer.content == b"42\n" and repr(tf.buffer).startswith("Seamless Buffer, checksum 084c")
    assert tf.celltype == "mixed" and tf.scratch is False
    assert tf.meta["local"] is False
    with pytest.raises(TypeError):
        tf.meta["x"] = 1
    with pytest.raises(TransformationError, match="immutable"):
        tf.scratch = True
    with pytest.raises(NotImplementedError):
        _ = tf.logs
    assert isinstance(tf.result_checksum, seamless.Checksum) and tf.result_checksum.bytes()[:2] == b"\x08\x4c"


@delayed
def fails(x, log):
    with open(log, "a") as f:
        f.write("ran\n")
    raise ValueError(f"bad value {x}")


def test_failures_are_reported_and_never_cached(tmp_path):
    log = str(tmp_path / "log")
    tf = fails(1, log)
    assert tf.compute() is None and tf.status == "Status: exception"
    assert "ValueError: bad value 1" in tf.exception and 'in fails' in tf.exception
    with pytest.raises(TransformationError, match="Transformation returned an exception:\n"):
        tf.run()
    again = fails(1, log)
    assert again.compute() is None
    assert runs_of(tmp_path / "log") == 2  # a failure is never found in a cache
    tf.clear_exception()
    assert tf.status == "Status: ready"
    tf.compute()
    assert runs_of(tmp_path / "log") == 3


SCALE = 3


def bump_helper(x):
    return x + SCALE


@delayed
def scaled(x):
    return x * SCALE


@delayed
def uses_helper(x):
    return bump_helper(x)


@pytest.mark.parametrize("where", ["process", "spawn"])
def test_a_module_level_name_not_in_globals_is_named_with_the_fix(where):
    if where == "spawn":
        spawn(1)
    tf = scaled(2)
    assert tf.compute() is None
    assert "NameError: name 'SCALE' is not defined" in tf.exception  # the user's traceback, as before
    assert 'in scaled' in tf.exception and "x * SCALE" in tf.exception
    assert ("name 'SCALE' is not defined inside the transformation: module-level names are not part of it; "
            "pass it as an argument or declare it with `scaled.globals.SCALE = SCALE`") in tf.exception
    helper = uses_helper(2)  # a helper's own module-level name: declared the same way
    assert helper.compute() is None and "`uses_helper.globals.bump_helper = bump_helper`" in helper.exception
    fixed = delayed(uses_helper)
    fixed.globals.bump_helper = bump_helper
    with pytest.raises(TransformationError, match="`uses_helper.globals.SCALE = SCALE`"):
        fixed(2).run()
    fixed.globals.SCALE = SCALE
    assert fixed(2).run() == 5
    local = delayed("def f(x):\n    y = x\n    del y\n    return y")(x=1)
    assert local.compute() is None  # not a module-level name: no such advice
    assert "UnboundLocalError" in local.exception and ".globals" not in local.exception


def test_settings_are_checked_when_made():
    with pytest.raises(AttributeError):
        add.celltypes.c = "int"
    with pytest.raises(TypeError):
        add.celltypes.a = dict
    with pytest.raises(TypeError, match="result celltype cannot be 'deepfolder'"):
        add.celltypes.result = "deepfolder"
    with pytest.raises(TypeError, match="missing a required argument: 'b'"):
        add(1)
    code = delayed("result = a + b")
    with pytest.raises(TypeError, match="positional"):
        code(1, 2)
    assert code(a=1, b=2).run() == 3


def test_celltypes_args_and_orthogonal_settings():
    tf = delayed(add)
    tf.celltypes.a = int
    tf.celltypes.b = "int"
    tf.celltypes.result = "str"
    tf.args.b = 23
    assert tf("19").run() == "42"
    base = add(19, 23).construct()
    other = delayed(add)
    other.meta = {"ncores": 2}
    other.local = True
    other.scratch = True
    other.environment.set_conda_env("myenv")
    assert other(19, 23).construct() == base  # meta, local, scratch, environment: not identity


def test_code_strings_python_and_bash():
    expression = delayed("a * b + 1")
    assert expression(a=6, b=7).run() == 43
    bash = direct("echo $((n * 2)) > RESULT", language="bash")
    bash.celltypes.n = "int"
    assert bash(n=21) == 42
    folder = direct("mkdir RESULT; echo $n > RESULT/n; echo hi > RESULT/msg", language="bash")
    assert folder(n=5) == {"msg": "hi\n", "n": 5}
    block = delayed("result = a * b")
    block.args.a = 6
    block.celltypes.b = "int"
    assert block(b=7).run() == 42
    del block.args.a  # a code string's pin goes as a whole, as upstream
    assert sorted(block.celltypes) == ["b", "result"]
    assert block(a=2, b=7).run() == 14


def test_a_bash_transformer_runs_in_its_conda_environment(tmp_path, monkeypatch):
    profile = tmp_path / "conda" / "etc" / "profile.d"
    profile.mkdir(parents=True)
    (profile / "conda.sh").write_text('conda() { export ACTIVE_ENV="$2"; }\n')  # a stand-in conda
    monkeypatch.setenv("CONDA_ROOT", str(tmp_path / "conda"))
    which = direct("echo $ACTIVE_ENV-$n > RESULT", language="bash")
    which.celltypes.n = "int"
    which.environment.set_conda_env("analysis")
    assert which(n=1) == "analysis-1\n"
    spawn(1)
    assert which(n=2) == "analysis-2\n"  # in a worker too
    which.environment.set_conda_env("missing-conda")
    monkeypatch.setenv("CONDA_ROOT", str(tmp_path / "nowhere"))
    seamless.close()
    with pytest.raises(TransformationError, match="conda environment 'missing-conda': conda is not found"):
        which(n=3)


# --- dependencies, nesting ---------------------------------------------------------------------


@delayed
def slow_value(x, seconds):
    import time

    time.sleep(seconds)
    return x


def test_dependencies_are_evaluated_first_and_in_parallel():
    start = time.monotonic()
    total = add(slow_value(1, 0.6), slow_value(2, 0.6))
    assert total.run() == 3
    assert time.monotonic() - start < 1.1  # both dependencies at once
    assert add(1, 2).construct() == total.construct()  # a dependency pin is its result checksum


def test_a_cache_too_small_to_keep_anything_costs_no_reruns(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "cap", 0)  # SEAMLESS_BUFFER_CACHE_MB=0
    log = tmp_path / "log"
    assert logged_add(1, 2, str(log)) == 3
    assert runs_of(log) == 1  # the value came from the execution, not from running it again
    logged = delayed(logged_add)
    tf = logged(logged(1, 2, str(log)), logged(3, 4, str(log)), str(log))
    assert tf.run() == 10 and tf.value == 10
    assert runs_of(log) == 4  # each of the three once (1 + 2 again: its bytes were not kept)
    spawn(1)
    assert logged(5, 6, str(log)).run() == 11 and runs_of(log) == 5


@delayed
def outer(n):
    from seamless.transformer import direct

    @direct
    def inner(x):
        return x * 2

    return inner(n) + 1


def test_nested_transformations_in_process():
    assert outer(20).run() == 41
    tfs = [outer(i).start() for i in range(20)]  # more than the thread pool: no deadlock
    assert [tf.run() for tf in tfs] == [2 * i + 1 for i in range(20)]


@delayed
def deep(n):
    from seamless.transformer import delayed

    @delayed
    def step(k):
        return k + 1

    value = 0
    for _ in range(n):
        value = step(value).run()
    return value


def test_many_nested_levels_started_at_once_do_not_deadlock():
    tfs = [deep(i).start() for i in range(12)]
    assert [tf.run() for tf in tfs] == list(range(12))


def test_event_loop_rules():
    async def main():
        with pytest.raises(RuntimeError, match="Cannot block on run"):
            add(1, 2).run()
        with pytest.raises(RuntimeError, match="Cannot block on func"):
            logged_add(1, 2, "x")
        value = await add(2, 2).task()
        cs = await add(3, 4).computation()
        return value, cs

    value, cs = asyncio.run(main())
    assert value == 4 and cs is not None


def test_cancel_is_terminal():
    tf = slow_value(1, 5).start()
    time.sleep(0.1)
    assert tf.cancel() is True and tf.status == "Status: canceled"
    with pytest.raises(TransformationError, match="canceled"):
        tf.run()
    assert tf.cancel() is False
    done = add(1, 1)
    done.run()
    assert done.cancel() is False and done.status == "Status: OK"


# --- parallel -----------------------------------------------------------------------------------


@delayed
def interval(i, seconds):
    import time

    start = time.time()
    time.sleep(seconds)
    if i == 3:
        raise ValueError("item 3 failed")
    return [start, time.time()]


def test_parallel_keeps_order_and_nparallel():
    seamless.config.set_nparallel(2)
    tfs = [interval(i, 0.3) for i in range(6)]
    got = list(parallel(tfs))
    assert got == tfs
    assert [tf.status for tf in got].count("Status: exception") == 1
    spans = [tf.value for tf in got if tf.exception is None]
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    assert peak <= 2


def test_parallel_async_and_transformation_list(capsys):
    async def collect():
        return [tf async for tf in parallel_async([interval(i, 0.05) for i in range(5)])]

    assert len(asyncio.run(collect())) == 5
    listing = TransformationList([interval(i, 0.01) for i in range(5)], on_error="print", store_details=True)
    assert len(list(parallel(listing))) == 5
    assert "item 3 failed" in capsys.readouterr().out
    assert listing._stored_exceptions[3] and listing._stored_checksums[0] is not None
    raising = TransformationList([interval(i, 0.01) for i in range(5)], on_error="raise")
    with pytest.raises(RuntimeError, match="Transformation 3 failed"):
        list(parallel(raising))
    with pytest.raises(ValueError):
        TransformationList([], on_error="ignore")


# --- the spawn pool --------------------------------------------------------------------------------


@delayed
def pid_of(x):
    import os

    return [x, os.getpid()]


@delayed
def nested_pids(n):
    import os

    from seamless.transformer import delayed

    @delayed
    def inner(x):
        import os

        return os.getpid()

    return [os.getpid(), inner(n).run()]


@delayed
def crash_once(marker):
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return "survived"


@delayed
def always_crash(x):
    import os

    os._exit(4)


def test_spawn_runs_elsewhere_and_nests():
    spawn(2)
    assert has_spawned()
    with pytest.raises(RuntimeError, match="already been spawned"):
        spawn(2)
    pids = {tf.run()[1] for tf in [pid_of(i).start() for i in range(6)]}
    assert os.getpid() not in pids and len(pids) == 2
    outer_pid, inner_pid = nested_pids(1).run()
    assert os.getpid() not in (outer_pid, inner_pid)
    local = pid_of(99)
    local_transformer = delayed(pid_of)
    local_transformer.local = True
    assert local_transformer(100).run()[1] == os.getpid()  # .local stays in this process
    assert local.run()[1] != os.getpid()


def test_spawn_nesting_deeper_than_the_pool_does_not_deadlock():
    spawn(1)
    tfs = [deep(i).start() for i in range(8)]
    assert [tf.run() for tf in tfs] == list(range(8))


def test_a_crashed_worker_is_replaced_and_the_job_retried(tmp_path):
    spawn(2)
    assert crash_once(str(tmp_path / "marker")).run() == "survived"
    tf = always_crash(1)
    assert tf.compute() is None and "died" in tf.exception
    assert pid_of(5).run()[0] == 5  # the pool still works


def test_cancel_frees_the_slot():
    os.environ["SEAMLESS_WORKER_TRANSFORMATION_THROTTLE"] = "1"
    try:
        spawn(1)
        stuck = slow_value(1, 30).start()
        time.sleep(0.5)
        assert stuck.cancel()
        start = time.monotonic()
        assert pid_of(7).run()[0] == 7 and time.monotonic() - start < 10
    finally:
        del os.environ["SEAMLESS_WORKER_TRANSFORMATION_THROTTLE"]


@delayed
def sleepy_outer(x):
    from seamless.transformer import direct

    @direct
    def sleepy_inner(x):
        import time

        time.sleep(1.5)
        return x + 1

    return sleepy_inner(x)


def test_the_pool_survives_a_reply_to_a_canceled_worker():
    spawn(2)
    outer = sleepy_outer(1).start()
    time.sleep(0.8)  # the inner job runs on the other worker
    outer.cancel()
    time.sleep(1.5)  # its answer goes to a worker that is gone
    assert [t.run()[0] for t in [pid_of(i).start() for i in range(6)]] == list(range(6))


def test_close_fails_queued_jobs_instead_of_leaving_them_pending(monkeypatch):
    monkeypatch.setenv("SEAMLESS_WORKER_TRANSFORMATION_THROTTLE", "1")
    spawn(1)
    tfs = [slow_value(i, 10).start() for i in range(3)]
    time.sleep(0.5)
    seamless.close()
    for tf in tfs:
        assert tf._done.wait(10) and tf.exception == "the worker pool was closed"


def test_workers_that_cannot_start_give_an_error_not_a_loop(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")
    spawn(2)
    with pytest.raises(TransformationError, match="the spawn workers exit as they start"):
        pid_of(1).run()


@delayed
def counted(x, log, seconds):
    import time

    with open(log, "a") as f:
        f.write("ran\n")
    time.sleep(seconds)
    return x * 3


@pytest.mark.parametrize("where", ["process", "spawn"])
def test_identical_transformations_at_once_execute_once(tmp_path, where):
    import concurrent.futures

    if where == "spawn":
        spawn(2)
    log = tmp_path / "log"
    with concurrent.futures.ThreadPoolExecutor(6) as threads:
        values = list(threads.map(lambda _: counted(14, str(log), 0.5).run(), range(6)))
    assert values == [42] * 6 and runs_of(log) == 1


@delayed
def fails_slowly(x):
    import time

    time.sleep(1)
    raise ValueError(f"bad {x}")


def test_identical_failures_at_once_fail_together():
    import concurrent.futures

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as threads:
        errors = list(threads.map(lambda _: fails_slowly(7).compute() or "", range(4)))
    assert errors == [""] * 4 and time.monotonic() - start < 1.9  # one run shared, not four in a row


def test_a_canceled_transformation_waiting_for_an_identical_one_runs_nothing(monkeypatch):
    monkeypatch.setenv("SEAMLESS_WORKER_TRANSFORMATION_THROTTLE", "1")
    spawn(1)
    first, second = slow_value(1, 20).start(), slow_value(1, 20).start()
    time.sleep(0.5)
    first.cancel()
    second.cancel()
    start = time.monotonic()
    assert pid_of(3).run()[0] == 3 and time.monotonic() - start < 5  # the slot is free
    assert second.status == "Status: canceled"


def test_the_pool_survives_its_shared_memory_directory_going_away(tmp_path):
    import shutil

    from seamless.execution.backends import pool

    spawn(1)
    assert pid_of(1).run()[0] == 1
    shutil.rmtree(pool().spill)
    assert len(add(b"x" * (2 << 20), b"y").run()) == (2 << 20) + 1  # large buffers go in the stream
    tf = always_crash(2)  # every replacement worker needs its directory back
    assert tf.compute() is None and "died" in tf.exception
    assert pid_of(2).run()[0] == 2
    workers = pool().workers
    assert all(os.getpgid(w.proc.pid) != os.getpgid(0) for w in workers)  # a Ctrl-C is not theirs


def test_only_results_the_cache_cannot_keep_stay_with_their_transformation(monkeypatch):
    from seamless import Buffer

    small = add(1, 2)
    assert small.run() == 3 and small._held is None
    monkeypatch.setattr(cache, "cap", 100)
    large = add("x" * 200, "y")
    assert large.run() == "x" * 200 + "y" and large._held is not None
    one, two = Buffer(b"kept"), Buffer(b"")
    one.incref()
    one.incref()
    one.decref()
    two.incref()
    cache.buffers.clear()
    assert one.checksum.resolve() == b"kept" and two.checksum.resolve() == b""  # counted, and empty is a buffer
    assert b"kept" in {one}


def test_exit_and_interrupt_in_user_code(tmp_path):
    quits = direct("import sys\nsys.exit(3)")
    with pytest.raises(TransformationError, match="SystemExit: 3"):
        quits(x=1)  # a failure, not our exit
    marker = tmp_path / "interrupted"
    tf = delayed(interrupt_once)(str(marker))
    with pytest.raises(KeyboardInterrupt):
        tf.run()
    assert tf.run() == "resumed"  # an interrupted evaluation runs again


def interrupt_once(marker):
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise KeyboardInterrupt
    return "resumed"


def test_an_argument_that_cannot_be_serialized_is_named():
    with pytest.raises(TypeError, match="argument 'b' \\(function\\) cannot be serialized as celltype 'mixed'"):
        add(1, lambda: 1)


def test_large_buffers_go_in_the_stream_when_shared_memory_is_full(tmp_path):
    import socket

    from seamless.execution import wire

    left, right = socket.socketpair()
    sender = wire.Channel(left, str(tmp_path / "no-such-dir"))  # as good as full
    receiver = wire.Channel(right, str(tmp_path))
    big = os.urandom(3 << 20)
    sending = threading.Thread(target=sender.send, args=({"op": "x"}, [big, b"small"]))
    sending.start()
    assert receiver.receive() == ({"op": "x"}, [big, b"small"])
    sending.join()


def test_nested_results_run_inside_a_worker_are_kept_by_the_parent(tmp_path):
    code = """
    import json, os, sys
    os.environ["SEAMLESS_WORKER_TRANSFORMATION_THROTTLE"] = "1"  # the parent has no free slot: runs in the worker
    import seamless, seamless.config
    from seamless.transformer import direct, spawn

    @direct
    def outer(x, log):
        from seamless.transformer import direct

        @direct
        def inner(y, log):
            with open(log, "a") as f:
                f.write("ran\\n")
            return y * 2

        return inner(x, log)

    seamless.config.init()
    if sys.argv[1:] == []:
        spawn(1)
        from seamless.execution.backends import pool
        print(json.dumps([outer(21, "inner.log"), pool().spill]))  # no close(): exit cleans up
    """
    value, spill = child(code, tmp_path)
    assert value == 42 and not os.path.exists(spill)
    again = code.replace("if sys.argv[1:] == []:", "if False:") + """
    @direct
    def inner(y, log):
        with open(log, "a") as f:
            f.write("ran\\n")
        return y * 2

    print(json.dumps(inner(21, "inner.log")))
    """
    assert child(again, tmp_path) == 42
    assert runs_of(tmp_path / "inner.log") == 1  # the second process found it in the store


# --- configuration and persistence ------------------------------------------------------------


def child(code, tmp_path, env_extra=None):
    """Run code in a fresh interpreter (a module file, so sources are readable)."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


PERSIST = """
import json, sys
import seamless.config
from seamless.transformer import delayed

@delayed
def add_logged(a, b, log):
    with open(log, "a") as f:
        f.write("ran\\n")
    return a + b

seamless.config.init()
tf = add_logged(1, 2, sys.argv[0] + ".log")
SCRATCH
print(json.dumps([tf.run(), str(tf.result_checksum)]))
"""


def test_results_persist_across_processes_after_init(tmp_path):
    log = tmp_path / "child.py.log"
    first = child(PERSIST.replace("SCRATCH", ""), tmp_path)
    second = child(PERSIST.replace("SCRATCH", ""), tmp_path)
    assert first == second == [3, second[1]]
    assert runs_of(log) == 1  # the second process found it in the zero-config cache
    cache_dir = tmp_path / "xdg" / "seamless"
    assert (cache_dir / "__TOPLEVEL__" / "seamless.db").exists() or any(cache_dir.rglob("seamless.db"))


def test_scratch_keeps_only_the_checksum(tmp_path):
    scratch = PERSIST.replace("tf = add_logged(", "add_logged.scratch = True\ntf = add_logged(").replace("SCRATCH", "")
    first = child(scratch, tmp_path)
    second = child(scratch, tmp_path)
    assert first == second
    assert runs_of(tmp_path / "child.py.log") == 2  # no result bytes were kept: recomputed
    compute_only = scratch.replace("print(json.dumps([tf.run(), str(tf.result_checksum)]))",
                                   "print(json.dumps(str(tf.compute())))")
    assert child(compute_only, tmp_path) == first[1]
    assert runs_of(tmp_path / "child.py.log") == 2  # the checksum row answers compute(): nothing ran


def test_without_init_nothing_is_written(tmp_path):
    child(PERSIST.replace("seamless.config.init()", "").replace("SCRATCH", ""), tmp_path)
    assert not (tmp_path / "xdg" / "seamless").exists()


def test_checksum_and_buffer_objects(tmp_path, monkeypatch):
    from seamless import Buffer, CacheMissError, Checksum

    assert repr(Checksum) == "<class 'seamless.Checksum'>"
    buf = Buffer(42, "int")  # upstream's constructor: a value and its celltype
    assert buf.content == b"42\n" and buf == Buffer(b"42\n") and buf.get_value("int") == 42
    assert Buffer({"a": [1]}, "plain").get_value("plain") == {"a": [1]}
    with pytest.raises(TypeError, match="Buffer\\(42, 'int'\\)"):
        Buffer(42)
    buf.save(str(tmp_path / "v"))
    buf.checksum.save(str(tmp_path / "v"))
    assert Buffer.load(str(tmp_path / "v")) == buf
    assert Checksum.load(str(tmp_path / "v")) == buf.checksum  # v.CHECKSUM

    monkeypatch.setattr(cache, "cap", 0)  # nothing stays in memory unless pinned
    buf.incref()
    assert buf.checksum.resolve("int") == 42
    buf.decref()
    with pytest.raises(CacheMissError):
        buf.checksum.resolve()

    seamless.config.init()
    log = tmp_path / "log"
    logged = delayed(logged_add.__wrapped__ if hasattr(logged_add, "__wrapped__") else logged_add)
    logged.scratch = True
    tf = logged(20, 22, str(log))
    result = tf.compute()
    assert runs_of(log) == 1
    with pytest.raises(CacheMissError):
        result.resolve()  # scratch: the bytes were never kept
    assert result.fingertip("mixed") == 42  # recomputed from the stored transformation
    assert runs_of(log) == 2
    assert asyncio.run(Buffer(b"x").write()) is True


def local_cluster(tmp_path, extra=""):
    """A HOME whose clusters.yaml makes `box` this machine (its files used directly)."""
    home = tmp_path / "home"
    (home / ".seamless").mkdir(parents=True)
    (home / ".seamless" / "clusters.yaml").write_text(
        f"local_cluster: box\nbox:\n  type: local\n  workers: 2\n  frontends:\n"
        f"    - hashserver: {{bufferdir: {tmp_path}/b}}\n      database: {{database_dir: {tmp_path}/d}}\n{extra}")
    return {"HOME": str(home), "SEAMLESS_LAUNCH_DIR": str(tmp_path / "launch")}


def test_execution_spawn_from_the_configuration(tmp_path):
    env = local_cluster(tmp_path)
    (tmp_path / "seamless.yaml").write_text("- project: p\n- cluster: box\n- execution: spawn\n")
    out = child("""
        import json, os
        import seamless.config
        from seamless.transformer import delayed, has_spawned

        @delayed
        def pid(x):
            import os
            return os.getpid()

        seamless.config.init()
        print(json.dumps([pid(1).run() != os.getpid(), has_spawned()]))
        """, tmp_path, env)
    assert out == [True, True]
    assert not (tmp_path / "launch").exists()  # files used directly: no services


def test_a_daskserver_that_cannot_start_is_a_clear_error(tmp_path):
    env = local_cluster(tmp_path, "      daskserver: {}\n")
    (tmp_path / "seamless.yaml").write_text("- project: p\n- cluster: box\n- execution: remote\n")
    out = child("""
        import json, os
        import seamless.config
        from seamless.transformer import delayed

        @delayed
        def add(a, b):
            return a + b

        seamless.config.init()
        tf = add(1, 2)
        failed = tf.compute() is None and "defines no queues" in tf.exception
        add.local = True
        print(json.dumps([failed, add(1, 2).run()]))
        """, tmp_path, env)
    assert out == [True, 3]


def test_the_import_stays_light():
    code = ("import sys; from seamless.transformer import direct, delayed; "
            "print(sorted(m for m in ('yaml', 'asyncio', 'multiprocessing', 'concurrent.futures', 'sqlite3') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_man_page_example_runs(tmp_path):
    page = open(os.path.join(os.path.dirname(__file__), "..", "man", "man7", "seamless-python.7")).read()
    example = page[page.index(".SH EXAMPLES"):]
    code = example[example.index(".nf\n") + 4:example.index("\n.fi")]
    code = code.replace("\\-", "-").replace("\\\\", "\\")
    (tmp_path / "example.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    outputs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout.split())
    assert outputs[0] == outputs[1]
    assert outputs[0][0] == "42" and outputs[0][1] == "21" and outputs[0][3:] == ["42", "0", "1", "4", "9", "16", "3"]
