"""seamless-upload and seamless-download against local and remote stores."""

import gzip
import hashlib
import json
import os
import subprocess

from conftest import tool


def env_for(tmp_path, hashserver=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    if hashserver is None:
        e["SEAMLESS_CACHE"] = str(tmp_path / "cache")
    else:
        e["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
        e["SEAMLESS_REMOTE_CLIENTS"] = json.dumps({"buffer": [{"url": hashserver.url, "readonly": False}]})
    return e


def call(name, *args, cwd, env):
    return subprocess.run([tool(name), *args], cwd=cwd, env=env, capture_output=True, timeout=60)


def test_compressed_file_gets_a_sidecar_of_its_exact_bytes(tmp_path):
    gz = gzip.compress(b"zipped\n")
    (tmp_path / "x.txt.gz").write_bytes(gz)
    proc = call("seamless-upload", "x.txt.gz", cwd=tmp_path, env=env_for(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.txt.gz.CHECKSUM").read_text() == hashlib.sha256(gz).hexdigest() + "\n"
    assert not (tmp_path / "x.txt.CHECKSUM").exists()  # x.txt is another file, which may be there too
    out = call("seamless-download", "--stdout", "x.txt.gz", cwd=tmp_path, env=env_for(tmp_path))
    assert out.stdout == gz


def test_an_uncompressed_sidecar_of_a_compressed_name_downloads_compressed(tmp_path):
    """Upstream's seamless-upload writes x.CHECKSUM (of the uncompressed bytes) for x.gz."""
    e = env_for(tmp_path)
    (tmp_path / "x.txt").write_bytes(b"zipped\n")
    assert call("seamless-upload", "--move", "x.txt", cwd=tmp_path, env=e).returncode == 0
    proc = call("seamless-download", "x.txt.gz", cwd=tmp_path, env=e)
    assert proc.returncode == 0, proc.stderr
    assert gzip.decompress((tmp_path / "x.txt.gz").read_bytes()) == b"zipped\n"
    assert not (tmp_path / "x.txt.gz.CHECKSUM").exists()  # its checksum is not of these bytes


def test_remote_upload_and_download(tmp_path, hashserver):
    e = env_for(tmp_path, hashserver)
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("a\n")
    (tmp_path / "d" / "s" / "b.txt").write_text("b\n")
    assert call("seamless-upload", "d", cwd=tmp_path, env=e).returncode == 0
    from seamless.store.httpstore import HttpBufferStore

    assert HttpBufferStore(hashserver.url).has(hashlib.sha256(b"b\n").hexdigest())
    proc = call("seamless-download", "d", "-o", "copy", cwd=tmp_path, env=e)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "copy" / "s" / "b.txt").read_text() == "b\n"


def test_upload_confirmation_thresholds(tmp_path, hashserver):
    e = {**env_for(tmp_path, hashserver), "SEAMLESS_MAX_UPLOAD_FILES": "1"}
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
    refused = call("seamless-upload", "-n", "a.txt", "b.txt", cwd=tmp_path, env=e)
    assert refused.returncode == 1 and b"not confirmed" in refused.stderr
    assert not (tmp_path / "a.txt.CHECKSUM").exists()
    assert call("seamless-upload", "-y", "a.txt", "b.txt", cwd=tmp_path, env=e).returncode == 0


def test_destination_writes_a_buffer_directory(tmp_path):
    (tmp_path / "f.txt").write_text("direct\n")
    dest = tmp_path / "bufs"
    proc = call("seamless-upload", "--destination", str(dest), "f.txt", cwd=tmp_path, env=env_for(tmp_path))
    assert proc.returncode == 0
    cs = hashlib.sha256(b"direct\n").hexdigest()
    assert (dest / cs[:2] / cs).read_text() == "direct\n"
    assert not (tmp_path / "cache").exists()


def test_download_compressed_name_and_trailing_slash(tmp_path):
    e = env_for(tmp_path)
    (tmp_path / "x.txt.gz").write_bytes(gzip.compress(b"zipped\n"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("f\n")
    assert call("seamless-upload", "x.txt.gz", "d", cwd=tmp_path, env=e).returncode == 0
    (tmp_path / "x.txt.gz").unlink()
    import shutil

    shutil.rmtree(tmp_path / "d")
    proc = call("seamless-download", "x.txt.gz", "d/", cwd=tmp_path, env=e)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.txt.gz").read_bytes() == gzip.compress(b"zipped\n", mtime=0) or \
        gzip.decompress((tmp_path / "x.txt.gz").read_bytes()) == b"zipped\n"
    assert (tmp_path / "d" / "f").read_text() == "f\n"


def test_download_destination_is_read_only(tmp_path):
    proc = call("seamless-download", "--destination", str(tmp_path / "nowhere"), "0" * 64, cwd=tmp_path,
                env=env_for(tmp_path))
    assert proc.returncode == 1 and not (tmp_path / "nowhere").exists()
