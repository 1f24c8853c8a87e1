"""SEAMLESS_REMOTE_CLIENTS: upstream's shape for "which stores and databases are active"."""

import json

import pytest

from seamless.store.clients import ClientsError, StoreSet
from seamless.store.directory import DirectoryStore
from seamless.store.httpdb import HttpResultDB
from seamless.store.httpstore import HttpBufferStore


def test_upstream_example_shape(tmp_path):
    clients = {"database": [{"readonly": False, "url": "http://h:5520", "remote_url": "http://h:5520"}],
               "buffer": [{"readonly": False, "url": "http://h:5510", "remote_url": "http://h:5510",
                           "remote_directory": str(tmp_path)}]}
    stores = StoreSet.from_clients(json.dumps(clients), in_remote=True)
    assert [type(s) for s in stores.buffer_read] == [DirectoryStore, HttpBufferStore]
    assert [type(s) for s in stores.buffer_write] == [HttpBufferStore]
    assert stores.buffer_read[0].directory == str(tmp_path) and not stores.buffer_read[0].writable
    assert [type(d) for d in stores.db_read] == [HttpResultDB] and stores.db_write == stores.db_read
    assert json.loads(stores.to_json()) == clients


def test_unset_means_none():
    from seamless.session import env_clients

    assert env_clients({}) is None
    assert env_clients({"SEAMLESS_REMOTE_CLIENTS": "{}", "SEAMLESS_CACHE": "/c"}) is None  # SEAMLESS_CACHE wins


def test_readonly_defaults_to_true(tmp_path):
    stores = StoreSet.from_clients({"buffer": [{"url": "http://h:1"}], "database": [{"url": "http://h:2"}]})
    assert stores.buffer_write == [] and stores.db_write == []


def test_url_without_remote_url_is_used_in_workers():
    stores = StoreSet.from_clients({"buffer": [{"url": "http://h:1"}]}, in_remote=True)
    assert stores.buffer_read[0].url == "http://h:1"


def test_remote_fields_win_in_workers(tmp_path):
    entry = {"url": "http://outside:1", "remote_url": "http://inside:1", "directory": "/nonexistent",
             "remote_directory": str(tmp_path)}
    stores = StoreSet.from_clients({"buffer": [entry]}, in_remote=True)
    assert stores.buffer_read[0].directory == str(tmp_path)
    assert stores.buffer_read[1].url == "http://inside:1"


def test_writable_directory_entry(tmp_path):
    stores = StoreSet.from_clients({"buffer": [{"directory": str(tmp_path), "readonly": False}]})
    cs = stores.put_buffer(b"direct")
    assert stores.get_buffer(cs) == b"direct" and stores.has_buffer(cs)


@pytest.mark.parametrize("text,message", [
    ("{not json", "not valid JSON"),
    ("[]", "JSON object"),
    ('{"buffers": []}', "unknown section"),
    ('{"buffer": {}}', "must be a list"),
    ('{"buffer": [5]}', "JSON object"),
    ('{"buffer": [{}]}', "needs a 'url'"),
    ('{"buffer": [{"url": 5}]}', "must be a string"),
    ('{"buffer": [{"url": "http://h:1", "readonly": "no"}]}', "true or false"),
    ('{"database": [{"directory": "/x"}]}', "needs a 'url'"),
    ('{"buffer": [{"directory": "/nonexistent/dir"}]}', "does not exist"),
])
def test_errors_are_clear(text, message):
    with pytest.raises(ClientsError, match=message):
        StoreSet.from_clients(text, in_remote=True)


def test_end_to_end_through_servers(hashserver, dbserver):
    stores = StoreSet.from_clients({"buffer": [{"url": hashserver.url, "readonly": False}],
                                    "database": [{"url": dbserver.url, "readonly": False}]})
    cs = stores.put_buffer(b"result bytes")
    stores.set_transformation("ab" * 32, cs)
    assert stores.get_transformation("ab" * 32) == cs
    assert stores.get_buffer(cs) == b"result bytes"


def test_a_missing_token_file_names_where_it_came_from(tmp_path, monkeypatch):
    """Issue 10 review: SEAMLESS_TOKEN_FILE=/nonexist said only "No such file or directory"."""
    from seamless.store import StoreError

    missing = str(tmp_path / "nonexist")
    monkeypatch.setenv("SEAMLESS_TOKEN_FILE", missing)
    with pytest.raises(StoreError) as info:
        StoreSet.from_clients({"buffer": [{"url": "http://h:1"}]})
    message = str(info.value)
    assert missing in message and "SEAMLESS_TOKEN_FILE" in message and "No such file" in message
    assert "unset" in message  # how to fix it
    monkeypatch.delenv("SEAMLESS_TOKEN_FILE")
    with pytest.raises(StoreError) as info:
        StoreSet.from_clients({"database": [{"url": "http://h:2", "token_file": missing}]})
    message = str(info.value)
    assert missing in message and "token_file" in message and "http://h:2" in message
    assert "SEAMLESS_TOKEN_FILE" not in message


def test_a_missing_token_file_is_one_line_from_the_tools(tmp_path):
    import os
    import subprocess

    from conftest import tool

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env["SEAMLESS_TOKEN_FILE"] = "/nonexist"
    env["SEAMLESS_REMOTE_CLIENTS"] = json.dumps({"buffer": [{"url": "http://127.0.0.1:9", "readonly": False}],
                                                 "database": [{"url": "http://127.0.0.1:9", "readonly": False}]})
    for name, argv in (("seamless-run", ["echo", "hi"]), ("seamless-upload", ["-y", "f.txt"])):
        (tmp_path / "f.txt").write_text("f\n")
        proc = subprocess.run([tool(name), *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1 and proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{name}: error: cannot read the token file /nonexist"), lines
        assert "SEAMLESS_TOKEN_FILE" in lines[0]
