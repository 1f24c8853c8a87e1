"""The command-line parser: what seamless-run sees as commands, words and lists."""

import pytest

from seamless.run import shell


def commands(text):
    """[[words of each command] per pipeline], words as the shell reads them."""
    return [[[w.value for w in cmd.words] for cmd in p.commands] for p in shell.parse(text)]


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
    assert group.group_redirect and group.redirects[0].target.value == "out.txt"
    with pytest.raises(shell.ShellSyntaxError):
        shell.parse("cat a.txt; }")
