"""A buffer directory in upstream hashserver's on-disk layout.

prefix layout: <dir>/<cs[:2]>/<cs>, marked by <dir>/.HASHSERVER_PREFIX containing "1\\n".
flat layout:   <dir>/<cs>.
Compressed forms sit beside the plain one (<cs>.gz, <cs>.zst) with <cs>.BUFFERLENGTH
holding the uncompressed size. Reads look at both layouts and every form; writes go to
the store's layout. A write streams into <target dir>/<cs>-<random> while hashing,
is chmod 0444 and renamed into place only when the hash matches, so no reader ever
sees a partial or wrong buffer, and concurrent writers of one checksum are harmless.
A write is skipped only when a copy already stored is verified (has_verified); a
corrupt one is replaced, so a write that returns leaves a verified copy in place.
"""

import errno
import os
import threading
import time

from seamless.checksum import CHUNK, calculate_checksum, checksum_stream, parse_checksum
from seamless.files import atomic_write
from seamless.store.compression import SUFFIXES, decode_errors, digest_stream, open_decoded
from seamless.store import ChecksumMismatch, CorruptBuffer, NoSpace, ReadOnlyStore, StoreError, WriteFailed

PREFIX_SENTINEL = ".HASHSERVER_PREFIX"
LENGTH_SUFFIX = ".BUFFERLENGTH"
KEEP_SUFFIX = ".KEEP"  # an empty mark: a buffer the user stored, which gc leaves alone
DIR_MODE = 0o3775
FILE_MODE = 0o444
# a temp file untouched this long belongs to a killed writer (live ones write continuously)
STALE_TEMP_SECONDS = 900
_TEMP_NAME = r"^([0-9a-f]{64}|incoming)-\d+-\d+-\d+$"
# verification stamps kept before the cache is reset (about 200 bytes each)
MAX_STAMPS = 1_000_000


class DirectoryStore:
    def __init__(self, directory, *, writable=False, layout=None, create=False):
        self.directory = os.path.abspath(os.fspath(directory))
        self.writable = writable
        if create and not os.path.isdir(self.directory):
            os.makedirs(self.directory, exist_ok=True)
        if not os.path.isdir(self.directory):
            raise StoreError(f"buffer directory {self.directory} does not exist")
        sentinel = os.path.join(self.directory, PREFIX_SENTINEL)
        if layout is None:
            # like upstream's direct writers: the sentinel decides; a new dir gets prefix
            if os.path.exists(sentinel) or not _has_flat_buffers(self.directory):
                layout = "prefix"
            else:
                layout = "flat"
        if layout not in ("prefix", "flat"):
            raise StoreError(f"unknown layout {layout!r} (use prefix or flat)")
        self.layout = layout
        if writable and layout == "prefix":
            try:
                self._mark_prefix()
            except OSError as exc:
                raise StoreError(f"cannot write to buffer directory {self.directory}: {exc.strerror}") from None
        self._stamps = {}
        self._stamps_lock = threading.Lock()
        self._counter = 0  # temp file names: <cs>-<pid>-<thread>-<n>

    def __repr__(self):
        return f"DirectoryStore({self.directory!r}, layout={self.layout!r}, writable={self.writable})"

    # --- locating ---------------------------------------------------------------------

    def target_dir(self, cs: str) -> str:
        if self.layout == "prefix":
            return os.path.join(self.directory, cs[:2])
        return self.directory

    def _bases(self, cs):
        prefix = os.path.join(self.directory, cs[:2], cs)
        flat = os.path.join(self.directory, cs)
        return (prefix, flat) if self.layout == "prefix" else (flat, prefix)

    def plain_places(self, cs: str):
        """Where the uncompressed file of cs would be, preferred first (nothing is touched)."""
        return self._bases(parse_checksum(cs))

    def stored(self, cs: str) -> bool:
        """Is any form of cs here? Without touching it (gc must not count its own looks as use)."""
        return any(os.path.isfile(base + suffix) for base in self._bases(cs) for suffix in SUFFIXES.values())

    def find(self, cs: str, encodings=(None, "zstd", "gzip")):
        """(path, encoding) of the first stored form, in the preferred encoding order.

        In a store this process may write, finding a buffer is using it: its mtime is set
        to now (the access time that gc's least-recently-used order goes by; the atime
        is unreliable under relatime/noatime). The touch is also the existence check, so
        it costs nothing extra, and a buffer that gc moved away is simply not found.
        """
        bases = self._bases(cs)
        for encoding in encodings:
            suffix = SUFFIXES[encoding]
            for base in bases:
                path = base + suffix
                if self._touch(cs, path) if self.writable else os.path.exists(path):
                    return path, encoding
        return None

    def _touch(self, cs, path) -> bool:
        """Set path's mtime to now; False if it does not exist. A verification stamp of the
        file survives the touch only if the file was unchanged just before it."""
        known = self._stamps.get(cs)
        if known is not None and known[0][0] == path:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return False
            if _stamp(path, st) != known[0]:
                known = None  # changed since it was verified: the stamp must not vouch for it
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        except OSError:  # not ours to touch (a shared cache): it is there all the same
            return os.path.exists(path)
        if known is not None:
            try:
                self._remember(cs, _stamp(path, os.stat(path)), known[1])
            except FileNotFoundError:
                return False
        return True

    def plain_path(self, cs: str):
        """Path of the uncompressed file, if there is one (for linking into job dirs)."""
        found = self.find(cs, (None,))
        return found[0] if found else None

    def has(self, cs: str) -> bool:
        return self.find(parse_checksum(cs)) is not None

    def has_many(self, checksums) -> list:
        return [self.has(cs) for cs in checksums]

    def length(self, cs: str):
        """Uncompressed length, or None when absent."""
        cs = parse_checksum(cs)
        found = self.find(cs)
        if found is None:
            return None
        path, encoding = found
        if encoding is None:
            return os.stat(path).st_size
        base = path[: -len(SUFFIXES[encoding])]
        try:
            with open(base + LENGTH_SUFFIX) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            pass
        total = 0
        with open_decoded(path, encoding) as f:
            while chunk := f.read(CHUNK):
                total += len(chunk)
        return total

    # --- reading ----------------------------------------------------------------------

    def get(self, cs: str, verify: bool = True):
        """The buffer's bytes, or None when absent. Raises CorruptBuffer on a bad file."""
        cs = parse_checksum(cs)
        found = self.find(cs)
        if found is None:
            return None
        path, encoding = found
        try:
            with open_decoded(path, encoding) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise CorruptBuffer(_not_a_buffer(path), path) from None
        except decode_errors() as exc:
            raise CorruptBuffer(f"{path}: cannot decompress: {exc}", path) from None
        if verify and calculate_checksum(data) != cs:
            raise CorruptBuffer(f"{path} does not have the correct sha-256 checksum", path)
        return data

    def verified(self, cs: str, encodings=(None, "gzip", "zstd")):
        """(path, encoding, stat, length) of a stored form known to hash to cs.

        `length` is the uncompressed size. A file is hashed the first time it is asked
        for; afterwards a stamp of its inode, size, mtime and ctime vouches for it, so a
        large buffer is not re-hashed on every read but any rewrite, truncation or
        replacement is noticed. Returns None when absent; raises CorruptBuffer when the
        content is wrong or does not decompress, OSError when it cannot be read.
        """
        found = self.find(cs, encodings)
        if found is None:
            return None
        path, encoding = found
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        stamp = _stamp(path, st)
        known = self._stamps.get(cs)
        if known is not None and known[0] == stamp:
            return path, encoding, st, known[1]
        try:
            with open_decoded(path, encoding) as f:
                actual, length = checksum_stream(f)
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise CorruptBuffer(_not_a_buffer(path), path) from None
        except decode_errors() as exc:
            raise CorruptBuffer(f"{path}: cannot decompress: {exc}", path) from None
        if actual != cs:
            raise CorruptBuffer(f"{path} does not have the correct sha-256 checksum", path)
        self._remember(cs, stamp, length)
        return path, encoding, st, length

    def has_verified(self, cs: str, encodings=(None, "gzip", "zstd")) -> bool:
        """True if a stored form of cs (among `encodings`) hashes to cs (see verified).

        A corrupt form is removed when the store is writable, so that a write repairs it,
        and the next form is looked at; one that cannot be read is not verified.
        """
        cs = parse_checksum(cs)
        for encoding in encodings:
            while True:
                try:
                    if self.verified(cs, (encoding,)) is not None:
                        return True
                except CorruptBuffer as exc:
                    if self.writable and exc.path and self.remove(exc.path):
                        continue  # the same form may sit in the other layout too
                except OSError:
                    pass  # unreadable: not verified
                break
        return False

    def _remember(self, cs, stamp, length):
        with self._stamps_lock:
            if len(self._stamps) >= MAX_STAMPS:
                self._stamps.clear()
            self._stamps[cs] = (stamp, length)

    def forget(self, cs):
        with self._stamps_lock:
            self._stamps.pop(cs, None)

    # --- writing ----------------------------------------------------------------------

    def _check_writable(self):
        if not self.writable:
            raise ReadOnlyStore(f"buffer directory {self.directory} is read-only")

    def put(self, data, checksum=None) -> str:
        """Store a buffer; returns its checksum once a verified copy is in place.
        Raises ChecksumMismatch if `checksum` is wrong."""
        self._check_writable()
        cs = calculate_checksum(data)
        if checksum is not None and parse_checksum(checksum) != cs:
            raise ChecksumMismatch(f"buffer hashes to {cs}, not {checksum}")
        if not self.has_verified(cs, (None,)):
            self._ingest(cs, None, lambda f: (_write_all(f, data), (cs, len(data)))[1])
        return cs

    def put_stream(self, stream, checksum=None, encoding=None, length=None):
        """Store a buffer read from a stream (possibly gzip/zstd-encoded), in constant memory.

        `length` limits how many bytes are read (an HTTP body). With `checksum` None the
        checksum is computed on the way. Returns (checksum, stored_path, uncompressed
        length). Nothing becomes visible unless the uncompressed bytes hash correctly;
        then they replace whatever was stored under that name (the caller has checked,
        with has_verified, whether a good copy made the write unnecessary).
        """
        self._check_writable()
        cs = None if checksum is None else parse_checksum(checksum)
        return self._ingest(cs, encoding, lambda f: digest_stream(stream, encoding, length, lambda c: _write_all(f, c)))

    def put_file(self, path, checksum=None) -> str:
        """Copy a file into the store in constant memory; returns its checksum once a
        verified copy is in place (with `checksum` given, a verified one there already
        saves the copy)."""
        self._check_writable()
        if checksum is not None and self.has_verified(checksum, (None,)):
            return parse_checksum(checksum)
        with open(path, "rb") as src:
            return self.put_stream(src, checksum)[0]

    def _in_dir(self, directory, op):
        """op() on a path in `directory`, creating that prefix directory if it is missing:
        on first use, or because someone removed it since (so no list of made ones is kept)."""
        try:
            return op()
        except FileNotFoundError:
            if directory == self.directory:
                raise
            _makedir(directory)
            if self.layout == "prefix":  # the directory may be new as a whole (recreated)
                try:
                    self._mark_prefix()
                except OSError:
                    pass  # the write itself will say what is wrong
            return op()

    def _mark_prefix(self):
        """Write the prefix sentinel if it is missing: readers (upstream's too) go by it."""
        sentinel = os.path.join(self.directory, PREFIX_SENTINEL)
        if not os.path.exists(sentinel):
            with open(sentinel, "w") as f:
                f.write("1\n")

    def _ingest(self, expected, encoding, fill):
        """Create <target>/<cs><suffix> atomically from fill(file) -> (cs, length).

        Returns (cs, final path, length). The temp file lives in the target directory
        when the checksum is known, else in the store root (same filesystem either way).
        It is made read-only before the rename, so the buffer appears complete and 0444.
        """
        tmpdir = self.directory if expected is None else self.target_dir(expected)
        self._counter += 1
        tmp = os.path.join(tmpdir, f"{expected or 'incoming'}-{os.getpid()}-{threading.get_ident()}-{self._counter}")
        try:
            f = self._in_dir(tmpdir, lambda: open(tmp, "xb", buffering=0))
        except OSError as exc:
            raise _write_error(self.directory, exc) from None
        renamed = False
        try:
            with f:
                cs, length = fill(f)
                if expected is not None and cs != expected:
                    raise ChecksumMismatch("Incorrect checksum")
                final = os.path.join(self.target_dir(cs), cs + SUFFIXES[encoding])
                os.fchmod(f.fileno(), FILE_MODE)
                # verified bytes: they replace whatever is there (possibly a corrupt file)
                self._in_dir(os.path.dirname(final), lambda: os.replace(tmp, final))
                renamed = True
                st = os.fstat(f.fileno())  # written and hashed by us: vouch for it
                self._remember(cs, _stamp(final, st), length)
        except OSError as exc:
            raise _write_error(self.directory, exc) from None
        finally:
            if not renamed:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
        base = final[: len(final) - len(SUFFIXES[encoding])]
        try:
            if encoding is None:
                if os.path.exists(base + LENGTH_SUFFIX):
                    os.unlink(base + LENGTH_SUFFIX)
            elif not os.path.exists(base):
                atomic_write(base + LENGTH_SUFFIX, str(length), mode=FILE_MODE)
        except OSError:
            pass  # the buffer is stored; a sidecar only saves decompressing it to learn its length
        return cs, final, length

    def mark_kept(self, cs):
        """Leave <cs>.KEEP beside the buffer: seamless-cache gc does not evict it."""
        self._check_writable()
        cs = parse_checksum(cs)
        path = os.path.join(self.target_dir(cs), cs + KEEP_SUFFIX)
        try:
            fd = self._in_dir(os.path.dirname(path), lambda: os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:
            return
        except OSError as exc:
            raise _write_error(self.directory, exc) from None
        os.close(fd)

    def sweep_temp(self, max_age=STALE_TEMP_SECONDS) -> int:
        """Delete temp files left by killed writers (untouched for max_age seconds)."""
        import re

        temp_name = re.compile(_TEMP_NAME)
        now = time.time()
        removed = 0
        dirs = [self.directory]
        with os.scandir(self.directory) as it:
            dirs += [e.path for e in it if len(e.name) == 2 and e.is_dir(follow_symlinks=False)]
        for d in dirs:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for entry in entries:
                name = entry.name
                if not temp_name.match(name):
                    continue
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime > max_age:
                        os.unlink(entry.path)
                        removed += 1
                except OSError:
                    pass
        return removed

    def remove(self, path) -> bool:
        """Remove a stored file (a corrupt one), if this store may write; False if it
        cannot be removed."""
        self._check_writable()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True


def _stamp(path, st):
    """What vouches for a verified file: any rewrite, truncation or replacement changes it."""
    return (path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _write_all(f, data):
    view = memoryview(data)
    while view:
        view = view[f.write(view):]


def _makedir(path):
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    except OSError as exc:
        raise _write_error(os.path.dirname(path), exc) from None
    try:
        os.chmod(path, DIR_MODE)
    except OSError:
        pass


def _not_a_buffer(path):
    return f"{path} is a directory where a buffer belongs: remove it"


def _write_error(directory, exc):
    if not isinstance(exc, OSError) or exc.errno is None:
        return exc
    if exc.errno == errno.EISDIR and exc.filename2:
        return WriteFailed(f"{_not_a_buffer(exc.filename2)}; nothing was stored")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"no space left to store the buffer in {directory}; nothing was stored")
    if exc.errno == errno.ENOENT and not os.path.isdir(directory):
        return WriteFailed(f"buffer directory {directory} does not exist any more (removed while in use?): "
                           f"create it again (mkdir -p {directory}); nothing was stored")
    return WriteFailed(f"cannot write to buffer directory {directory}: {exc.strerror}; nothing was stored")


def _has_flat_buffers(directory) -> bool:
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if len(entry.name) >= 64 and entry.is_file():
                    try:
                        parse_checksum(entry.name[:64])
                        return True
                    except ValueError:
                        pass
    except OSError:
        pass
    return False
