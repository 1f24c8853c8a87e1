"""Just enough of the bash grammar to find a command line's words, with the standard library.

seamless-run needs, from a command string: the words of each simple command (quote-
removed, with their positions so they can be rewritten), the redirections (a `> out.txt`
target becomes a result), and how commands group into pipelines (`|`) and lists
(`;`, `&&`, `||`, `&`, newlines). Quotes, backslashes, `$(...)`, `${...}`, backticks,
comments, here-strings, here-documents and fd duplications (`2>&1`, `>&2`) are
understood; nothing is expanded or executed. Compound commands are flattened: `( )` and
`{ }` groups belong to the pipeline they are in, and keywords only delimit. The commands
inside `$(...)`, backticks and `<(...)`/`>(...)` are parsed too, as the `substitutions`
of the command whose word holds them.
"""

OPERATORS = ("&&", "||", ";;", "|&", "|", "&", ";", "(", ")")
REDIRECT_OPS = ("&>>", "&>", ">>", ">|", ">&", "<<<", "<<-", "<<", "<&", "<>", ">", "<")
RESERVED = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "in",
            "case", "esac", "select", "function", "{", "}", "!", "time", "[[", "]]", "coproc"}
# bash's builtins: a command word with one of these names never runs a file from PATH
BUILTINS = {".", ":", "[", "alias", "bg", "bind", "break", "builtin", "caller", "cd", "command",
            "compgen", "complete", "compopt", "continue", "declare", "dirs", "disown", "echo",
            "enable", "eval", "exec", "exit", "export", "false", "fc", "fg", "getopts", "hash",
            "help", "history", "jobs", "kill", "let", "local", "logout", "mapfile", "popd",
            "printf", "pushd", "pwd", "read", "readarray", "readonly", "return", "set", "shift",
            "shopt", "source", "suspend", "test", "times", "trap", "true", "type", "typeset",
            "ulimit", "umask", "unalias", "unset", "wait"}


class ShellSyntaxError(ValueError):
    pass


class Word:
    """A word: its value with quotes and backslashes removed (nothing expanded), its span
    [start, end) in the command string and the raw text there; whether it contains
    $..., backticks or glob characters, and whether it was quoted."""

    __slots__ = ("value", "start", "end", "raw_text", "has_expansion", "quoted", "substitutions")

    def __init__(self, value, start, end, raw_text="", has_expansion=False, quoted=False, substitutions=()):
        self.value, self.start, self.end = value, start, end
        self.raw_text, self.has_expansion, self.quoted = raw_text, has_expansion, quoted
        self.substitutions = substitutions  # [start, end) of each $(...) `...` <(...) body


class Redirect:
    """`op` as written without its fd number (> >> < &> >& <& ...), the explicit `fd`
    before it (2> gives 2) or None, and the `target` word: a file, or an fd for >& <&."""

    __slots__ = ("op", "fd", "target")

    def __init__(self, op, fd, target):
        self.op, self.fd, self.target = op, fd, target

    @property
    def is_dup(self):
        """An fd duplication (2>&1, >&2, <&0): no file involved."""
        return self.op in (">&", "<&") and (self.target.value.isdigit() or self.target.value == "-")



class Command:
    """A simple command: its words (leading assignments kept apart) and redirections, and
    the pipelines of the command substitutions in them (they run before it)."""

    def __init__(self):
        self.words = []
        self.assignments = []
        self.redirects = []
        self.substitutions = []
        self.group_redirect = False  # the redirects follow a ( ... ) group ending here


class Pipeline:
    """Commands joined by |; `after` is the list operator before it (None for the first)."""

    def __init__(self, after=None):
        self.commands = []
        self.after = after


def parse(text: str, start=0, end=None) -> list:
    """Parse a command string (or its span [start, end)) into a list of pipelines (the
    top-level list flattened); positions are always those in `text`."""
    tokens = _tokenize(text, start, len(text) if end is None else end)
    pipelines = [Pipeline()]
    current = Command()
    depth = 0
    expect_target = None  # a redirect operator waiting for its word
    function_name = function_parens = False

    def finish_command():
        nonlocal current
        if current.words or current.assignments or current.redirects:
            pipelines[-1].commands.append(current)
        current = Command()

    def finish_pipeline(operator):
        finish_command()
        if pipelines[-1].commands:
            pipelines.append(Pipeline(operator))

    def open_group():
        nonlocal depth
        finish_command()
        depth += 1

    def close_group(closer):
        nonlocal depth
        depth -= 1
        if depth < 0:
            raise ShellSyntaxError(f"syntax error: unmatched '{closer}'")
        finish_command()
        current.group_redirect = True  # redirects right after a group apply to the whole group

    for kind, value, fd in tokens:
        if kind == "word":
            for span in value.substitutions:
                try:
                    current.substitutions.append(parse(text, *span))
                except ShellSyntaxError:
                    pass  # kept verbatim, as before: only its files go unseen
        if expect_target is not None:
            if kind != "word":
                raise ShellSyntaxError(f"syntax error: a file name must follow '{expect_target[0]}'")
            op, opfd = expect_target
            current.redirects.append(Redirect(op, opfd, value))
            expect_target = None
            continue
        if kind == "word":
            if not current.words and _is_assignment(value.raw_text):
                current.assignments.append(value)
            elif not current.words and value.value in RESERVED and not value.quoted:
                if value.value in "{}":  # a { ...; } group, like ( ... )
                    open_group() if value.value == "{" else close_group("}")
                function_name = value.value == "function"
                continue  # keywords of compound commands: not arguments
            elif function_name:
                function_name = False  # function NAME { ...; }: the name is no command
            else:
                current.words.append(value)
        elif kind == "redirect":
            expect_target = (value, fd)
        elif value == "(":
            if current.words:  # NAME() { ...; }: a function definition, not a command
                current.words.clear()
                function_parens = True
                continue
            open_group()
        elif value == ")":
            if function_parens:
                function_parens = False
                continue
            close_group(")")
        elif value in ("|", "|&"):
            finish_command()
        else:  # ; & && || ;; newline
            if depth == 0:
                finish_pipeline(value)
            else:
                finish_command()
    if expect_target is not None:
        raise ShellSyntaxError(f"syntax error: a file name must follow '{expect_target[0]}'")
    if depth != 0:
        raise ShellSyntaxError("syntax error: unmatched '(' or '{'")
    finish_command()
    if current.redirects and pipelines[-1].commands:
        pipelines[-1].commands[-1].redirects.extend(current.redirects)
    return [p for p in pipelines if p.commands]


def _is_assignment(raw: str) -> bool:
    name, sep, _ = raw.partition("=")
    return bool(sep) and name.replace("_", "a").isalnum() and not name[0].isdigit() and name.isascii()


def _tokenize(text: str, i: int, n: int):
    """Yield (kind, value, fd) with kind 'word' (a Word), 'op' or 'redirect'."""
    tokens = []
    heredocs = []  # (delimiter, strip tabs) of here-documents whose body starts at the next line
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
            continue
        if c == "\\" and text.startswith("\\\n", i):
            i += 2  # line continuation
            continue
        if c == "\n":
            tokens.append(("op", "\n", None))
            i = _skip_heredocs(text, i + 1, n, heredocs)
            continue
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        # an fd number glued to a redirect operator: 2>file, 2>&1
        j = i
        while j < n and text[j].isdigit():
            j += 1
        if j > i and j < n and text[j] in "<>":
            op = _match(text, j, REDIRECT_OPS)
            tokens.append(("redirect", op, int(text[i:j])))
            i = j + len(op)
            continue
        op = "" if text.startswith(("<(", ">("), i) else _match(text, i, REDIRECT_OPS)
        if op:
            tokens.append(("redirect", op, None))
            i += len(op)
            continue
        op = _match(text, i, OPERATORS)
        if op:
            tokens.append(("op", op, None))
            i += len(op)
            continue
        word, i = _read_word(text, i, n)
        if tokens and tokens[-1][0] == "redirect" and tokens[-1][1] in ("<<", "<<-"):
            heredocs.append((word.value, tokens[-1][1] == "<<-"))
        tokens.append(("word", word, None))
    return tokens


def _skip_heredocs(text, i, n, heredocs):
    """Past the bodies of the pending here-documents, which start at i: text, not commands."""
    while heredocs:
        delimiter, strip_tabs = heredocs.pop(0)
        while i < n:
            end = text.find("\n", i, n)
            end = n if end < 0 else end
            line = text[i:end].lstrip("\t") if strip_tabs else text[i:end]
            i = min(end + 1, n)
            if line == delimiter:
                break
    return i


def _match(text, i, choices):
    for op in choices:
        if text.startswith(op, i):
            return op
    return ""


_WORD_END = set(" \t\n;&|()<>")


def _read_word(text, i, n):
    start = i
    out = []
    expansion = False
    quoted = False
    subs = []
    while i < n and (text[i] not in _WORD_END or (text[i] in "<>" and text.startswith("(", i + 1))):
        c = text[i]
        if c == "\\":
            if i + 1 < n:
                out.append(text[i + 1])
                i += 2
            else:
                i += 1
            quoted = True
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("syntax error: unterminated single quote")
            out.append(text[i + 1:end])
            i = end + 1
            quoted = True
        elif c == '"':
            i, part, exp = _read_double_quoted(text, i + 1, subs)
            out.append(part)
            expansion = expansion or exp
            quoted = True
        elif _starts_expansion(text, i) or text.startswith(("<(", ">("), i):
            end = _expansion_end(text, i, subs)
            out.append(text[i:end])
            i = end
            expansion = True
        else:
            if c in "$*?[" or (c == "~" and i == start):
                expansion = expansion or c != "~"
            out.append(c)
            i += 1
    word = Word("".join(out), start, i, text[start:i], expansion, quoted, subs)
    return word, i


def _read_double_quoted(text, i, subs=None):
    n = len(text)
    out = []
    expansion = False
    while i < n:
        c = text[i]
        if c == '"':
            return i + 1, "".join(out), expansion
        if c == "\\" and i + 1 < n and text[i + 1] in '"\\$`\n':
            out.append(text[i + 1])
            i += 2
        elif _starts_expansion(text, i):
            end = _expansion_end(text, i, subs)
            out.append(text[i:end])
            i = end
            expansion = True
        else:
            expansion = expansion or c == "$"
            out.append(c)
            i += 1
    raise ShellSyntaxError("syntax error: unterminated double quote")


def _starts_expansion(text, i):
    """A $(...), ${...} or `...` starts at i."""
    return text[i] == "`" or text.startswith(("$(", "${"), i)


def _expansion_end(text, i, subs=None):
    """Index after the $(...), ${...}, `...` or <(...) starting at i (kept verbatim in the
    word); the span of a command's body is added to `subs`."""
    if text[i] == "`":
        end = text.find("`", i + 1)
        if end < 0:
            raise ShellSyntaxError("syntax error: unterminated backquote")
        body = (i + 1, end)
        end += 1
    else:
        end = _skip_balanced(text, i + 1)
        if text[i + 1] == "{" or text.startswith("$((", i):
            return end  # a parameter or an arithmetic expansion: no command in it
        body = (i + 2, end - 1)
    if subs is not None:
        subs.append(body)
    return end


def _skip_balanced(text, i):
    """From an opening ( or { at i, return the index after its match (quotes respected)."""
    pairs = {"(": ")", "{": "}"}
    stack = [pairs[text[i]]]
    i += 1
    n = len(text)
    while i < n and stack:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            end = text.find("'", i + 1)
            i = n if end < 0 else end + 1
            continue
        if c == '"':
            i = _read_double_quoted(text, i + 1)[0]
            continue
        if c in pairs:
            stack.append(pairs[c])
        elif c == stack[-1]:
            stack.pop()
        i += 1
    if stack:
        raise ShellSyntaxError("syntax error: unbalanced $( or ${")
    return i
