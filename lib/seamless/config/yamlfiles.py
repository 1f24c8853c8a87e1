"""Reading YAML config files fast: parsed once, then reused while unchanged.

Importing and running PyYAML costs more than a whole cached seamless-run, so each
file's parsed content is kept as JSON in the cache directory, keyed by the file's
path, size, mtime and inode; PyYAML is imported only when a file is new or changed.
Every run reads the whole cache file, so it is bounded: an entry too big is not kept,
the oldest entries make room for new ones, and a file that is too big or not what we
wrote is ignored and rewritten.
"""

import json
import os

from seamless.config.errors import ConfigError

CACHE_ENTRY_MAX = 128 << 10  # JSON characters; real config files parse to a few KB
CACHE_FILE_MAX = 512 << 10  # every configured seamless-run reads all of it: a few ms at most

_memory = {}


def _cache_path():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "seamless", "config-cache.json")


class YamlReader:
    """read(path) -> parsed content; call save() once to keep new parses for next time."""

    def __init__(self):
        self.path = _cache_path()
        self._disk = None
        self._dirty = False
        self._used = {}  # keys this reader needed, in order: the last entries to evict

    def _load_disk(self):
        if self._disk is None:
            try:
                with open(self.path) as f:
                    disk = json.load(f) if os.fstat(f.fileno()).st_size <= CACHE_FILE_MAX else None
            except OSError:
                disk = {}
            except (ValueError, RecursionError):
                disk = None
            if not isinstance(disk, dict):  # too big, or not what save() writes: rewritten afresh
                disk, self._dirty = {}, True
            self._disk = disk
        return self._disk

    def __call__(self, path):
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        key = os.path.abspath(path)
        self._used[key] = None
        known = _memory.get(key)
        if known is None:
            known = self._load_disk().get(key)
        if isinstance(known, list) and len(known) == 2 and known[0] == stamp:
            _memory[key] = known
            return known[1]
        data = _parse(path, st.st_size)
        try:
            text = json.dumps(data)
            data = json.loads(text)  # the same types whether parsed or cached
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: contains YAML values that are not plain data (dates, tags...); "
                              "quote them") from None
        _memory[key] = [stamp, data]
        disk = self._load_disk()
        disk.pop(key, None)
        if len(text) <= CACHE_ENTRY_MAX:
            disk[key] = [stamp, data]
        self._dirty = True
        return data

    def save(self):
        """Write the cache: the newest entries (those this reader used last) that fit."""
        if not self._dirty:
            return
        disk = self._load_disk()
        for key in self._used:
            if key in disk:
                disk[key] = disk.pop(key)
        parts, size = [], 2
        for key, entry in reversed(disk.items()):
            part = f"{json.dumps(key)}: {json.dumps(entry)}"
            size += len(part) + 2
            if size > CACHE_FILE_MAX:
                break
            parts.append(part)
        try:
            from seamless.files import atomic_write

            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            atomic_write(self.path, "{" + ", ".join(reversed(parts)) + "}", mode=0o600)
        except OSError:
            pass  # a cache only
        self._dirty = False


# Bounds far above any real config file; a 400-byte alias bomb expands to 10**8 values,
# and a 1 MB one, of one long string, to 1 GB of text (in memory, and in the cache).
MAX_VALUES = 100_000
MAX_TEXT = 10_000_000  # characters of scalars, once per use
MAX_DEPTH = 100  # nesting; deeper breaks recursive walks (libyaml itself stops at 1000)


def _parse(path, size):
    if size > MAX_TEXT:
        raise ConfigError(f"{path}: is larger than {MAX_TEXT // 1_000_000} MB, far more than any "
                          "configuration needs: is it the right file?")
    try:
        with open(path) as f:
            return load_yaml(f, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load_yaml(stream, source):
    """Safe-load YAML text or a file object, refusing alias bombs; errors name `source`."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(stream)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    finally:
        loader.dispose()


def _check_expansion(root, path):
    """Refuse a document that aliases (*name) expand past MAX_VALUES nodes or MAX_TEXT
    characters, that nests past MAX_DEPTH, or that contains itself: parsed, it is small
    (aliases share nodes), but every later walk would expand it. Counted without
    expanding: each node once, children first."""
    sizes = {}  # id(node) -> (values, characters, depth) expanded, None while its children are counted
    stack = [(root, False)]
    while stack:
        node, counted = stack.pop()
        children = [n for pair in node.value for n in pair] if node.id == "mapping" else \
            node.value if node.id == "sequence" else ()
        if not counted:
            if id(node) in sizes:
                if sizes[id(node)] is None:  # an ancestor: only an alias gets here
                    raise _too_big(path, node, "a YAML alias (*name) is used inside the value it names")
                continue
            sizes[id(node)] = None
            stack.append((node, True))
            stack.extend((child, False) for child in children)
            continue
        counts = [sizes[id(child)] for child in children]
        values = 1 + sum(c[0] for c in counts)
        text = len(node.value) if node.id == "scalar" else sum(c[1] for c in counts)
        depth = 1 + max((c[2] for c in counts), default=0)
        sizes[id(node)] = (values, text, depth)
        if values > MAX_VALUES:
            raise _too_big(path, node, f"YAML aliases (*name) expand this to more than {MAX_VALUES} values; "
                                       "write the values out, or alias less deeply")
        if text > MAX_TEXT:
            raise _too_big(path, node, f"YAML aliases (*name) expand this to more than "
                                       f"{MAX_TEXT // 1_000_000} MB of text; write the values out, or alias less")
        if depth > MAX_DEPTH:
            raise _too_big(path, node, f"values are nested more than {MAX_DEPTH} deep; flatten them")


def _too_big(path, node, problem):
    return ConfigError(f"{path}: line {node.start_mark.line + 1}: {problem}")
