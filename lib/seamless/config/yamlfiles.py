"""Reading YAML config files fast: parsed once, then reused while unchanged.

Importing and running PyYAML costs more than a whole cached seamless-run, so each
file's parsed content is kept as JSON in the cache directory, keyed by the file's
path, size, mtime and inode; PyYAML is imported only when a file is new or changed.
"""

import json
import os

from seamless.config.errors import ConfigError

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

    def _load_disk(self):
        if self._disk is None:
            try:
                with open(self.path) as f:
                    self._disk = json.load(f)
            except (OSError, ValueError):
                self._disk = {}
        return self._disk

    def __call__(self, path):
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        key = os.path.abspath(path)
        known = _memory.get(key)
        if known is None:
            known = self._load_disk().get(key)
        if known is not None and known[0] == stamp:
            _memory[key] = known
            return known[1]
        data = _parse(path)
        try:
            data = json.loads(json.dumps(data))  # the same types whether parsed or cached
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: contains YAML values that are not plain data (dates, tags...); "
                              "quote them") from None
        _memory[key] = [stamp, data]
        self._load_disk()[key] = [stamp, data]
        self._dirty = True
        return data

    def save(self):
        if not self._dirty:
            return
        try:
            from seamless.files import atomic_write

            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            atomic_write(self.path, json.dumps(self._disk), mode=0o600)
        except OSError:
            pass  # a cache only
        self._dirty = False


MAX_VALUES = 100_000  # far above any real config file; a 400-byte alias bomb expands to 10**8


def _parse(path):
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
    """Refuse a document that aliases (*name) expand past MAX_VALUES nodes, or that
    contains itself: parsed, it is small (aliases share nodes), but every later walk
    would expand it. Counted without expanding: each node once, children first."""
    sizes = {}  # id(node) -> expanded size, None while its children are counted
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
        size = sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
        if size > MAX_VALUES:
            raise _too_big(path, node, f"YAML aliases (*name) expand this to more than {MAX_VALUES} values; "
                                       "write the values out, or alias less deeply")


def _too_big(path, node, problem):
    return ConfigError(f"{path}: line {node.start_mark.line + 1}: {problem}")
