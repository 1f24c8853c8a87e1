"""seamless-launch: start, find and stop services, here or on a cluster frontend over ssh.

    seamless-launch TOOL --cluster C [--stage S[:SUB]] [--project P[:SUB]] [--mode rw|ro]
                         [--queue Q] [--node N]    (TOOL: hashserver, database, jobserver,
                                                    daskserver, pure_daskserver)
    seamless-launch SPEC.yaml
    seamless-launch ps [--json] | stop KEY... | logs KEY [--tail N] | rm KEY...

Starting prints the connection JSON on stdout. `_host` is the part that runs on the
service host (used over ssh); it is not meant to be typed.
"""

import argparse
import json
import os
import sys

from seamless.cli import UserError, add_version, error_line

PROG = "seamless-launch"
COMMANDS = ("ps", "stop", "logs", "rm", "_host")


def main(argv):
    if argv and argv[0] == "_host":
        return host_side(argv[1:])
    if argv and argv[0] in COMMANDS:
        return manage(argv)
    return launch(argv)


# --- starting ----------------------------------------------------------------------------


def launch(argv):
    p = argparse.ArgumentParser(prog=PROG, allow_abbrev=False,
                                usage="%(prog)s TOOL --cluster C [options] | SPEC.yaml | ps | stop | logs | rm",
                                description="Start or find a service (hashserver, database, ...) and print "
                                "how to reach it as JSON. See also: ps, stop KEY, logs KEY, rm KEY.")
    add_version(p)
    p.add_argument("what", metavar="TOOL|SPEC.yaml", help="a tool of share/tools.yaml, or a launch spec file")
    p.add_argument("--cluster", help="the cluster whose frontend runs the service")
    p.add_argument("--stage", metavar="S[:SUB]", help="the stage (its own storage)")
    p.add_argument("--project", metavar="P[:SUB]", help="the project (and subproject)")
    p.add_argument("--mode", choices=("rw", "ro"), default="rw", help="writable (rw, default) or read-only")
    p.add_argument("--queue", metavar="Q", help="a Dask server's queue (default: the cluster's default_queue)")
    p.add_argument("--node", metavar="N", help="the node a Dask server's batch jobs run on (slurm, oar)")
    p.add_argument("--dry-run", action="store_true", help="print what would be launched where; start nothing")
    args = p.parse_args(argv)
    from seamless.config.errors import ConfigError
    from seamless.launch.client import ensure
    from seamless.launch.executor import LaunchError

    try:
        if os.path.isfile(args.what) or args.what.endswith((".yaml", ".yml")):
            spec = spec_from_file(args.what)
        else:
            spec = spec_from_config(args)
        if args.dry_run:
            print(json.dumps(dry_run(spec), indent=2))
            return 0
        connection = ensure(spec)
    except (ConfigError, LaunchError) as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(connection, indent=2))
    return 0


def spec_from_config(args):
    from seamless.config.resolve import resolve
    from seamless.config.tools import load_tools, render
    from seamless.cli import selection

    if not args.cluster:
        raise UserError(f"{args.what}: which cluster? (--cluster NAME)")
    chosen = selection(args)
    # the cluster first: a queue is one of its queues
    chosen["choices"] = {"cluster": args.cluster, **chosen["choices"], "persistent": True, "node": args.node}
    resolved = resolve(**chosen)
    if not resolved.project:
        raise UserError(f"{args.what}: which project? (--project NAME, or a seamless.yaml here)")
    tools = load_tools()
    if args.what not in tools:
        raise UserError(f"unknown tool {args.what!r}; share/tools.yaml has: {', '.join(tools)}")
    return render(args.what, resolved, args.mode, tools=tools)


def dry_run(spec):
    import shlex

    from seamless.launch.executor import executor_for

    shown = {k: v for k, v in spec.items() if k not in ("argv", "ports_from") and v not in (None, False, {})}
    shown["command"] = shlex.join(spec["argv"]).replace("STATUS_FILE", "{status_file}").replace(
        "TOKEN_FILE", "{token_file}")
    shown["where"] = executor_for(spec).where
    return shown


SPEC_KEYS = {"key", "workdir", "command", "tool", "hostname", "ssh_hostname", "tunnel", "handshake", "conda",
             "parameters", "token", "protocol"}


def spec_from_file(path):
    """An explicit launch spec: key, workdir, command ({status_file} and {token_file} are
    filled in), and optionally hostname, ssh_hostname, tunnel, handshake (a path, or
    {path, port_name} to ask it on another port), conda, parameters, tool, token (false:
    a service without a token), protocol (of its port, when not http: tcp)."""
    import shlex

    from seamless.config.errors import ConfigError
    from seamless.config.yamlfiles import YamlReader

    reader = YamlReader()
    try:
        data = reader(path)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    reader.save()
    if not isinstance(data, dict):
        raise UserError(f"{path}: a launch spec is a mapping with key, workdir and command")
    unknown = set(data) - SPEC_KEYS
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(SPEC_KEYS))})")
    for key in ("key", "workdir", "command"):
        if key not in data:
            raise UserError(f"{path}: '{key}' is required")
    workdir = str(data["workdir"])
    if not workdir or any(not (c.isalnum() or c in "@_./~-") for c in workdir):
        raise UserError(f"{path}: workdir {workdir!r} must be a plain path (letters, digits, @ _ . / ~ -)")
    command = data["command"]
    try:
        if isinstance(command, str):
            argv = shlex.split(command)
        elif isinstance(command, list) and all(isinstance(a, (str, int, float)) for a in command):
            argv = [str(a) for a in command]
        else:
            raise ValueError("must be a string or a list of arguments")
    except ValueError as exc:
        raise UserError(f"{path}: command: {exc}") from None
    argv = [{"{status_file}": "STATUS_FILE", "{token_file}": "TOKEN_FILE"}.get(a, a) for a in argv]
    if not any(a == "--status-file" and b == "STATUS_FILE" for a, b in zip(argv, argv[1:], strict=False)):
        raise UserError(f"{path}: the command must pass --status-file {{status_file}} to the service")
    handshake, handshake_port = data.get("handshake"), None
    if isinstance(handshake, dict):
        handshake, handshake_port = handshake.get("path"), handshake.get("port_name")
        if set(data["handshake"]) - {"path", "port_name"} or not isinstance(handshake, str) or not (
                isinstance(handshake_port, str) and handshake_port.endswith("_port")):
            raise UserError(f"{path}: handshake must be a path, or {{path: PATH, port_name: NAME_port}}")
    for name, kind, what in (("tunnel", bool, "true or false"), ("token", bool, "true or false"),
                             ("parameters", dict, "a mapping"), ("protocol", str, "a URL scheme such as tcp"),
                             ("handshake", (str, dict), "a path such as healthcheck"),
                             ("conda", str, "an environment name"),
                             ("tool", str, "a name"), ("hostname", str, "a host name"),
                             ("ssh_hostname", str, "a host name or ssh alias")):
        if data.get(name) is not None and not isinstance(data[name], kind):
            raise UserError(f"{path}: {name} must be {what}")
    from seamless.launch.executor import LaunchError, check_ssh_host
    from seamless.launch.host import HostError, check_key, check_workdir

    try:
        check_key(str(data["key"]))
        check_workdir(workdir)
        for name in ("hostname", "ssh_hostname"):
            if data.get(name):
                check_ssh_host(data[name])
    except (HostError, LaunchError) as exc:
        raise UserError(f"{path}: {exc}") from None
    argv = _with_token(path, argv, data.get("token"))
    return {"key": str(data["key"]), "tool": data.get("tool") or argv[0], "workdir": workdir, "argv": argv,
            "hostname": data.get("hostname"), "ssh_hostname": data.get("ssh_hostname"),
            "tunnel": data.get("tunnel", False), "handshake": handshake, "handshake_port": handshake_port,
            "protocol": data.get("protocol"), "conda": data.get("conda"), "parameters": data.get("parameters") or {}}


SERVERS_WITH_TOKENS = ("seamless-hashserver", "seamless-db")  # they take --token-file


def _with_token(path, argv, token):
    """A token by default for our servers; for any other program, when its command
    passes --token-file {token_file} (token: false turns it off)."""
    uses = "TOKEN_FILE" in argv
    ours = os.path.basename(argv[0]) in SERVERS_WITH_TOKENS and "--token-file" not in argv
    if token is False and uses:
        raise UserError(f"{path}: token: false, but the command passes --token-file {{token_file}}")
    if token is None:
        token = uses or ours
    if token and not uses:
        if not ours:
            raise UserError(f"{path}: token: true, but the command does not pass --token-file {{token_file}} "
                            "to the service")
        argv = [*argv, "--token-file", "TOKEN_FILE"]
    return argv


# --- managing --------------------------------------------------------------------------------


def manage(argv):
    p = argparse.ArgumentParser(prog=PROG, allow_abbrev=False)
    sub = p.add_subparsers(dest="command", required=True)
    ps = sub.add_parser("ps", help="list the services known here")
    ps.add_argument("--json", action="store_true", help="one JSON object per line")
    for name in ("stop", "rm"):
        sub.add_parser(name, help=f"{name} services").add_argument("keys", nargs="+", metavar="KEY")
    logs = sub.add_parser("logs", help="print a service's log")
    logs.add_argument("key", metavar="KEY")
    logs.add_argument("--tail", type=_count, metavar="N", help="only the last N lines")
    args = p.parse_args(argv)
    if args.command == "ps":
        return list_services(args.json)
    failed = False
    for key in [args.key] if args.command == "logs" else args.keys:
        try:
            manage_one(args, key)
        except UserError as exc:  # one line per key; the others are still done
            error_line(PROG, exc)
            failed = True
    return 1 if failed else 0


def manage_one(args, key):
    from seamless.launch import client, host
    from seamless.launch.executor import LaunchError

    executor = None
    try:
        host.check_key(key)
        executor = client.executor_of(key)
        known_here = client.known(key)
        if args.command == "logs":
            if not known_here and executor.call("inspect", key) is None:
                raise UserError(_unknown(key))
            sys.stdout.write(executor.call("logs", key, args.tail))
            return
        done = executor.call(args.command, key)
    except LaunchError as exc:
        if args.command == "rm" and executor and executor.ssh_host:  # a gone frontend must not stay in ps forever
            client.forget(key)
            raise UserError(f"{exc}; {key} is forgotten here (its state on {executor.ssh_host} is left)") from None
        raise UserError(str(exc)) from None
    except host.HostError as exc:
        raise UserError(str(exc)) from None
    if args.command == "stop":
        client.drop_client(key)
        if done is None and not known_here:
            raise UserError(_unknown(key))
        print(f"{key}: {'stopped' if done else 'not running'}")
    else:
        client.forget(key)
        if not done and not known_here:
            raise UserError(_unknown(key))
        print(f"{key}: removed")


def _unknown(key):
    from seamless.config.errors import did_you_mean

    keys = service_rows()
    return f"unknown service '{key}'; " + did_you_mean(key, keys, "seamless-launch ps lists the known ones"
                                                       if keys else "no services are known here")


def _count(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of lines (0 or more)")
    return value


def service_rows():
    """{key: row} of the services on this host and those this side connects to elsewhere."""
    from seamless.launch import client, host

    rows = {row["key"]: {**row, "where": "here"} for row in host.ps()}
    directory = os.path.join(host.launch_dir(), "client")
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        key, suffix = os.path.splitext(name)
        if suffix not in (".json", ".host") or not host.valid_key(key):
            continue
        row = rows.setdefault(key, {"key": key, "status": "remote", "pid": None})
        if suffix == ".json":
            connection = client.read_client(key) or {}
            if connection.get("url") and row["status"] in ("running", "remote"):  # how this side reaches it
                row["url"] = connection["url"]
            row.update(status="connected" if row["status"] == "remote" else row["status"],
                       where=connection.get("ssh_hostname") or row.get("where", "here"))
        elif row.get("where", "here") == "here" and row["status"] == "remote":
            with open(os.path.join(directory, name)) as f:
                row["where"] = f.read().strip()
    return rows


def list_services(as_json):
    rows = service_rows()
    if rows and not as_json:
        print(f"{'KEY':<50} {'STATUS':<10} {'WHERE':<20} URL")
    for row in rows.values():
        if as_json:
            print(json.dumps(row))
        else:
            print(f"{row['key']:<50} {row.get('status') or '-':<10} {row.get('where', 'here'):<20} "
                  f"{row.get('url') or '-'}")
    return 0


# --- the service-host side (over ssh) ------------------------------------------------------------


def host_side(argv):
    from seamless.launch import host

    if not argv or argv[0] not in host.OPS:
        raise UserError(f"_host: expected one of {', '.join(host.OPS)}")
    op, args = argv[0], argv[1:]
    if op == "start":
        args = [json.loads(args[0])]
    elif op == "logs" and len(args) > 1:
        args = [args[0], None if args[1] == "None" else int(args[1])]
    try:
        result = host.OPS[op](*args)
    except host.HostError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(result))
    return 0
