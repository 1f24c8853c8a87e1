"""From a command string to its inputs, its result targets and the code that runs it.

Only the primary pipeline (the first, or --primary N) is argtyped, as upstream; the
last command's stdout redirection to a relative file becomes a result target. Words
whose pin name differs from how they were written (-w, -ms, -mx, absolute paths) are
rewritten in place, quoted when needed.
"""

import os

from seamless.run import shell
from seamless.run.argtyping import ArgtypeError, Input, classify, find_executable, map_names

FORBIDDEN_PINS = ("code", "bashcode", "pins_")
STDOUT_OPS = (">", ">>", ">|", "&>", "&>>")


class Target:
    """A result: `server` is its path in the job directory, `local` where it lands."""

    def __init__(self, server, local):
        self.server, self.local = server, local


class Analysis:
    def __init__(self, command, inputs):
        self.command = command
        self.inputs = inputs
        self.redirect = None  # the last command's output file, a result target
        self.executables = []  # pin names that need chmod +x
        self.path_export = False  # a script called by bare name: ./ must be on PATH


def analyze(command: str, *, primary=1, rule1=True, rule2=True, workdir=".", mapping="literal",
            extra_inputs=()) -> Analysis:
    try:
        pipelines = shell.parse(command)
    except shell.ShellSyntaxError as exc:
        raise ArgtypeError(f"cannot parse the command: {exc}") from None
    if not pipelines:
        raise ArgtypeError("no command given")
    if not 1 <= primary <= len(pipelines):
        raise ArgtypeError(f"--primary {primary}: the command has {len(pipelines)} part(s)")
    workdir = os.path.abspath(os.path.expanduser(workdir))

    inputs = []
    argno = 0
    for cmd in pipelines[primary - 1].commands:
        words = list(cmd.words)
        words += [r.target for r in cmd.redirects if r.op == "<"]  # input files of redirections
        for position, word in enumerate(words):
            argno += 1
            found = None
            if position == 0 and word in cmd.words:
                script = find_executable(word.value)
                if script is not None:
                    found = Input(script, "file", executable=True)
                elif "/" not in word.value:
                    continue  # a program on PATH (or a shell builtin): a plain value
            if found is None:
                found = classify(word.value, argno, rule1, rule2, word.has_expansion)
            if found is not None:
                _add(inputs, found).words.append(word)
    for path in extra_inputs:
        found = classify(path, 1, rule1=False, rule2=False)
        if found is None:
            raise ArgtypeError(f"input {path!r} (-i/-I): file or directory does not exist")
        _add(inputs, found)
    map_names(inputs, mapping, workdir)
    for item in inputs:
        if item.name in FORBIDDEN_PINS or item.name.startswith("__") or item.name.startswith("META__"):
            raise ArgtypeError(f"an input may not be called {item.name!r} in the job; use -mx or another -w")

    analysis = Analysis(command, inputs)
    analysis.command = _rewrite(command, inputs, analysis)
    analysis.redirect = _redirect_target(pipelines[-1])
    return analysis


def _add(inputs, found):
    for item in inputs:
        if item.source == found.source:
            item.executable = item.executable or found.executable
            return item
    inputs.append(found)
    return found


def _quote(text):
    import shlex

    return shlex.quote(text)


def _rewrite(command, inputs, analysis):
    edits = []
    for item in inputs:
        if item.executable:
            analysis.executables.append(item.name)
            analysis.path_export = analysis.path_export or "/" not in item.name
        for word in item.words:
            if word.value != item.name:
                edits.append((word.start, word.end, _quote(item.name)))
    for start, end, text in sorted(edits, reverse=True):
        command = command[:start] + text + command[end:]
    return command


def _redirect_target(pipeline):
    """The relative file that the last command writes its output to, if any.

    As upstream, any output redirection counts except stderr's (2>); unlike upstream,
    fd duplications (>&2, 2>&1), /dev/..., absolute and ../ paths are not results.
    """
    target = None
    for redirect in pipeline.commands[-1].redirects:
        if redirect.op in STDOUT_OPS and redirect.fd != 2 and not redirect.is_dup:
            target = redirect.target
    if target is None or target.has_expansion:
        return None
    path = os.path.normpath(target.value)
    if os.path.isabs(path) or path == ".." or path.startswith("../") or path == ".":
        return None  # outside the job directory: not a result seamless-run can collect
    return target.value


# --- code generation -----------------------------------------------------------------


def targets_of(analysis, captures):
    """Result targets in upstream's order: the -cp list as given (stdout at the place of
    the first :LOCAL), then the redirection target. Paths are kept as written (./x
    stays ./x, as upstream), compared normalized to drop duplicates."""
    targets = []

    def add(server, local):
        key = os.path.normpath(server) if server != "STDOUT" else server
        if all((os.path.normpath(t.server) if t.server != "STDOUT" else t.server) != key for t in targets):
            targets.append(Target(server, local))
        elif server == "STDOUT":
            targets.append(Target(server, local))  # one more local copy of stdout

    for capture in captures:
        server, sep, local = capture.partition(":")
        if sep and not server:
            if not local:
                raise ArgtypeError(f"--capture {capture!r}: empty local name")
            add("STDOUT", local)
            continue
        if server != "/" and server.endswith("/"):
            server = server.rstrip("/")  # upstream would nest res/ inside RESULT/res
        norm = os.path.normpath(server)
        if os.path.isabs(norm) or norm == ".." or norm.startswith("../") or norm == ".":
            raise ArgtypeError(f"--capture {capture!r}: the result must be a path inside the job directory")
        local = local if sep else server
        if not local:
            raise ArgtypeError(f"--capture {capture!r}: empty local name")
        add(server, local)
    redirect = analysis.redirect
    if redirect and not any(os.path.normpath(redirect).startswith(os.path.normpath(t.server) + "/")
                            for t in targets):  # inside a captured directory: it comes along
        add(redirect, redirect)
    return targets


def bash_code(analysis, targets, metavars=()) -> str:
    """The transformation's code, byte for byte as upstream generates it."""
    lines = []
    if analysis.path_export:
        lines.append("export PATH=./:$PATH")
    if analysis.executables:
        lines.append("chmod +x " + " ".join(_single_quoted(name) for name in analysis.executables))
    lines += [f'export {name}="${{META__{name}}}"' for name in sorted(metavars)]
    command = analysis.command
    if not targets:
        return "\n".join(lines + ["(", command, ") > RESULT"]) + "\n"
    moved = list(dict.fromkeys(target.server for target in targets))
    dirs = []
    for server in moved:
        d = "RESULT/" + (os.path.dirname(server) if server != "STDOUT" else "")
        if d not in dirs:
            dirs.append(d)
    lines.append("mkdir -p " + " ".join(_quote(d) for d in dirs))
    if "STDOUT" in moved:
        lines += ["(", command, ") > STDOUT"]
    else:
        lines.append(command)
    for server in moved:
        d = "RESULT/" + (os.path.dirname(server) if server != "STDOUT" else "")
        lines.append(f"mv {_quote(server)} {_quote(d)}")
    return "\n".join(lines) + "\n"


def _single_quoted(name):
    return "'" + name.replace("'", "'\\''") + "'"
