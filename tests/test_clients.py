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
    stores = StoreSet.from_env({"SEAMLESS_REMOTE_CLIENTS": json.dumps(clients)})
    assert [type(s) for s in stores.buffer_read] == [DirectoryStore, HttpBufferStore]
    assert [type(s) for s in stores.buffer_write] == [HttpBufferStore]
    assert stores.buffer_read[0].directory == str(tmp_path) and not stores.buffer_read[0].writable
    assert [type(d) for d in stores.db_read] == [HttpResultDB] and stores.db_write == stores.db_read
    assert json.loads(stores.to_json()) == clients


def test_unset_means_none():
    assert StoreSet.from_env({}) is None


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
        StoreSet.from_env({"SEAMLESS_REMOTE_CLIENTS": text})


def test_end_to_end_through_servers(hashserver, dbserver):
    stores = StoreSet.from_clients({"buffer": [{"url": hashserver.url, "readonly": False}],
                                    "database": [{"url": dbserver.url, "readonly": False}]})
    cs = stores.put_buffer(b"result bytes")
    stores.set_transformation("ab" * 32, cs)
    assert stores.get_transformation("ab" * 32) == cs
    assert stores.get_buffer(cs) == b"result bytes"
