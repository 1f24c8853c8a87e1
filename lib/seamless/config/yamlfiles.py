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


def _parse(path):
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path) as f:
            return yaml.load(f, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
