"""The command-line parser: what seamless-run sees as commands, words and lists."""

import pytest

from seamless.run import shell


def commands(text):
    """[[words of each simple command, also inside compound commands] per pipeline],
    words as the shell reads them."""
    return [[[w.value for w in cmd.words] for cmd in shell.simple_commands([p])] for p in shell.parse(text)]


def all_words(pipelines):
    for p in pipelines:
        for cmd in p.commands:
            yield from cmd.words
            yield from (r.target for r in cmd.redirects)
            for inner in cmd.substitutions:
                yield from all_words(inner)


def test_list_operators_are_kept():
    pipelines = shell.parse("a; b && c || d & e\nf | g")
    assert [p.after for p in pipelines] == [None, ";", "&&", "||", "&", "\n"]
    assert [len(p.commands) for p in pipelines] == [1, 1, 1, 1, 1, 2]


@pytest.mark.parametrize("text, inner", [
    ("echo $(cat a.txt) x", [["cat", "a.txt"]]),
    ('X="$(sort a.txt | uniq)"', [["sort", "a.txt"], ["uniq"]]),
    ("echo `cat a.txt`", [["cat", "a.txt"]]),
    ("diff <(sort a.txt) >(cat b.txt)", [["sort", "a.txt"], ["cat", "b.txt"]]),
    ("echo $(echo $(cat a.txt))", [["echo", "$(cat a.txt)"], ["cat", "a.txt"]]),
])
def test_substitutions_are_parsed_with_positions_in_the_whole_text(text, inner):
    pipelines = shell.parse(text)
    assert [[w.value for w in cmd.words] for cmd in _subcommands(pipelines)] == inner
    for word in all_words(pipelines):
        assert text[word.start:word.end] == word.raw_text


def _subcommands(pipelines):
    for p in pipelines:
        for cmd in p.commands:
            for inner in cmd.substitutions:
                for q in inner:
                    for sub in q.commands:
                        yield sub
                yield from _subcommands(inner)


@pytest.mark.parametrize("text", ["echo $((1 + 2)) ${X:-a.txt} $[3]", "echo $(cat <)"])
def test_no_command_in_arithmetic_parameters_or_what_cannot_be_parsed(text):
    assert not list(_subcommands(shell.parse(text)))


def test_here_documents_are_text():
    text = "cat <<EOF; cat <<-'END' a.txt\nb.txt\n$(x)\nEOF\n\t\tc.txt\n\tEND\nwc -l b.txt\n"
    assert commands(text) == [[["cat"]], [["cat", "a.txt"]], [["wc", "-l", "b.txt"]]]
    assert commands("cat <<EOF\nnever ends") == [[["cat"]]]


def test_groups_and_functions():
    assert commands("{ cat a.txt; cat b.txt; } | wc -l") == [[["cat", "a.txt"], ["cat", "b.txt"], ["wc", "-l"]]]
    assert commands("f() { cat a.txt; }; function g { cat b.txt; }; f") == [
        [["cat", "a.txt"]], [["cat", "b.txt"]], [["f"]]]
    assert commands("echo {a,b} }") == [[["echo", "{a,b}", "}"]]]
    group = shell.parse("{ cat a.txt; } > out.txt")[0].commands[-1]
    assert group.kind == "group" and group.redirects[0].target.value == "out.txt"
    with pytest.raises(shell.ShellSyntaxError):
        shell.parse("cat a.txt; }")


@pytest.mark.parametrize("text, kind", [
    ("while read l; do echo \"$l\"; done < in.txt", "while"),
    ("until false; do cat; done < in.txt", "until"),
    ("for i in 1; do cat; done < in.txt", "for"),
    ("{ cat; } < in.txt", "group"),
    ("( cat ) < in.txt", "subshell"),
    ("if true; then cat; fi < in.txt", "if"),
    ("case x in x) cat;; esac < in.txt", "case"),
])
def test_a_compound_command_keeps_its_redirections(text, kind):
    """The redirection applies to the whole compound command, not to a command of its own."""
    (pipeline,) = shell.parse(text)
    (compound,) = pipeline.commands
    assert compound.kind == kind and [(r.op, r.target.value) for r in compound.redirects] == [("<", "in.txt")]
    assert all(not cmd.redirects for cmd in shell.simple_commands([pipeline]))


def test_a_command_may_be_only_a_redirection():
    (pipeline,) = shell.parse("< in.txt")
    (cmd,) = pipeline.commands
    assert cmd.kind is None and cmd.words == [] and cmd.redirects[0].target.value == "in.txt"


@pytest.mark.parametrize("text, inner", [
    ("case x in x) cat in2.txt;; esac", [["cat", "in2.txt"]]),
    ("case $1 in (a|b) cat a.txt ;& c | d ) cat c.txt;;& *) ;; esac", [["cat", "a.txt"], ["cat", "c.txt"]]),
    ("case x in\n  x)\n    cat a.txt\n    ;;\n  y) cat b.txt\nesac", [["cat", "a.txt"], ["cat", "b.txt"]]),
    ("case x in esac", []),
    ("case x in x) case y in y) cat a.txt;; esac;; esac", [["cat", "a.txt"]]),
    ("case \"$f\" in *.txt) cat \"$f\";; esac | sort", [["cat", "$f"], ["sort"]]),
])
def test_case(text, inner):
    """Patterns (with |, an optional leading '(') are not commands; the clauses are, up
    to ;; ;& ;;& or esac."""
    (pipeline,) = shell.parse(text)
    assert pipeline.commands[0].kind == "case"
    assert [[w.value for w in cmd.words] for cmd in shell.simple_commands([pipeline])] == inner


@pytest.mark.parametrize("text", ["case x in x) cat a.txt;;", "case x x) a;; esac", "case x in x cat;; esac",
                                  "a ;; b", "if true; then a; done", "for i in 1; do a; fi"])
def test_unbalanced_compound_commands_are_syntax_errors(text):
    with pytest.raises(shell.ShellSyntaxError):
        shell.parse(text)


def test_for_select_and_cond_words_are_no_commands():
    """`for NAME in WORDS`: NAME is no word, WORDS are the compound's own (no program
    among them); the same for select, the subject of case and the words of [[ ]]."""
    (pipeline,) = shell.parse("for f in *.txt a.txt; do cat $f; done")
    loop = pipeline.commands[0]
    assert [w.value for w in loop.words] == ["*.txt", "a.txt"]
    assert commands("for f in *.txt a.txt; do cat $f; done") == [[["cat", "$f"]]]
    assert commands("for f\ndo cat $f; done; for g; do :; done") == [[["cat", "$f"]], [[":"]]]
    assert commands("for ((i = 0; i < 2; i++)); do echo $i; done") == [[["echo", "$i"]]]
    assert commands("(( n > 2 )) && echo big") == [[], [["echo", "big"]]]
    assert not shell.parse("(( n > 2 ))")[0].commands[0].redirects
    (pipeline,) = shell.parse("[[ -f a.txt && $x < b ]] || cat a.txt")[:1]
    assert pipeline.commands[0].kind == "cond" and [w.value for w in pipeline.commands[0].words] == [
        "-f", "a.txt", "$x", "b"]
    assert commands("select x in a b; do echo $x; break; done") == [[["echo", "$x"], ["break"]]]
    assert [w.value for w in shell.parse("case a.txt in x) ;; esac")[0].commands[0].words] == ["a.txt"]


def test_lists_inside_compound_commands_keep_their_operators():
    """A pipeline inside a compound command knows the operator before it (|| makes it a
    fallback), as at the top level."""
    (pipeline,) = shell.parse("if a; then b || c; else d; fi")
    body = pipeline.commands[0].body
    assert [[w.value for c in p.commands for w in c.words] for p in body] == [["a"], ["b"], ["c"], ["d"]]
    assert [p.after for p in body][2] == "||"
