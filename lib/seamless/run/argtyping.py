"""Argtyping: which words of a command line are input files, directories or plain values.

The rules are upstream seamless-run's, so that the same command gets the same inputs:
  rule 1  a word with an extension (not a number) must be an existing file   (-g1: off)
  rule 2  a word without one, other than the first, must not be a file       (-g2: off)
  rule 3  a word ending in / must be an existing directory
A sidecar X.CHECKSUM (plus X.INDEX for a directory) stands for X when X is absent, also
as X/ (unlike upstream, which refuses a sidecar directory with the slash).
Pin names are paths relative to the argtyping directory (-w DIR, -W for /), or the
basename (-ms), or file1.ext, file2.ext... (-mx). Unlike upstream, a name that would
point outside the job directory (../x, an absolute path) is refused, not linked there.
"""

import os
import shutil
import time

from seamless.checksum import parse_checksum

COMPRESSION_SUFFIXES = (".gz", ".zst")
SIDECARS = (".CHECKSUM", ".INDEX")
FUTURE_POLL = 0.5
FUTURE_STALE = 120.0
FUTURE_LONG = 5.0  # seconds of waiting after which on_future is told again
on_future = None  # on_future(marker, waited): a wait begins (waited 0), and has been long (seamless-run's messages)


class ArgtypeError(ValueError):
    pass


class Input:
    """A file or directory input: where it is and what it is called in the job.

    source: absolute path as given (maybe absent, when a sidecar stands for it);
    kind: "file" or "directory"; name: the pin name, its path inside the job;
    checksum: from a sidecar, or computed later; index: a directory's {relpath:
    checksum}; words: the command words that refer to it; files: a directory's
    {index key: file on disk}.
    """

    def __init__(self, source, kind, checksum=None, index=None, executable=False):
        self.source, self.kind = source, kind
        self.name = ""
        self.checksum, self.index, self.executable = checksum, index, executable
        self.words = []
        self.files = {}
        self.optional = False  # found outside the primary pipeline: a value if it cannot be an input


def strip_compression(path: str) -> str:
    for suffix in COMPRESSION_SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def _suffix(word: str) -> str:
    name = os.path.basename(word)
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1:
        return ""
    return name[dot:]


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def wait_for_future(path: str):
    """A .FUTURE marker means another seamless-run is still producing `path`."""
    future = path + ".FUTURE"
    started = told = None
    while os.path.exists(future):
        try:
            age = time.time() - os.stat(future).st_mtime
        except FileNotFoundError:
            break
        if age > FUTURE_STALE:
            raise ArgtypeError(f"'{future}' was not refreshed for {age:.0f} s: its seamless-run "
                               "is gone; delete the file and run again")
        if on_future is not None:
            if started is None:
                started = time.monotonic()
                on_future(future, 0.0)
            elif told is None and time.monotonic() - started >= FUTURE_LONG:
                told = time.monotonic() - started
                on_future(future, told)
        time.sleep(FUTURE_POLL)


def read_sidecar(path: str):
    """(kind, checksum, index) from PATH.CHECKSUM [+ PATH.INDEX], or None.

    The sidecar of x.gz is x.gz.CHECKSUM, the checksum of its exact bytes (upstream
    reads x.CHECKSUM, of the uncompressed bytes, for x.gz: see inputs.py for why not)."""
    base = path
    checksum_file = base + ".CHECKSUM"
    if not os.path.isfile(checksum_file):
        return None
    with open(checksum_file) as f:
        text = f.read().strip()
    try:
        checksum = parse_checksum(text)
    except ValueError:
        raise ArgtypeError(f"'{checksum_file}' does not contain a valid checksum") from None
    index_file = base + ".INDEX"
    if os.path.isfile(index_file):
        import json

        with open(index_file, "rb") as f:
            try:
                index = json.load(f)
            except ValueError:
                raise ArgtypeError(f"'{index_file}' is not a JSON directory index") from None
        if not isinstance(index, dict):
            raise ArgtypeError(f"'{index_file}' is not a JSON directory index")
        return "directory", checksum, index
    return "file", checksum, None


def classify(word: str, argno: int, rule1=True, rule2=True, expansion=False, rule3=True):
    """Return None for a value, else an Input (name not yet mapped)."""
    if not word:  # "" (grep -c "" f) names no file, not the current directory
        return None
    if word.endswith(SIDECARS):
        path = os.path.abspath(os.path.expanduser(word))
        return Input(path, "file") if os.path.isfile(path) else None
    raw = word
    word = os.path.expanduser(word)
    path = os.path.abspath(word)
    wait_for_future(path)
    sidecar = read_sidecar(path)
    exists_file = os.path.isfile(path)
    exists_dir = os.path.isdir(path)
    how = f"argument #{argno} {raw!r}"
    if raw.endswith("/"):  # rule 3: a directory, or a directory's sidecars
        problem = "is not a directory" if os.path.exists(path) or sidecar else "does not exist"
        if sidecar and sidecar[0] != "directory":
            sidecar = None
        if not exists_dir and sidecar is None:
            if not rule3:
                return None
            raise ArgtypeError(f"{how} ends with a slash, so it must be a directory, and it {problem}")
    if sidecar is not None:
        kind, checksum, index = sidecar
        return Input(path, kind, checksum=checksum, index=index)
    suffix = _suffix(word)
    if suffix and not _is_number(raw):
        if rule1 and not exists_file:
            if exists_dir:
                problem = "it is a directory"
            elif expansion:
                problem = ("it contains a pattern or expansion that seamless-run does not resolve; "
                           "name the files, or give them with -i and -g1")
            else:
                problem = "it does not exist"
            raise ArgtypeError(f"{how} has an extension, so it must be an existing file, but {problem} "
                               "(-g1 turns this rule off)")
    elif rule2 and argno > 1 and exists_file and not _is_number(raw):
        raise ArgtypeError(f"{how} has no extension, so it must not be an existing file unless it is "
                           "the first argument (-g2 turns this rule off)")
    if exists_dir:
        return Input(path, "directory")
    if exists_file:
        return Input(path, "file")
    return None


def find_executable(word: str):
    """The command word as an input file: a script given by path or found only in the
    current directory. Programs found on PATH are not inputs."""
    if "/" in word:
        path = os.path.abspath(os.path.expanduser(word))
        return path if os.path.isfile(path) else None
    if shutil.which(word) is None and os.path.isfile(word):
        return os.path.abspath(word)
    return None


# --- pin names -------------------------------------------------------------------------


def map_names(inputs, mode: str, workdir: str):
    """Give each input its pin name, according to the file mapping mode. An optional input
    that is outside workdir or whose name is taken gets the name None."""
    counter = 0
    seen = {}
    for item in inputs:
        if item.optional and not _inside(item.source, workdir):
            item.name = None
            continue
        if mode == "literal" or (mode == "extension" and item.kind == "directory"):
            name = _relative(item.source, workdir)
        elif mode == "strip":
            name = os.path.basename(item.source.rstrip("/"))
        else:  # extension
            previous = next((i.name for i in inputs if i.name and i.source == item.source), None)
            if previous:
                item.name = previous
                continue
            counter += 1
            base = os.path.basename(item.source)
            suffixes = ""
            stem = strip_compression(base)
            suffixes = _suffix(stem) + base[len(stem):]
            name = f"file{counter}{suffixes}"
        other = seen.get(name)
        if other is not None and other != item.source and item.optional:
            item.name = None
            continue
        if other is not None and other != item.source:
            raise ArgtypeError(f"two inputs would both be called {name!r} in the job: {other} and "
                               f"{item.source} (choose another file mapping: -mx, or literal with -w)")
        seen[name] = item.source
        item.name = name


def _inside(path: str, workdir: str) -> bool:
    rel = os.path.relpath(path, workdir)
    return not (rel == "." or rel == ".." or rel.startswith("../") or os.path.isabs(rel))


def _relative(path: str, workdir: str) -> str:
    rel = os.path.relpath(path, workdir)
    if rel == ".":  # `ls .`: in the job, "." would be the job directory, not this one
        raise ArgtypeError(f"{path!r} is the directory that paths are taken relative to, which cannot be an "
                           "input as a whole: name its files or subdirectories, or choose its parent with -w")
    if not _inside(path, workdir):
        raise ArgtypeError(f"{path!r} is not under the directory that paths are taken relative to "
                           f"({workdir}); choose that directory with -w DIR or -W, or use -ms / -mx")
    return rel
