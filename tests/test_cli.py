"""Command-line behaviour that is easier to check from Python than from bats."""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import tool


def test_checksum_streams_in_constant_memory(tmp_path):
    big = tmp_path / "big"
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with open(big, "wb") as f:
        for _ in range(300):
            f.write(block)
            h.update(block)
    # measure in a fresh parent: RUSAGE_CHILDREN of this process includes earlier tests' children
    probe = ("import resource, subprocess, sys; "
             "out = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True).stdout; "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(out, end='')")
    proc = subprocess.run([sys.executable, "-c", probe, tool("seamless-checksum"), str(big)],
                          capture_output=True, text=True, check=True)
    peak_kib, output = proc.stdout.split("\n", 1)
    assert output == f"{h.hexdigest()}  {big}\n"
    assert int(peak_kib) < 60 * 1024, f"seamless-checksum used {int(peak_kib) >> 10} MiB on a 300 MiB file"


def test_no_traceback_without_debug(tmp_path):
    """An unexpected error is one line; SEAMLESS_DEBUG=1 shows the traceback."""
    db = tmp_path / "junk.db"
    db.write_bytes(os.urandom(4096))
    argv = [tool("seamless-db"), str(db), "--writable", "--port", "0"]
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert quiet.returncode == 1 and quiet.stderr.count("\n") == 1
    loud = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={**os.environ, "SEAMLESS_DEBUG": "1"})
    assert loud.returncode == 1 and "Traceback" in loud.stderr


SYSTEM_PYTHON = "/usr/bin/python3"  # readable by an unprivileged user, unlike a pyenv under /root


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("su") or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root, su and a system python to drop to another user")
def test_readonly_wal_database_in_readonly_directory():
    """A seamless.db on a read-only mount (no -wal/-shm, no write access) still reads."""
    from seamless.store.sqlitedb import ResultDB

    d = tempfile.mkdtemp(dir="/tmp")
    try:
        os.chmod(d, 0o755)
        db = ResultDB(os.path.join(d, "seamless.db"), writable=True)
        db.set_transformation("aa" * 32, "bb" * 32)
        db.close()
        # a copy of the package that `nobody` can read, wherever this checkout lives
        lib = os.path.join(d, "lib")
        shutil.copytree(os.path.dirname(os.path.abspath(sys.modules["seamless"].__file__)),
                        os.path.join(lib, "seamless"))
        for root, dirs, files in os.walk(lib):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755)
        os.chmod(d, 0o555)
        code = ("import sys; sys.path.insert(0, %r); from seamless.store.sqlitedb import ResultDB; "
                "print(ResultDB(%r).get_transformation('aa' * 32))" % (lib, os.path.join(d, "seamless.db")))
        proc = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", f"{SYSTEM_PYTHON} -c \"{code}\""],
                              capture_output=True, text=True, timeout=60)
        assert proc.stdout.strip() == "bb" * 32, proc.stderr
    finally:
        os.chmod(d, 0o755)
        shutil.rmtree(d)


TOOLS = sorted(os.listdir(os.path.join(os.path.dirname(__file__), "..", "bin")))


@pytest.mark.parametrize("name", TOOLS)
def test_every_tool_answers_version(name):
    import seamless

    proc = subprocess.run([tool(name), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{name} (seamless-toolbox) {seamless.__version__}\n"


@pytest.mark.parametrize("name", TOOLS)
def test_every_tool_has_a_man_page_that_lists_version(name):
    page = os.path.join(os.path.dirname(__file__), "..", "man", "man1", name + ".1")
    with open(page) as f:
        assert "\\-\\-version" in f.read()
