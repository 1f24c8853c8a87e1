"""Files as arguments of Python and bash transformers: a path is a value (its contents are
not part of the identity); a file's bytes go in as a Buffer (or a Checksum), as upstream."""

import asyncio
import json
import os
import subprocess
import sys

import pytest

import seamless
import seamless.config
from seamless import Buffer, Checksum
from seamless.transformer import delayed, direct
from seamless.cache import cache

UPSTREAM = os.environ.get("SEAMLESS_UPSTREAM_VENV", "")
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(autouse=True)
def fresh(fresh_python):
    """Every test starts with empty caches and no configuration (conftest.fresh_python)."""


@delayed
def echo(data):
    return data


echo.celltypes.data = "bytes"

ECHO = '''
import json, sys
from seamless import Buffer
from seamless.transformer import delayed

@delayed
def echo(data):
    return data

echo.celltypes.data = "bytes"
print(json.dumps(echo(Buffer(b"\\x00raw\\nbytes")).construct().hex()))
'''


def test_a_buffer_or_checksum_argument_is_the_bytes_themselves(tmp_path):
    raw = b"\x00raw\nbytes"
    (tmp_path / "data.bin").write_bytes(raw)
    buffer = Buffer.load("data.bin")
    by_buffer = echo(buffer)
    assert by_buffer.run() == raw  # not the bytes of str(buffer)
    assert by_buffer.construct() == echo(raw).construct()  # the same transformation as the bytes

    seamless.config.init()
    assert asyncio.run(buffer.write())
    cache.clear()  # from here on the bytes are only in the store
    by_checksum = echo(Checksum(buffer.checksum.hex()))
    assert by_checksum.construct() == by_buffer.construct()
    assert by_checksum.run() == raw
    assert echo(buffer.checksum.hex()).run() == buffer.checksum.hex().encode()  # a str is a value
    assert delayed(echo.__wrapped__)(buffer).run() == raw.decode()  # a mixed pin: the buffer as it is, read as text
    if UPSTREAM and os.path.exists(os.path.join(UPSTREAM, "bin", "python")):
        script = tmp_path / "upstream_echo.py"
        script.write_text(ECHO)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
        out = subprocess.run([os.path.join(UPSTREAM, "bin", "python"), str(script)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1]) == by_buffer.construct()  # upstream's identity


def man_example(marker):
    """The example of seamless-python(7) whose first line is `marker`."""
    page = open(os.path.join(HERE, "..", "man", "man7", "seamless-python.7")).read()
    start = page.index(".nf\n" + marker) + 4
    code = page[start:page.index("\n.fi", start)]
    return code.replace("\\-", "-").replace("\\\\", "\\")


def run_example(tmp_path, code):
    (tmp_path / "files.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    proc = subprocess.run([sys.executable, "files.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_the_man_page_file_example_follows_the_file(tmp_path):
    code = man_example("# files.py")
    (tmp_path / "data.txt").write_text("a\nb\nc\n")
    assert run_example(tmp_path, code) == ["3", "3"]
    (tmp_path / "data.txt").write_text("a\nb\nc\nd\ne\n")
    assert run_example(tmp_path, code) == ["5", "5"]  # new contents, a new transformation


@direct
def count_lines_in(path):
    with open(path) as f:
        return len(f.read().splitlines())


def test_a_path_argument_is_a_value_as_the_man_page_warns(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("a\nb\nc\n")
    assert count_lines_in(str(data)) == 3
    data.write_text("a\nb\nc\nd\ne\n")
    assert count_lines_in(str(data)) == 3  # the old result, found by checksum: the trap the page names
    page = open(os.path.join(HERE, "..", "man", "man7", "seamless-python.7")).read()
    assert "A file path is a value" in page


def test_an_uploaded_file_goes_in_by_its_checksum_sidecar(tmp_path):
    (tmp_path / "data.txt").write_bytes(b"a\nb\nc\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    upload = os.path.join(os.path.dirname(sys.executable), "seamless-upload")
    proc = subprocess.run([upload, "data.txt"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    seamless.config.init()  # the same zero-config store seamless-upload used
    wc = direct("wc -l < data > RESULT", language="bash")
    wc.celltypes.data = "bytes"
    assert wc(data=Checksum.load("data.txt")) == 3
    assert wc(data=Checksum.load("data.txt")) == wc(data=Buffer.load("data.txt"))
