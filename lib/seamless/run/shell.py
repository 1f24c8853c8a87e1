"""Just enough of the bash grammar to find a command line's words, with the standard library.

seamless-run needs, from a command string: the words of each simple command (quote-
removed, with their positions so they can be rewritten), the redirections (a `> out.txt`
target becomes a result), and how commands group into pipelines (`|`) and lists
(`;`, `&&`, `||`, `&`, newlines). Quotes, backslashes, `$(...)`, `${...}`, backticks,
comments, here-strings, here-documents and fd duplications (`2>&1`, `>&2`) are
understood; nothing is expanded or executed. Compound commands ({ }, ( ), if, while,
until, for, select, case, function definitions, [[ ]], (( ))) are parsed as such: a
command of their own, with their body (a list of pipelines), their own words (the list
of for/select, the subject of case, the words of [[ ]]) and the redirections that apply
to all of them. The commands inside `$(...)`, backticks and `<(...)`/`>(...)` are parsed
too, as the `substitutions` of the command whose word holds them.
"""

OPERATORS = ("&&", "||", ";;&", ";;", ";&", "|&", "|", "&", ";", "(", ")")
REDIRECT_OPS = ("&>>", "&>", ">>", ">|", ">&", "<<<", "<<-", "<<", "<&", "<>", ">", "<")
SEPARATORS = (";", "&", "\n")
CASE_ENDS = (";;", ";&", ";;&")
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
    """A simple command (kind None): its words (leading assignments kept apart) and
    redirections. Or a compound command (kind "group", "subshell", "if", "while",
    "until", "for", "select", "case", "function", "cond" for [[ ]], "arith" for (( ))):
    its own words (never a program), its body, and the redirections of all of it.
    Both: the pipelines of the command substitutions in their words (they run first)."""

    def __init__(self, kind=None):
        self.kind = kind
        self.words = []
        self.assignments = []
        self.redirects = []
        self.substitutions = []
        self.body = []  # the pipelines inside a compound command


class Pipeline:
    """Commands joined by |; `after` is the list operator before it (None for the first
    of a list; in a compound command, the keyword that starts its part of the body)."""

    def __init__(self, after=None):
        self.commands = []
        self.after = after


def parse(text: str, start=0, end=None) -> list:
    """Parse a command string (or its span [start, end)) into its list of pipelines;
    positions are always those in `text`."""
    parser = _Parser(text, _tokenize(text, start, len(text) if end is None else end))
    pipelines = parser.list()
    if parser.peek() is not None:
        raise parser.unexpected()
    return pipelines


def commands(pipelines):
    """Every command of a list, compound commands before the commands inside them, in
    text order (not those of substitutions)."""
    for pipeline in pipelines:
        for cmd in pipeline.commands:
            yield cmd
            yield from commands(cmd.body)


def simple_commands(pipelines):
    return (cmd for cmd in commands(pipelines) if cmd.kind is None)


class _Parser:
    """Recursive descent over the tokens, bash's grammar where it decides which words
    are commands."""

    def __init__(self, text, tokens):
        self.text, self.tokens, self.i = text, tokens, 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def keyword(self, token=None):
        """The reserved word at the next token (bash recognizes them where a command starts)."""
        token = token or self.peek()
        if token and token[0] == "word" and not token[1].quoted and token[1].value in RESERVED:
            return token[1].value
        return None

    def is_op(self, *ops):
        token = self.peek()
        return token is not None and token[0] == "op" and token[1] in ops

    def close(self, closer, message):
        """Past the keyword (or the ')') that `closer` is, else the syntax error `message`."""
        if not (self.is_op(")") if closer == ")" else self.keyword() == closer):
            raise ShellSyntaxError(f"syntax error: {message}")
        self.i += 1

    def skip_newlines(self):
        while self.is_op("\n"):
            self.i += 1

    def unexpected(self):
        token = self.peek()
        if token is None:
            return ShellSyntaxError("syntax error: unexpected end of the command")
        text = token[1].raw_text if token[0] == "word" else token[1]
        if text in (")", "}"):
            return ShellSyntaxError(f"syntax error: unmatched '{text}'")
        return ShellSyntaxError("syntax error near " + ("a newline" if text == "\n" else repr(text)))

    def ends(self, closers):
        token = self.peek()
        return token is None or (token[1] in closers if token[0] == "op" else self.keyword(token) in closers)

    def list(self, closers=(), after=None):
        """Pipelines up to one of `closers` (keywords or operators, left for the caller)."""
        pipelines = []
        while not self.ends(closers):
            if self.is_op(*SEPARATORS):
                after = after or (self.peek()[1] if pipelines else None)
                self.i += 1
                continue
            pipelines.append(self.pipeline(after))
            after = None
            if self.is_op("&&", "||"):
                after = self.peek()[1]
                self.i += 1
                self.skip_newlines()
                if self.ends(closers):
                    raise ShellSyntaxError(f"syntax error: a command must follow '{after}'")
            elif not self.ends(closers) and not self.is_op(*SEPARATORS):
                raise self.unexpected()
        return pipelines

    def pipeline(self, after):
        pipeline = Pipeline(after)
        while self.keyword() in ("!", "time"):
            self.i += 1
            if self.tokens[self.i - 1][1].value == "time" and self.peek() and self.peek()[0] == "word" \
                    and self.peek()[1].value == "-p":
                self.i += 1  # time -p
        while True:
            cmd = self.command()
            if cmd is None:
                raise self.unexpected()
            pipeline.commands.append(cmd)
            if not self.is_op("|", "|&"):
                return pipeline
            self.i += 1
            self.skip_newlines()

    def word(self, cmd):
        """The next token, a word; the commands of its substitutions go to `cmd`."""
        token = self.peek()
        if token is None or token[0] != "word":
            raise self.unexpected()
        self.i += 1
        for span in token[1].substitutions:
            try:
                cmd.substitutions.append(parse(self.text, *span))
            except ShellSyntaxError:
                pass  # kept verbatim, as before: only its files go unseen
        return token[1]

    def redirections(self, cmd):
        while self.peek() and self.peek()[0] == "redirect":
            self.redirect(cmd)
        return cmd

    def redirect(self, cmd):
        _, op, fd = self.peek()[:3]
        self.i += 1
        if self.peek() is None or self.peek()[0] != "word":
            raise ShellSyntaxError(f"syntax error: a file name must follow '{op}'")
        cmd.redirects.append(Redirect(op, fd, self.word(cmd)))

    def command(self):
        """The next command, or None if none starts here."""
        token = self.peek()
        if token is None:
            return None
        if token[0] == "arith":
            self.i += 1
            return self.redirections(Command("arith"))
        if token[0] == "op":
            if token[1] != "(":
                return None
            self.i += 1
            return self.compound(Command("subshell"), self.list((")",)), ")", "unmatched '('")
        keyword = self.keyword()
        if keyword is None:
            return self.simple()
        self.i += 1
        if keyword == "{":
            return self.compound(Command("group"), self.list(("}",)), "}", "unmatched '{'")
        if keyword == "if":
            return self.if_()
        if keyword in ("while", "until"):
            body = self.list(("do",))
            self.close("do", f"'do' expected in {keyword}")
            return self.compound(Command(keyword), body + self.list(("done",), "do"), "done",
                                 f"'done' expected to end {keyword}")
        if keyword in ("for", "select"):
            return self.for_(Command(keyword))
        if keyword == "case":
            return self.case()
        if keyword == "function":
            self.word(Command())  # the name: no command
            if self.is_op("("):
                self.i += 1
                self.close_paren()
            return self.function()
        if keyword == "[[":
            return self.cond()
        if keyword == "coproc":
            following = self.tokens[self.i + 1:self.i + 2]
            if self.keyword() is None and following and (following[0][1] == "(" or self.keyword(following[0]) == "{"):
                self.i += 1  # coproc NAME { ...; }: the name is no command
            return self.command()
        self.i -= 1
        return None  # a keyword that ends something: not a command

    def compound(self, cmd, body, closer, message):
        """The end of compound command `cmd` and its redirections."""
        self.close(closer, message)
        cmd.body = body
        return self.redirections(cmd)

    def if_(self):
        body = self.list(("then",))
        self.close("then", "'then' expected in if")
        while True:
            body += self.list(("elif", "else", "fi"), "then")
            if self.keyword() != "elif":
                break
            self.i += 1
            body += self.list(("then",), "elif")
            self.close("then", "'then' expected after elif")
        if self.keyword() == "else":
            self.i += 1
            body += self.list(("fi",), "else")
        return self.compound(Command("if"), body, "fi", "'fi' expected to end if")

    def for_(self, cmd):
        """for NAME [in WORDS]; do LIST; done (also with { }), or for ((...)); select alike."""
        if self.peek() and self.peek()[0] == "arith" and cmd.kind == "for":
            self.i += 1
        else:
            self.word(cmd)  # the variable's name: no word of a command
            self.skip_newlines()
            if self.keyword() == "in":
                self.i += 1
                while self.peek() and self.peek()[0] == "word":
                    cmd.words.append(self.word(cmd))
                if not self.is_op(";", "\n"):
                    raise ShellSyntaxError(f"syntax error: ';' or a newline expected after the words of {cmd.kind}")
        if self.is_op(";", "\n"):
            self.i += 1
        self.skip_newlines()
        if self.keyword() == "{":
            self.i += 1
            return self.compound(cmd, self.list(("}",), "{"), "}", "unmatched '{'")
        self.close("do", f"'do' expected in {cmd.kind}")
        return self.compound(cmd, self.list(("done",), "do"), "done", f"'done' expected to end {cmd.kind}")

    def case(self):
        """case WORD in [(]PATTERN[|PATTERN...]) LIST ;; (or ;& ;;&) ... esac"""
        cmd = Command("case")
        cmd.words.append(self.word(cmd))
        self.skip_newlines()
        self.close("in", "'in' expected after the word of case")
        body = []
        while True:
            self.skip_newlines()
            if self.keyword() == "esac" or self.peek() is None:
                return self.compound(cmd, body, "esac", "'esac' expected to end case")
            if self.is_op("("):
                self.i += 1
            self.word(cmd)  # a pattern: not a file of the script
            while self.is_op("|"):
                self.i += 1
                self.word(cmd)
            if not self.is_op(")"):
                raise ShellSyntaxError("syntax error: ')' expected after a pattern of case")
            self.i += 1
            body += self.list(CASE_ENDS + ("esac",), ")")
            if self.is_op(*CASE_ENDS):
                self.i += 1

    def function(self):
        """The body of a function definition: a compound command; the function's own
        commands run only when it is called, but they are the script's."""
        self.skip_newlines()
        body = self.command()
        if body is None or body.kind in (None, "function"):
            raise ShellSyntaxError("syntax error: a function body must be a compound command ({ ...; })")
        cmd = Command("function")
        pipeline = Pipeline()
        pipeline.commands.append(body)
        cmd.body = [pipeline]
        return cmd

    def close_paren(self):
        if not self.is_op(")"):
            raise ShellSyntaxError("syntax error: '()' expected in a function definition")
        self.i += 1

    def cond(self):
        """[[ ... ]]: its words (&&, ||, <, > and parentheses in it are operators)."""
        cmd = Command("cond")
        while self.keyword() != "]]":
            token = self.peek()
            if token is None:
                raise ShellSyntaxError("syntax error: unmatched '[['")
            if token[0] == "word":
                cmd.words.append(self.word(cmd))
            else:
                self.i += 1
        self.i += 1
        return self.redirections(cmd)

    def simple(self):
        cmd = Command()
        while self.peek() is not None:
            kind, value = self.peek()[:2]
            if kind == "redirect":
                self.redirect(cmd)
            elif kind == "word":
                word = self.word(cmd)
                if cmd.words or not _is_assignment(word.raw_text):
                    cmd.words.append(word)
                    continue
                cmd.assignments.append(word)
                if word.raw_text.endswith("=") and self.is_op("(") and self.peek()[3] == word.end:
                    self.i += 1  # NAME=(...): an array's elements are values, as in NAME=value
                    while not self.is_op(")"):
                        if self.is_op("\n"):
                            self.i += 1
                        else:
                            self.word(cmd)
                    self.i += 1
            elif kind == "op" and value == "(" and len(cmd.words) == 1 and not (cmd.assignments or cmd.redirects):
                self.i += 1  # NAME () BODY: a function definition; the name is no command
                self.close_paren()
                return self.function()
            else:
                break
        if not (cmd.words or cmd.assignments or cmd.redirects):
            return None
        return cmd


def _is_assignment(raw: str) -> bool:
    name, sep, _ = raw.partition("=")
    return bool(sep) and name.replace("_", "a").isalnum() and not name[0].isdigit() and name.isascii()


def _tokenize(text: str, i: int, n: int):
    """The tokens (kind, value, fd, position), kind 'word' (a Word), 'op', 'redirect' or
    'arith' (a whole ((...)), whose < and > are no redirections)."""
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
            tokens.append(("op", "\n", None, i))
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
            tokens.append(("redirect", op, int(text[i:j]), i))
            i = j + len(op)
            continue
        op = "" if text.startswith(("<(", ">("), i) else _match(text, i, REDIRECT_OPS)
        if op:
            tokens.append(("redirect", op, None, i))
            i += len(op)
            continue
        end = _arith_end(text, i, n)
        if end:
            tokens.append(("arith", text[i:end], None, i))
            i = end
            continue
        op = _match(text, i, OPERATORS)
        if op:
            tokens.append(("op", op, None, i))
            i += len(op)
            continue
        start = i
        word, i = _read_word(text, i, n)
        if tokens and tokens[-1][0] == "redirect" and tokens[-1][1] in ("<<", "<<-"):
            heredocs.append((word.value, tokens[-1][1] == "<<-"))
        tokens.append(("word", word, None, start))
    return tokens


def _arith_end(text, i, n):
    """The end of an arithmetic ((...)) starting at i, or 0 (then it is two parentheses,
    as bash decides too: `((a); (b))` is a subshell in a subshell)."""
    if not text.startswith("((", i):
        return 0
    depth = 0
    for j in range(i + 2, n):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            if depth == 0:
                return j + 2 if text.startswith("))", j) else 0
            depth -= 1
    return 0


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
