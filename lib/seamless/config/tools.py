"""share/tools.yaml: how each service is started, rendered for one configuration.

Templates use $NAMES (from the cluster, project and stage), {names} (from the launch
settings) and [optional parts], kept only when every {name} inside them is set. The
result is an argv list, never a shell string, so no value can inject shell syntax.
"""

import os
import re
import shlex
import sys

from seamless.config import storage
from seamless.config.errors import ConfigError

_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def tools_yaml_path():
    """SEAMLESS_TOOLS_YAML, the source tree's share/tools.yaml, or the installed copy."""
    override = os.environ.get("SEAMLESS_TOOLS_YAML")
    if override:
        return override
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "..", "..", "..", "share", "tools.yaml"),
                      os.path.join(sys.prefix, "share", "seamless", "tools.yaml")):
        if os.path.isfile(candidate):
            return os.path.normpath(candidate)
    raise ConfigError("share/tools.yaml is missing from this installation (set SEAMLESS_TOOLS_YAML)")


def load_tools():
    from seamless.config.yamlfiles import YamlReader

    reader = YamlReader()
    tools = reader(tools_yaml_path())
    reader.save()
    return tools


def render(tool, resolved, mode="rw", status_file="STATUS_FILE", tools=None):
    """{key, workdir, argv, handshake, timeout, hostname, ...} to launch `tool` for `resolved`."""
    tools = tools or load_tools()
    if tool not in tools:
        raise ConfigError(f"share/tools.yaml has no entry for {tool!r} ({', '.join(tools)})")
    entry = tools[tool]
    block = entry.get("service", tool)  # the frontend's settings it takes (pure_daskserver: daskserver's)
    frontend = storage.frontend_for(resolved, block)
    if frontend is None:
        raise ConfigError(f"cluster '{resolved.cluster}' has no frontend with a {block}")
    service = frontend[block]
    injected = {
        "CLUSTER": resolved.cluster, "MODE": mode,
        "PROJECTSUBDIR": storage.project_subdir(resolved), "STAGEDIR": storage.stage_dir(resolved),
        "STAGESUBDIR": storage.stage_subdir(resolved),
        "BUFFERDIR": service.get("bufferdir", ""), "DATABASE_DIR": service.get("database_dir", ""),
    }
    settings = {k: v for k, v in service.items() if v is not None}
    settings.update({k: entry[k] for k in ("timeout",) if k in entry})
    settings["key_suffix"] = storage.key_suffix(tool, resolved, mode)
    settings["status_file"] = status_file
    # the launcher makes a fresh token at each start, on the service host
    settings["token_file"] = "TOKEN_FILE" if resolved.definition.get("token", True) else None
    settings["writable_flag"] = "--writable" if mode == "rw" else None
    settings["workers"] = resolved.definition.get("workers")
    if "cluster_string" in entry:
        settings["cluster_string"] = _by_type(entry, "cluster_string", resolved, block)
    parameters = {}
    if entry.get("file_parameters") in QUEUE_PARAMETERS:  # the selected queue, as the wrapper's parameters
        from seamless.config import queues

        parameters = queues.wrapper_parameters(resolved, pure=entry["file_parameters"] == "pure_dask_queue")
        settings["conda"] = queues.conda_of(resolved) or settings.get("conda")
    handshake, handshake_port = entry.get("handshake"), None
    if isinstance(handshake, dict):  # upstream's {path, port_name}: answered on another port of the service
        handshake, handshake_port = handshake.get("path"), handshake.get("port_name")
    workdir = _substitute(entry["workdir_template"], injected, settings)
    settings["workdir"] = workdir
    command = _substitute(entry["command_template"], injected, settings)
    number = resolved.definition["frontends"].index(frontend) + 1
    source = source_of(resolved)
    return {
        "tool": tool,
        "key": _substitute(entry["key_template"], injected, settings),
        "workdir": workdir,
        "argv": shlex.split(command),
        "handshake": handshake,
        "handshake_port": handshake_port,
        "protocol": entry.get("protocol"),
        "stop_grace": entry.get("stop_grace"),
        "parameters": parameters,
        "same_parameters": entry.get("file_parameters") in QUEUE_PARAMETERS,  # a changed queue: a new cluster
        "timeout": entry.get("timeout"),
        "hostname": None if resolved.local else frontend.get("hostname"),
        "ssh_hostname": None if resolved.local else frontend.get("ssh_hostname"),
        "tunnel": bool(resolved.definition.get("tunnel")) and not resolved.local,
        "conda": settings.get("conda"),
        "ports_from": f"port_start/port_end of the {block} of cluster '{resolved.cluster}' (frontend {number}, "
                      f"{frontend.get('hostname')}) in {source}",
    }


QUEUE_PARAMETERS = ("dask_queue", "pure_dask_queue")


def source_of(resolved):
    return resolved.sources.get(resolved.cluster, "the cluster definition")


def _by_type(entry, name, resolved, service):
    """entry[name] chosen by the cluster's type (a mapping type -> value)."""
    ctype = resolved.definition.get("type")
    choices = entry[name]
    if ctype not in choices:
        have = f"type: {ctype}" if ctype else "no type"
        raise ConfigError(f"{source_of(resolved)}: cluster '{resolved.cluster}' has {have}, and a {service} needs "
                          f"one of: type: {', '.join(choices)}")
    return choices[ctype]


def _substitute(template, injected, settings):
    text = _VAR.sub(lambda m: _lookup(injected, m.group(1), template), template)

    def optional(match):
        part = match.group(1)
        names = _FIELD.findall(part)
        return part if all(settings.get(n) is not None for n in names) else ""

    text = _OPTIONAL.sub(optional, text)
    text = _FIELD.sub(lambda m: shlex.quote(str(_lookup(settings, m.group(1), template))), text)
    return " ".join(text.split())


def _lookup(mapping, name, template):
    if name not in mapping or mapping[name] is None:
        raise ConfigError(f"share/tools.yaml: {name!r} in {template!r} is not set for this cluster")
    return mapping[name]
