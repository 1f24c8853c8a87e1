"""The buffer directory: upstream layouts, atomic verified writes, compressed forms."""

import gzip
import hashlib
import io
import multiprocessing
import os
import stat
import sys
import threading

import pytest

from seamless.store import ChecksumMismatch, CorruptBuffer, ReadOnlyStore, StoreError
from seamless.store.directory import DirectoryStore


def cs_of(data):
    return hashlib.sha256(data).hexdigest()


def test_prefix_layout_on_disk(tmp_path):
    store = DirectoryStore(tmp_path, writable=True)
    cs = store.put(b"hello")
    path = tmp_path / cs[:2] / cs
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert (tmp_path / ".HASHSERVER_PREFIX").read_text() == "1\n"
    # no temp files left behind
    assert os.listdir(tmp_path / cs[:2]) == [cs]


def test_flat_layout_and_reading_both(tmp_path):
    flat = DirectoryStore(tmp_path, writable=True, layout="flat")
    cs = flat.put(b"flat")
    assert (tmp_path / cs).read_bytes() == b"flat"
    # a reader with the other layout still finds it
    assert DirectoryStore(tmp_path, layout="prefix").get(cs) == b"flat"


def test_existing_flat_directory_is_detected(tmp_path):
    data = b"x" * 10
    (tmp_path / cs_of(data)).write_bytes(data)
    store = DirectoryStore(tmp_path, writable=True)
    assert store.layout == "flat"
    assert store.get(cs_of(data)) == data


def test_gz_sibling_and_length(tmp_path):
    data = b"compressible " * 1000
    cs = cs_of(data)
    (tmp_path / cs[:2]).mkdir()
    (tmp_path / ".HASHSERVER_PREFIX").write_text("1\n")
    (tmp_path / cs[:2] / (cs + ".gz")).write_bytes(gzip.compress(data))
    store = DirectoryStore(tmp_path)
    assert store.has(cs)
    assert store.get(cs) == data
    assert store.length(cs) == len(data)


def test_zst_roundtrip(tmp_path):
    from seamless.store.compression import zstd_module

    zstd = zstd_module()
    store = DirectoryStore(tmp_path, writable=True)
    data = b"zstandard " * 5000
    cs, path, length = store.put_stream(io.BytesIO(zstd.compress(data)), cs_of(data), "zstd")
    assert path.endswith(".zst") and length == len(data)
    assert store.get(cs) == data and store.length(cs) == len(data)


def test_zst_without_codec_is_a_clear_error(tmp_path, monkeypatch):
    for name in ("compression", "compression.zstd", "backports", "backports.zstd"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    cs = cs_of(b"z")
    (tmp_path / (cs + ".zst")).write_bytes(b"\x28\xb5\x2f\xfd junk")
    with pytest.raises(StoreError, match="zstd"):
        DirectoryStore(tmp_path).get(cs)


def test_concatenated_gzip_is_refused(tmp_path):
    """Every stored byte is hashed: a second gzip member would be served unverified."""
    store = DirectoryStore(tmp_path, writable=True)
    data = b"first member"
    payload = gzip.compress(data) + gzip.compress(b"EVIL EXTRA MEMBER")
    with pytest.raises(StoreError, match="after the end"):
        store.put_stream(io.BytesIO(payload), cs_of(data), "gzip")
    assert not store.has(cs_of(data))


def test_decompression_is_bounded(tmp_path):
    """A small gzip bomb is decoded piece by piece, never whole in memory."""
    from seamless.store.compression import Decoder

    bomb = gzip.compress(bytes(200 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20
    pieces = Decoder("gzip").feed(bomb)
    assert max(len(p) for p in pieces) <= 1 << 20


def test_io_errors_are_not_corruption(tmp_path, monkeypatch):
    """Running out of file descriptors must not make a good buffer look corrupt."""
    import errno

    from seamless.store import directory

    store = DirectoryStore(tmp_path, writable=True)
    cs = store.put(b"good")
    store.forget(cs)

    def fail(path, encoding):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(directory, "open_decoded", fail)
    with pytest.raises(OSError) as info:
        store.verified(cs)
    assert not isinstance(info.value, CorruptBuffer)


def test_wrong_checksum_stores_nothing(tmp_path):
    store = DirectoryStore(tmp_path, writable=True)
    with pytest.raises(ChecksumMismatch):
        store.put(b"data", "00" * 32)
    with pytest.raises(ChecksumMismatch):
        store.put_stream(io.BytesIO(b"data"), "00" * 32)
    files = [f for _, _, fs in os.walk(tmp_path) for f in fs if f != ".HASHSERVER_PREFIX"]
    assert files == []


def test_put_stream_without_checksum(tmp_path):
    store = DirectoryStore(tmp_path, writable=True)
    data = os.urandom(3 << 20)
    cs, path, length = store.put_stream(io.BytesIO(data))
    assert cs == cs_of(data) and length == len(data)
    assert store.get(cs) == data


def test_gzip_stream_is_stored_compressed_with_length_sidecar(tmp_path):
    store = DirectoryStore(tmp_path, writable=True)
    data = b"abc" * 10000
    cs, path, length = store.put_stream(io.BytesIO(gzip.compress(data)), cs_of(data), "gzip")
    assert path.endswith(".gz") and length == len(data)
    assert (tmp_path / cs[:2] / (cs + ".BUFFERLENGTH")).read_text() == str(len(data))
    assert store.get(cs) == data
    # a plain upload afterwards removes the sidecar
    store.put(data)
    assert not (tmp_path / cs[:2] / (cs + ".BUFFERLENGTH")).exists()


def test_truncated_gzip_is_refused(tmp_path):
    store = DirectoryStore(tmp_path, writable=True)
    data = os.urandom(100000)
    payload = gzip.compress(data)[:-20]
    with pytest.raises(StoreError):
        store.put_stream(io.BytesIO(payload), cs_of(data), "gzip")
    assert not store.has(cs_of(data))


def test_readonly_store_refuses_writes(tmp_path):
    with pytest.raises(ReadOnlyStore):
        DirectoryStore(tmp_path).put(b"x")


def test_corruption_is_detected_and_stamp_avoids_rehash(tmp_path):
    store = DirectoryStore(tmp_path, writable=True)
    cs = store.put(b"original")
    path, encoding, _, length = store.verified(cs)
    assert length == len(b"original")
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"tampered")  # same size; mtime/ctime change
    with pytest.raises(CorruptBuffer):
        store.verified(cs)
    with pytest.raises(CorruptBuffer):
        store.get(cs)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        DirectoryStore(tmp_path / "nope")


def _put_many(directory, data, n):
    store = DirectoryStore(directory, writable=True)
    for _ in range(n):
        store.put(data)


def test_concurrent_writers_same_checksum(tmp_path):
    data = os.urandom(1 << 20)
    DirectoryStore(tmp_path, writable=True)
    threads = [threading.Thread(target=_put_many, args=(tmp_path, data, 20)) for _ in range(4)]
    procs = [multiprocessing.Process(target=_put_many, args=(tmp_path, data, 20)) for _ in range(4)]
    for t in threads + procs:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    cs = cs_of(data)
    assert os.listdir(tmp_path / cs[:2]) == [cs]
    assert (tmp_path / cs[:2] / cs).read_bytes() == data


def test_interrupted_upload_leaves_nothing(tmp_path):
    store = DirectoryStore(tmp_path, writable=True)

    class Broken(io.RawIOBase):
        def readinto(self, b):
            raise ConnectionResetError(104, "Connection reset by peer")

    with pytest.raises(StoreError, match="interrupted"):
        store.put_stream(Broken(), "11" * 32)
    assert [f for _, _, fs in os.walk(tmp_path) for f in fs] == [".HASHSERVER_PREFIX"]


def test_full_disk_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from seamless.store import NoSpace
    from seamless.store import directory

    def full(f, data):
        f.write(bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(directory, "_write_all", full)
    store = DirectoryStore(tmp_path, writable=True)
    with pytest.raises(NoSpace, match="no space left"):
        store.put(b"some data")
    with pytest.raises(NoSpace):
        store.put_stream(io.BytesIO(b"more data"))
    assert [f for _, _, fs in os.walk(tmp_path) for f in fs] == [".HASHSERVER_PREFIX"]


def _corrupt_in_place(path, data):
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(data)  # silent corruption, same size


@pytest.mark.parametrize("how", ["put", "put_stream", "put_stream_no_checksum", "put_file", "put_file_no_checksum"])
def test_writing_good_bytes_replaces_a_corrupt_file(tmp_path, how):
    """Issue 10: a write of verified bytes over a corrupt stored file must replace it
    (whether the file was corrupt before this process saw it, or after it was verified)."""
    store = DirectoryStore(tmp_path / "buffers", writable=True, create=True)
    data = b"the right bytes " * 1000
    cs = cs_of(data)
    source = tmp_path / "source"
    source.write_bytes(data)
    write = {
        "put": lambda: store.put(data, cs),
        "put_stream": lambda: store.put_stream(io.BytesIO(data), cs),
        "put_stream_no_checksum": lambda: store.put_stream(io.BytesIO(data)),
        "put_file": lambda: store.put_file(source, cs),
        "put_file_no_checksum": lambda: store.put_file(source),
    }[how]
    path = tmp_path / "buffers" / cs[:2] / cs
    path.parent.mkdir()
    path.write_bytes(b"X" * len(data))  # corrupt before the store ever looked at it
    write()
    assert path.read_bytes() == data
    assert store.has_verified(cs)
    _corrupt_in_place(path, b"Y")  # corrupt after it was verified (and stamped)
    write()
    assert path.read_bytes() == data
    assert store.has_verified(cs)
    assert sorted(os.listdir(path.parent)) == [cs]  # no temp file left behind


def test_has_verified(tmp_path):
    store = DirectoryStore(tmp_path, writable=True)
    data = b"verify me"
    cs = cs_of(data)
    assert not store.has_verified(cs)
    store.put(data)
    assert store.has_verified(cs)
    path = tmp_path / cs[:2] / cs
    _corrupt_in_place(path, b"V")
    assert not store.has_verified(cs)
    assert not path.exists()  # a writable store removes the corrupt file, so a write can repair it
    # a read-only store says False and leaves the file alone
    path.write_bytes(b"bad")
    assert not DirectoryStore(tmp_path).has_verified(cs)
    assert path.exists()
    # a good compressed form next to a corrupt plain one counts
    path.unlink()
    store.put_stream(io.BytesIO(gzip.compress(data)), cs, "gzip")
    path.write_bytes(b"bad")
    assert store.has_verified(cs)


def _same_prefix(cs, n=1):
    """n buffers whose checksums start with the same two digits as cs."""
    found = []
    i = 0
    while len(found) < n:
        data = b"prefix mate %d" % i
        if cs_of(data)[:2] == cs[:2]:
            found.append(data)
        i += 1
    return found


@pytest.mark.parametrize("how", ["put", "put_stream_no_checksum"])
def test_removed_prefix_directory_is_recreated(tmp_path, how):
    """Issue 10: `rm -rf DIR/ab` while a store is open: later writes to ab/ must work."""
    import shutil

    store = DirectoryStore(tmp_path, writable=True)
    cs = store.put(b"first")
    shutil.rmtree(tmp_path / cs[:2])
    (data,) = _same_prefix(cs)
    if how == "put":
        cs2 = store.put(data)
    else:
        cs2 = store.put_stream(io.BytesIO(data))[0]
    assert (tmp_path / cs2[:2] / cs2).read_bytes() == data
    assert store.get(cs2) == data
