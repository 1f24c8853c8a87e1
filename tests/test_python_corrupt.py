"""A corrupt stored buffer is a missing one: the Python API removes it, says so on stderr
(one line), recomputes what it needs and stores the good bytes again; the in-memory
cache never serves bytes that do not hash to their checksum."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

import seamless
import seamless.config
from seamless import Buffer, CacheMissError, Checksum
from seamless.transformer import delayed
from seamless.cache import cache


@pytest.fixture(autouse=True)
def fresh(fresh_python):
    """Every test starts with empty caches and no configuration (conftest.fresh_python)."""


def child(code, tmp_path, *args):
    """Run code in a fresh interpreter: (its last stdout line as JSON, its stderr lines)."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    proc = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr.splitlines()


def runs(tmp_path, name):
    log = tmp_path / name
    return len(log.read_text().splitlines()) if log.exists() else 0


def stored(tmp_path, cs):
    """The file holding buffer cs in the zero-config cache."""
    found = [p for p in (tmp_path / "xdg" / "seamless").rglob(cs) if p.is_file()]
    assert len(found) == 1, found
    return found[0]


def corrupt(path):
    os.chmod(path, 0o644)  # stored buffers are 0444
    path.write_bytes(b"not what was stored\n")


def is_good(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() == path.name


PERSIST = """
import json, sys
import seamless.config
from seamless.transformer import delayed, spawn

@delayed
def add_logged(a, b):
    with open("add.log", "a") as f:
        f.write("ran\\n")
    return a + b

if __name__ == "__main__":
    seamless.config.init()
    if sys.argv[1] == "spawn":
        spawn(1)
    tf = add_logged(20, 22)
    print(json.dumps([tf.run(), str(tf.result_checksum)]))
"""


@pytest.mark.parametrize("where", ["process", "spawn"])
def test_a_corrupt_cached_result_is_recomputed_and_stored_again(tmp_path, where):
    (value, result), _ = child(PERSIST, tmp_path, where)
    assert value == 42 and runs(tmp_path, "add.log") == 1
    path = stored(tmp_path, result)
    corrupt(path)
    again, stderr = child(PERSIST, tmp_path, where)
    assert again == [42, result]  # the right value, not a CorruptBuffer
    assert runs(tmp_path, "add.log") == 2  # recomputed, as a missing result is
    assert len(stderr) == 1 and "corrupt" in stderr[0] and result in stderr[0], stderr
    assert is_good(path)  # the good bytes are stored again
    third, stderr = child(PERSIST, tmp_path, where)
    assert third == [42, result] and runs(tmp_path, "add.log") == 2 and stderr == []


CHAIN = """
import json
import seamless.config
from seamless.transformer import delayed

@delayed
def add(a, b):
    with open("add.log", "a") as f:
        f.write("ran\\n")
    return a + b

@delayed
def mul(a, b):
    with open("mul.log", "a") as f:
        f.write("ran\\n")
    return a * b

if __name__ == "__main__":
    seamless.config.init()
    inner = add(1, 2)
    tf = mul(inner, 7)
    print(json.dumps([tf.run(), str(inner.result_checksum), str(tf.result_checksum)]))
"""


def test_a_corrupt_dependency_result_is_recomputed_when_it_is_needed(tmp_path):
    (value, inner, outer), _ = child(CHAIN, tmp_path)
    assert value == 21
    for cs in (inner, outer):
        corrupt(stored(tmp_path, cs))
    again, stderr = child(CHAIN, tmp_path)
    assert again == [21, inner, outer]
    assert runs(tmp_path, "add.log") == 2 and runs(tmp_path, "mul.log") == 2  # both needed, both rerun
    assert len(stderr) == 2 and all("corrupt" in line for line in stderr), stderr
    assert is_good(stored(tmp_path, inner)) and is_good(stored(tmp_path, outer))


NESTED = """
import json, sys
import seamless.config
from seamless.transformer import delayed, spawn

@delayed
def outer(n, tag):
    from seamless.transformer import delayed

    @delayed
    def inner(n):
        with open("inner.log", "a") as f:
            f.write("ran\\n")
        return n * 2

    return inner(n).run()

if __name__ == "__main__":
    seamless.config.init()
    spawn(1)
    print(json.dumps(outer(21, sys.argv[1]).run()))
"""


def test_a_corrupt_result_asked_for_by_a_worker_is_recomputed(tmp_path):
    assert child(NESTED, tmp_path, "first")[0] == 42
    assert runs(tmp_path, "inner.log") == 1
    cs = hashlib.sha256(b"42\n").hexdigest()
    corrupt(stored(tmp_path, cs))
    value, stderr = child(NESTED, tmp_path, "second")  # a new outer: its worker asks the parent for inner
    assert value == 42 and runs(tmp_path, "inner.log") == 2
    assert len(stderr) == 1 and "corrupt" in stderr[0], stderr
    assert is_good(stored(tmp_path, cs))


def test_checksums_treat_a_corrupt_buffer_as_missing(tmp_path, capfd):
    seamless.config.init()
    log = tmp_path / "log"

    @delayed
    def logged(x, log):
        with open(log, "a") as f:
            f.write("ran\n")
        return x + 1

    tf = logged(41, str(log))
    result = tf.compute()
    plain = Buffer(b"plain bytes\n")
    cache.stores().put_buffer(plain.content)
    cache.clear()
    corrupt(stored(tmp_path, plain.checksum.hex()))
    with pytest.raises(CacheMissError):
        plain.checksum.resolve()  # as if it were missing, not a CorruptBuffer
    corrupt(stored(tmp_path, result.hex()))
    assert Checksum(result.hex()).fingertip("mixed") == 42  # recomputed from its transformation
    assert runs(tmp_path, "log") == 2
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 2 and all("corrupt" in line for line in err), err


def test_the_memory_cache_never_holds_bytes_under_another_checksum():
    liar = Buffer(b"the real bytes\n", checksum="0" * 64)
    with pytest.raises(ValueError, match="does not hash to"):
        liar.incref()
    with pytest.raises(CacheMissError):
        Checksum("0" * 64).resolve()

    @delayed
    def echo(data):
        return data

    echo.celltypes.data = "bytes"
    tf = echo(liar)  # its bytes are the argument, under their own checksum
    assert tf.run() == b"the real bytes\n"
    assert tf._transformation["data"][2] == hashlib.sha256(b"the real bytes\n").hexdigest()


def test_a_worker_record_whose_bytes_do_not_match_is_refused():
    from seamless.execution import backends
    from seamless.transformer import spawn

    spawn(1)
    forged = {"op": "record", "tf": "1" * 64, "result": "2" * 64, "scratch": False, "seconds": 0.0, "buffers": []}
    with pytest.raises(ValueError, match="does not hash to"):
        backends.pool().recorded(forged, [b"other bytes"])  # a worker's _read() reports it on stderr
    assert cache.get_result("1" * 64) is None and cache.get_buffer("2" * 64) is None
