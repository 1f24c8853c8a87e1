"""From a command string to its inputs, its result targets and the code that runs it.

The primary pipeline (the first, or --primary N) is argtyped with upstream's rules. The
rest of the script is scanned too, where upstream lets its files fail in the job: there a
word is an input only if it names an existing file or directory (or its sidecars) that
can be one, and nothing is an error. Not inputs anywhere: what an earlier command writes
(`> tmp.txt`), and outside the primary pipeline the -cp results and the fallback after
`||` (it runs only when the left side failed; upstream's results leave it out). An input
inside a directory input is not a pin of its own: the directory brings it. The last
command's stdout redirection to a relative file becomes a result target. Words whose
pin name differs from how they were written (./x, -w, -ms, -mx, absolute paths) are
rewritten in place, spelled to keep their meaning.
"""

import os

from seamless.run import shell
from seamless.run.argtyping import ArgtypeError, Input, classify, find_executable, map_names

FORBIDDEN_PINS = ("code", "bashcode", "pins_")
STDOUT_OPS = (">", ">>", ">|", "&>", "&>>")
WRITE_OPS = STDOUT_OPS + (">&",)  # >& FILE is &> FILE


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
            extra_inputs=(), captures=()) -> Analysis:
    try:
        pipelines = shell.parse(command)
    except shell.ShellSyntaxError as exc:
        raise ArgtypeError(f"cannot parse the command: {exc}") from None
    if not pipelines:
        raise ArgtypeError("no command given")
    if not 1 <= primary <= len(pipelines):
        raise ArgtypeError(f"--primary {primary}: the command has {len(pipelines)} part(s)")
    workdir = os.path.abspath(os.path.expanduser(workdir))

    # what the job writes as a result is never an input: its copy here is the previous result
    results = {os.path.normpath(server) for server, _ in map(parse_capture, captures) if server != "STDOUT"}
    written = set()  # what the commands so far redirect their output to
    strict, lenient = [], []  # (input, the word naming it)
    unresolved = []  # (word, its argtyping error or None): maybe inside a directory input
    programs = set()  # words in command position
    argno = 0
    for program, words, redirects, is_primary, fallback in _steps(pipelines, _argtyped(pipelines[primary - 1])):
        for word in words:
            argno += is_primary
            if (fallback and not is_primary) or _under(word, written) or _under(word, results):
                continue
            try:
                found = _examine(word, word is program, argno, is_primary, rule1,
                                 rule2 and not _is_read(word, redirects))
            except ArgtypeError as exc:
                if not is_primary:
                    raise
                found, error = None, exc
            else:
                error = None
            if found is None:
                unresolved.append((word, error))
                continue
            (strict if is_primary else lenient).append((found, word))
            if word is program:
                programs.add(word)
        written.update(os.path.normpath(r.target.value) for r in redirects
                       if r.op in WRITE_OPS and not r.is_dup and not r.target.has_expansion)

    inputs = []
    for found, word in strict:
        _add(inputs, found).words.append(word)
    for path in extra_inputs:
        found = classify(path, 1, rule1=False, rule2=False)
        if found is None:
            raise ArgtypeError(f"input {path!r} (-i/-I): file or directory does not exist")
        _add(inputs, found)
    for found, word in lenient:
        found.optional = True
        _add(inputs, found).words.append(word)
    map_names(inputs, mapping, workdir)
    for item in inputs:
        if item.name and (item.name in FORBIDDEN_PINS or item.name.startswith(("__", "META__"))):
            if not item.optional:
                raise ArgtypeError(f"an input may not be called {item.name!r} in the job; use -mx or another -w")
            item.name = None
    inputs = [item for item in inputs if item.name]
    covered = _covered(inputs)
    entries = _entries(unresolved, inputs)

    analysis = Analysis(command, [item for item in inputs if item not in covered])
    analysis.command = _rewrite(command, inputs + entries, analysis, programs)
    analysis.redirect = _redirect_target(pipelines[-1].commands[-1])
    return analysis


def _argtyped(pipeline):
    """The commands of the primary pipeline that are argtyped, as upstream: all of them
    (also inside compound commands), but of a compound command on its own only its
    first command (and its own redirections)."""
    if len(pipeline.commands) > 1:
        return set(shell.commands([pipeline]))
    return {pipeline.commands[0], next(shell.simple_commands([pipeline]), None)}


def _steps(pipelines, argtyped, fallback=False):
    """In the order they run: (the word in command position or None, the words read,
    the redirections, whether argtyped, whether a fallback after ||). A compound
    command's redirections come first: they are set up before its body runs."""
    for pipeline in pipelines:
        after_or = fallback or pipeline.after == "||"
        for cmd in pipeline.commands:
            for inner in cmd.substitutions:
                yield from _steps(inner, (), after_or)
            reads = [r.target for r in cmd.redirects if r.op == "<"]
            if cmd.kind is None:
                yield cmd.words[0] if cmd.words else None, cmd.words + reads, cmd.redirects, cmd in argtyped, after_or
                continue
            yield None, reads, cmd.redirects, cmd in argtyped, after_or
            yield None, cmd.words, (), False, after_or  # a for list, a case word: never argtyped
            yield from _steps(cmd.body, argtyped, after_or)


def _is_read(word, redirects):
    """The word is the file of an input redirection: a file, whatever its name."""
    return any(r.target is word for r in redirects)


def _examine(word, program, argno, strict, rule1, rule2):
    """The input a word names, or None. Outside the primary pipeline no rule applies."""
    if program:
        script = find_executable(word.value)
        if script is not None:
            return Input(script, "file", executable=True)
        if "/" not in word.value:
            return None  # a program on PATH (or a shell builtin): a plain value
    if strict:
        return classify(word.value, argno, rule1, rule2, word.has_expansion)
    return classify(word.value, argno, False, False, word.has_expansion, rule3=False)


def _under(word, paths):
    """The word names one of `paths` (normalized, as written) or something inside one."""
    if not paths or word.has_expansion:
        return False
    path = os.path.normpath(word.value)
    return any(path == p or path.startswith(p + "/") for p in paths)


def _add(inputs, found):
    for item in inputs:
        if item.source == found.source:
            item.executable = item.executable or found.executable
            return item
    inputs.append(found)
    return found


def _entries(unresolved, inputs):
    """Words that are no input but name something inside a directory input (one given by
    its sidecars too: per its index), named as in the job: the directory brings them
    along. The first argtyping error of any other word is raised."""
    directories = [item for item in inputs if item.kind == "directory"]
    entries = {}
    for word, error in unresolved:
        path = None if word.has_expansion or not directories else os.path.abspath(os.path.expanduser(word.value))
        d = path and next((d for d in directories if _entry(path, d)), None)
        if not d:
            if error is not None:
                raise error
            continue
        if path not in entries:
            entries[path] = Input(path, _entry(path, d))
            entries[path].name = f"{d.name}/{os.path.relpath(path, d.source)}"
        entries[path].words.append(word)
    return list(entries.values())


def _entry(path, directory):
    """What `path` is inside directory input `directory` ("file" or "directory"), or None.
    A directory that exists is looked at; one given by its sidecars, its index."""
    if not path.startswith(directory.source + "/"):
        return None
    rel = path[len(directory.source) + 1:]
    if os.path.isdir(directory.source):
        return "directory" if os.path.isdir(path) else "file" if os.path.exists(path) else None
    index = directory.index or {}
    if rel in index:
        return "file"
    return "directory" if any(key.startswith(rel + "/") for key in index) else None


def _covered(inputs):
    """Inputs inside a directory input, renamed to their path in it: the directory brings
    them along. For files always (two pins for one file: upstream fails there); for
    directories that exist, only outside the primary pipeline (upstream keeps both). Not
    executables (copied to be made executable)."""
    directories = sorted((i for i in inputs if i.kind == "directory"), key=lambda i: len(i.source))
    covered = []
    for item in inputs:
        if item.executable or (item.kind == "directory" and not item.optional and os.path.isdir(item.source)):
            continue
        for d in directories:
            if item is not d and _entry(item.source, d) == item.kind:
                item.name = f"{d.name}/{os.path.relpath(item.source, d.source)}"
                covered.append(item)
                break
    return covered


def _quote(text):
    """`text` as one shell word: as it is if the shell reads it so, else single-quoted."""
    if any(c in _SPECIAL or c < " " or c == "\x7f" for c in text) or text[:1] in "~#":
        return "'" + text.replace("'", "'\"'\"'") + "'"
    return text


_SPECIAL = set(" \t\n'\"\\$`;&|<>()*?[{")


def _spell(name, program):
    """How to write job path `name` so that the shell reads that path: a leading - would
    be an option, and a program named like a builtin or keyword, or like an assignment,
    would not be looked up on PATH; ./ in front keeps them paths."""
    if name.startswith("-") or (program and "/" not in name and (
            name in shell.BUILTINS or name in shell.RESERVED or "=" in name or _quote(name) != name)):
        name = "./" + name
    return _quote(name)


def _rewrite(command, inputs, analysis, programs):
    edits = []
    for item in inputs:
        bare = False
        for word in item.words:
            text = word.value if word.value == item.name else _spell(item.name, word in programs)
            if text != word.value:
                edits.append((word.start, word.end, text))
            bare = bare or (word in programs and "/" not in text)
        if item.executable:
            analysis.executables.append(item.name)
            analysis.path_export = analysis.path_export or bare
    for start, end, text in sorted(edits, reverse=True):
        command = command[:start] + text + command[end:]
    return command


def _redirect_target(cmd):
    """The relative file that the last command writes its output to, if any: its own
    redirection, or for a compound command without one, that of its last command.

    As upstream, any output redirection counts except stderr's (2>); unlike upstream,
    fd duplications (>&2, 2>&1), /dev/..., absolute and ../ paths are not results.
    """
    target = None
    for redirect in cmd.redirects:
        if redirect.op in STDOUT_OPS and redirect.fd != 2 and not redirect.is_dup:
            target = redirect.target
    if target is None:
        return _redirect_target(cmd.body[-1].commands[-1]) if cmd.body else None
    if target.has_expansion:
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
        add(*parse_capture(capture))
    redirect = analysis.redirect
    if redirect and not any(os.path.normpath(redirect).startswith(os.path.normpath(t.server) + "/")
                            for t in targets):  # inside a captured directory: it comes along
        add(redirect, redirect)
    return targets


def parse_capture(capture):
    """(job path, local path) of a -cp X / A:B / :B; the job path of stdout is STDOUT."""
    server, sep, local = capture.partition(":")
    if sep and not server:
        if not local:
            raise ArgtypeError(f"--capture {capture!r}: empty local name")
        return "STDOUT", local
    if server != "/" and server.endswith("/"):
        server = server.rstrip("/")  # upstream would nest res/ inside RESULT/res
    norm = os.path.normpath(server)
    if os.path.isabs(norm) or norm == ".." or norm.startswith("../") or norm == ".":
        raise ArgtypeError(f"--capture {capture!r}: the result must be a path inside the job directory")
    local = local if sep else server
    if not local:
        raise ArgtypeError(f"--capture {capture!r}: empty local name")
    return server, local


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
        lines.append(f"mv {_quote('./' + server if server.startswith('-') else server)} {_quote(d)}")
    return "\n".join(lines) + "\n"


def _single_quoted(name):
    return "'" + name.replace("'", "'\\''") + "'"
