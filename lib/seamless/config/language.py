"""The seamless.yaml command language: files, entries, stage blocks, commands.

A directory's seamless.yaml then seamless.profile.yaml are read; `inherit_from_parent`
in either pulls in the parent directory first (root-most first). Each file is a YAML
list of bare words or one-key mappings; `stage NAME:` blocks hold commands that apply
only in that stage. Every entry of every block is checked, active or not, so a typo in
another stage is found today, not on the day that stage is used.
"""

import os

from seamless.config.errors import ConfigError, did_you_mean

FILES = ("seamless.yaml", "seamless.profile.yaml")
EXECUTIONS = ("process", "spawn", "remote")
REMOTES = ("jobserver", "daskserver")


def _any_str(value):
    return isinstance(value, str) and value.strip() != ""


def _check(name, value):
    """None if `value` suits command `name`, else what it expects."""
    if name in ("project", "subproject", "queue"):
        return None if _any_str(value) else "a name"
    if name == "cluster":
        return None if value is None or _any_str(value) else "a cluster name"
    if name == "execution":
        return None if value in EXECUTIONS else f"one of {', '.join(EXECUTIONS)}"
    if name == "remote":
        return None if value is None or value in REMOTES else f"one of {', '.join(REMOTES)} (or nothing)"
    if name in ("persistent", "record"):
        return None if isinstance(value, bool) else "true or false"
    if name == "node":  # it ends up in a batch directive and in the daskserver's key
        plain = _any_str(value) and all(c.isascii() and (c.isalnum() or c in "._-") for c in value)
        return None if value is None or (plain and "--" not in value) else \
            "a node name (letters, digits, '.', '_' and '-')"
    if name == "nparallel":
        return None if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else "an integer >= 1"
    if name == "max_size":
        from seamless.sizes import parse_size

        try:
            return None if not isinstance(value, bool) and parse_size(value) > 0 else "a size above 0"
        except ValueError:
            return "a size like 5G or 500MB"
    if name == "clusters":
        return None if isinstance(value, dict) else "a mapping of cluster definitions"
    return None  # inherit_from_parent: any argument


COMMANDS = ("project", "subproject", "cluster", "execution", "queue", "remote", "persistent", "record",
            "node", "nparallel", "max_size", "clusters", "inherit_from_parent")


class Entry:
    """One command of one file: where it is, what it says."""

    __slots__ = ("path", "number", "name", "value", "stage")

    def __init__(self, path, number, name, value, stage):
        self.path, self.number, self.name, self.value, self.stage = path, number, name, value, stage

    def where(self):
        block = f" (in stage {self.stage!r})" if self.stage else ""
        return f"{self.path}: entry {self.number} ('{self.name}'){block}"

    def fail(self, problem):
        return ConfigError(f"{self.where()}: {problem}")


def config_files(workdir, read_yaml):
    """The config files that apply in workdir, root-most directory first."""
    chain = []
    directory = os.path.abspath(workdir)
    while True:
        found = [os.path.join(directory, name) for name in FILES if os.path.isfile(os.path.join(directory, name))]
        chain.insert(0, found)
        parent = os.path.dirname(directory)
        if not found or parent == directory or not any(_says_inherit(read_yaml(p)) for p in found):
            break
        directory = parent
    return [path for group in chain for path in group]


def _says_inherit(data):
    return isinstance(data, list) and any(
        (isinstance(i, str) and i.strip() == "inherit_from_parent")
        or (isinstance(i, dict) and len(i) == 1 and "inherit_from_parent" in i) for i in data)


def entries(files, read_yaml, stage):
    """The entries active in `stage` (all are syntax-checked), and every stage name a
    `stage NAME:` block of the files mentions."""
    active, stages = [], set()
    for path in files:
        data = read_yaml(path)
        if not isinstance(data, list):
            raise ConfigError(f"{path}: expected a YAML list of commands, for example `- project: myproject`")
        _walk(path, data, None, stage, active, stages)
    return active, stages


def _walk(path, items, block, stage, active, stages):
    for number, item in enumerate(items, 1):
        name, value = _split(path, number, item, block)
        if name.startswith("stage") and name != "stage" and name[5:6].isspace():
            inner = name[5:].strip()
            where = f"{path}: entry {number} ('{name}')"
            if not isinstance(value, list):
                raise ConfigError(f"{where}: a stage block must be followed by a YAML list of commands")
            _check_name(inner, "stage", where)
            stages.add(inner)
            _walk(path, value, inner, stage, active if inner == stage else None, stages)
            continue
        entry = Entry(path, number, name, value, block)
        if name == "stage":
            raise entry.fail(f"write a stage block as `- stage {value or 'NAME'}:` followed by a list of "
                             "commands; `- stage: NAME` is not a command")
        if name not in COMMANDS:
            hint = did_you_mean(name, COMMANDS, f"known commands: {', '.join(COMMANDS)}")
            block_note = f" (in stage {block!r})" if block else ""
            raise ConfigError(f"{path}: entry {number}{block_note}: unknown command '{name}'; {hint}")
        expected = _check(name, value)
        if expected:
            raise entry.fail(f"expects {expected}, not {value!r}")
        if name in ("project", "subproject", "cluster") and value is not None:
            _check_name(value, name, entry.where())  # in inactive stages too
        if name == "inherit_from_parent":
            continue  # handled by config_files (only at the top level, as upstream)
        if active is not None:
            active.append(entry)


def _split(path, number, item, block):
    if isinstance(item, str):
        return item.strip(), None
    if isinstance(item, dict) and len(item) == 1:
        (key, value), = item.items()
        if not isinstance(key, str):
            raise ConfigError(f"{path}: entry {number}: command names must be strings, not {key!r}")
        return key.strip(), value
    raise ConfigError(f"{path}: entry {number}: a command is a bare word (`- inherit_from_parent`) or a "
                      f"one-key mapping (`- project: NAME`), not {item!r}")


def _check_name(name, what, where):
    """Names end up in paths and service keys: keep them plain, and inside their directory."""
    allowed = "/" if what == "subproject" else ""
    bad = [c for c in name if not (c.isascii() and (c.isalnum() or c in "._-" + allowed))]
    parts = name.split("/")
    if (not name or bad or "--" in name or "STAGE-" in name or (what != "subproject" and "/" in name)
            or any(part in ("", ".", "..") for part in parts)):
        raise ConfigError(f"{where}: {what} name {name!r} must use letters, digits, '.', '_' and '-' only "
                          f"(no '--' or 'STAGE-'{'' if allowed else ', no /'})")
