"""seamless-run finds the files of every command of a script, not only the first one's.

Upstream argtypes only the primary pipeline, so `sleep 2; cat in.txt` dies in the job
with "No such file". Here the other commands are scanned too, leniently: only words that
name an existing file or directory (or its sidecars) become inputs, no rule ever fails
there, and a file the script writes itself is never an input of a later command. The
primary pipeline keeps upstream's rules exactly (tests/test_run_identity.py), and where
upstream works the transformation stays upstream's (the live comparison at the end).
"""

import json
import os
import subprocess

import pytest

from conftest import tool
from seamless.run.command import analyze
from test_run_identity import dry, seamless_run


def run(tmp_path, *argv, cwd=None):
    return seamless_run(list(argv), cwd or tmp_path, tmp_path)


def pins(tf):
    return sorted(k for k in tf if not k.startswith("__") and k != "code")


# --- every command is scanned ------------------------------------------------------------


@pytest.mark.parametrize("command", ["set -o pipefail; cut -f1 in.txt | sort",
                                     "sleep 0.1; cat in.txt | cut -f1 | sort",
                                     "true && cut -f1 < in.txt | sort",
                                     "echo start >&2\ncut -f1 in.txt | sort"])
def test_a_later_command_reads_its_file(tmp_path, command):
    (tmp_path / "in.txt").write_text("b\t1\na\t2\n")
    proc = run(tmp_path, command)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"a\nb\n"
    (tmp_path / "in.txt").write_text("d\t1\nc\t2\n")  # its contents are part of the identity
    assert run(tmp_path, command).stdout == b"c\nd\n"


@pytest.mark.parametrize("command", ["true; (cat a.txt)", "true; { cat a.txt; }",
                                     "true; if true; then cat a.txt; fi",
                                     "true; for i in 1; do cat a.txt; done",
                                     "true; while false; do :; done; cat < a.txt",
                                     "true; X=$(cat a.txt); echo $X", "true; echo `cat a.txt`",
                                     "true; echo \"$(cat a.txt)\"", "true; cat <(sort a.txt)"])
def test_words_inside_compound_commands_and_substitutions(tmp_path, command):
    (tmp_path / "a.txt").write_text("A\n")
    proc, tf, code = dry(tmp_path, command)
    assert proc.returncode == 0, proc.stderr
    assert pins(tf) == ["a.txt"] and code == f"(\n{command}\n) > RESULT\n"


def test_a_here_document_is_text_not_commands(tmp_path):
    (tmp_path / "a.txt").write_text("A\n")
    (tmp_path / "b.txt").write_text("B\n")
    command = "true; cat <<EOF\nb.txt\nEOF\ncat a.txt; cat <<-'X'\n\tb.txt ; cat b.txt\n\tX\necho done"
    proc, tf, code = dry(tmp_path, command)
    assert proc.returncode == 0, proc.stderr
    assert pins(tf) == ["a.txt"]
    proc = run(tmp_path, command)
    assert proc.stdout == b"b.txt\nA\nb.txt ; cat b.txt\ndone\n", proc.stderr


def test_the_scan_never_fails_where_upstream_let_words_through(tmp_path):
    """Rules 1, 2 and 3 apply to the primary pipeline only; elsewhere a word that is not
    an existing file is a value, and one that cannot be an input stays a value."""
    (tmp_path / "a.txt").write_text("A\n")
    (tmp_path / "noext").write_text("n\n")
    (tmp_path / "code").mkdir()
    (tmp_path / "w").mkdir()
    command = ("cat a.txt; echo x.y v1.2 nodir/ a.txt/; cat noext; ls . .. / /etc/hostname ~ >/dev/null; "
               "ls code; cat w/../a.txt")
    proc, tf, code = dry(tmp_path, command, cwd=tmp_path / "w")
    assert proc.returncode == 1  # a.txt is not under w: the primary's rule holds
    proc, tf, code = dry(tmp_path, command)
    assert proc.returncode == 0, proc.stderr
    assert pins(tf) == ["a.txt", "noext"]
    # the last word is a.txt as well: rewritten to its name in the job
    assert code == "(\n" + command.replace("w/../a.txt", "a.txt") + "\n) > RESULT\n"


def test_a_fallback_after_or_is_not_scanned(tmp_path):
    """`a || b`: b runs only when a failed. Upstream shares those results (b.txt is not
    in them), so b is not scanned: name its files with -i."""
    (tmp_path / "a.txt").write_text("A\n")
    (tmp_path / "b.txt").write_text("B\n")
    proc, tf, code = dry(tmp_path, "cat a.txt || cat b.txt; cat a.txt && cat b.txt")
    assert pins(tf) == ["a.txt", "b.txt"]
    for command in ("cat a.txt || cat b.txt", "cat a.txt || (cat b.txt; cat b.txt) | wc -l"):
        (tmp_path / "JOB" / "transformation.json").unlink()
        (tmp_path / "JOB" / "command.txt").unlink()
        (tmp_path / "JOB").rmdir()
        proc, tf, code = dry(tmp_path, command)
        assert pins(tf) == ["a.txt"]


def test_primary_keeps_the_strict_rules(tmp_path):
    (tmp_path / "a.txt").write_text("A\n")
    assert run(tmp_path, "--dry", "cat a.txt; cat missing.txt").returncode == 0
    proc = run(tmp_path, "--dry", "--primary", "2", "cat a.txt; cat missing.txt")
    assert proc.returncode == 1 and b"missing.txt" in proc.stderr and b"-g1" in proc.stderr
    proc = run(tmp_path, "--dry", "--primary", "2", "echo x.y; cat a.txt")  # the first is lenient now
    assert proc.returncode == 0, proc.stderr


def test_a_directory_input_brings_the_files_inside_it(tmp_path):
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "x.txt").write_text("X\n")
    (tmp_path / "d" / "s" / "y.txt").write_text("Y\n")
    for command in ("ls d; cat d/x.txt d/s/y.txt", "cat d/x.txt; ls -R d | wc -l", "ls d d/x.txt", "ls d; ls d/s"):
        proc = run(tmp_path, command)
        assert proc.returncode == 0, (command, proc.stderr)
    command = "ls sub 2>/dev/null; cat d/x.txt; ls d; cat ../x.txt /etc/hostname"
    proc, tf, code = dry(tmp_path, "-ms", command)
    assert pins(tf) == ["d"] and code == f"(\n{command}\n) > RESULT\n"


# --- files the script writes are not inputs ----------------------------------------------


@pytest.mark.parametrize("command", ["sort in.txt > tmp.txt; head -1 tmp.txt",
                                     "sort in.txt >tmp.txt && head -1 ./tmp.txt",
                                     "(sort in.txt > tmp.txt; head -1 tmp.txt) | cat",
                                     "sort in.txt 2>/dev/null 1> tmp.txt; head -1 < tmp.txt"])
def test_a_file_written_earlier_is_not_an_input_of_a_later_command(tmp_path, command):
    (tmp_path / "in.txt").write_text("b\na\n")
    (tmp_path / "tmp.txt").write_text("stale\n")  # a leftover copy must not be used
    proc, tf, code = dry(tmp_path, command)
    assert proc.returncode == 0, proc.stderr
    assert pins(tf) == ["in.txt"]
    proc = run(tmp_path, command)
    assert proc.returncode == 0 and proc.stdout == b"a\n", proc.stderr


def test_a_file_read_before_it_is_written_is_an_input(tmp_path):
    (tmp_path / "log.txt").write_text("old\n")
    proc, tf, code = dry(tmp_path, "true; cat log.txt; echo new > log.txt")
    assert pins(tf) == ["log.txt"]


def test_result_targets_are_not_inputs_of_other_commands(tmp_path, monkeypatch):
    """A -cp result that an earlier run downloaded must not come back as an input (the
    job's `mkdir res` would fail). analyze() is called directly: seamless-run passes it
    the -cp list."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "a.txt").write_text("downloaded\n")
    (tmp_path / "keep.txt").write_text("k\n")
    command = "true; mkdir res; cp keep.txt res/a.txt; ls res res/"

    def names(command, captures=()):
        return sorted(i.name for i in analyze(command, captures=captures).inputs)

    assert names(command) == ["keep.txt", "res"]
    assert names(command, ["res"]) == names(command, ["./res/:elsewhere"]) == ["keep.txt"]
    assert names(command, ["res/a.txt", ":out"]) == ["keep.txt", "res"]
    # in the primary pipeline too (the directory does not exist on a first run)
    assert names("ls res", ["res"]) == names("ls res/a.txt", ["res:x"]) == []
    assert names("ls res", ["res/a.txt"]) == ["res"]


# --- rewritten words mean what the user wrote --------------------------------------------


def test_a_dash_name_stays_a_file(tmp_path):
    (tmp_path / "-R").mkdir()
    (tmp_path / "-R" / "f").write_text("f\n")
    (tmp_path / "-n.txt").write_text("dash\n")
    proc = run(tmp_path, "ls ./-R")
    assert proc.returncode == 0 and proc.stdout == b"f\n", proc.stderr
    proc, tf, code = dry(tmp_path, "ls ./-R/ && cat ./-n.txt")
    assert pins(tf) == ["-R", "-n.txt"] and code == "(\nls ./-R && cat ./-n.txt\n) > RESULT\n"
    proc = run(tmp_path, "cat ./-n.txt")
    assert proc.stdout == b"dash\n", proc.stderr


def test_a_script_shadowed_by_a_builtin_keeps_its_path(tmp_path):
    """`./test` is the script, `test` the builtin: the ./ stays where PATH would not be
    searched; elsewhere the word is rewritten as upstream does."""
    (tmp_path / "data.txt").write_text("d\n")
    for name in ("test", "echo", "a=b.sh", "script.sh"):
        script = tmp_path / name
        script.write_text('#!/bin/bash\necho "script $1"\n')
        script.chmod(0o755)
    for n, name in enumerate(("test", "echo", "a=b.sh")):
        proc, tf, code = dry(tmp_path / f"job{n}", f"./{name} data.txt", cwd=tmp_path)
        assert code == f"chmod +x '{name}'\n(\n./{name} data.txt\n) > RESULT\n"
    proc, tf, code = dry(tmp_path, "./script.sh data.txt")
    assert code == "export PATH=./:$PATH\nchmod +x 'script.sh'\n(\nscript.sh data.txt\n) > RESULT\n"
    for name in ("test", "echo", "script.sh"):
        proc = run(tmp_path, f"./{name} data.txt")
        assert proc.returncode == 0 and proc.stdout == b"script data.txt\n", (name, proc.stderr)


def test_rewritten_words_are_quoted_only_where_the_shell_needs_it(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "my file.txt").write_text("m\n")
    (tmp_path / "sub" / "données.txt").write_text("d\n")
    (tmp_path / "sub" / "it's$x.txt").write_text("q\n")
    proc, tf, code = dry(tmp_path, "-ms", "cat sub/my\\ file.txt sub/données.txt \"sub/it's\\$x.txt\"")
    assert proc.returncode == 0, proc.stderr
    assert code == "(\ncat 'my file.txt' données.txt 'it'\"'\"'s$x.txt'\n) > RESULT\n"
    assert run(tmp_path, "-ms", "cat sub/my\\ file.txt sub/données.txt \"sub/it's\\$x.txt\"").stdout == b"m\nd\nq\n"


def test_a_dash_result_is_moved_as_a_file(tmp_path):
    proc = run(tmp_path, "seq 2 > -out.txt")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "-out.txt").read_text() == "1\n2\n"


# --- a directory given by its sidecars, with or without the slash -------------------------


def sidecar_dir(tmp_path, name):
    (tmp_path / name).mkdir()
    (tmp_path / name / "x.txt").write_text("x\n")
    proc = subprocess.run([tool("seamless-upload"), name], cwd=tmp_path, capture_output=True,
                          env={**os.environ, "SEAMLESS_CACHE": str(tmp_path / "cache"),
                               "HOME": str(tmp_path / "home")}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for path in sorted((tmp_path / name).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (tmp_path / name).rmdir()


def test_input_directory_with_a_slash_may_be_sidecars(tmp_path):
    sidecar_dir(tmp_path, "results")
    assert not (tmp_path / "results").exists() and (tmp_path / "results.INDEX").exists()
    proc = run(tmp_path, "-i", "results/", "ls results")
    assert proc.returncode == 0 and proc.stdout == b"x.txt\n", proc.stderr
    slash, plain = (dry(tmp_path / sub, "-i", option, "ls results", cwd=tmp_path)
                    for sub, option in (("s", "results/"), ("p", "results")))
    assert slash[1] == plain[1] and pins(slash[1]) == ["results"]


def test_command_line_directory_with_a_slash_may_be_sidecars(tmp_path):
    sidecar_dir(tmp_path, "d")
    proc = run(tmp_path, "ls d/")
    assert proc.returncode == 0 and proc.stdout == b"x.txt\n", proc.stderr
    (tmp_path / "f.txt.CHECKSUM").write_text((tmp_path / "d.CHECKSUM").read_text())
    proc = run(tmp_path, "cat f.txt/")  # a file's sidecar is not a directory
    assert proc.returncode == 1 and b"directory" in proc.stderr


# --- compound commands: redirections, case ---------------------------------------------


@pytest.mark.parametrize("command", ['while read l; do echo "$l"; done < in.txt',
                                     "until ! read l; do echo $l; done < in.txt",
                                     "for i in 1; do cat; done < in.txt", "{ cat; } < in.txt",
                                     "( cat ) < in.txt", "if true; then cat; fi < in.txt",
                                     "case x in x) cat;; esac < in.txt", "true; { cat; } < in.txt",
                                     "{ cat; } < in.txt | sort", "while read l; do echo $l; done < ./in.txt"])
def test_the_input_redirection_of_a_compound_command_is_an_input(tmp_path, command):
    (tmp_path / "in.txt").write_text("b\na\n")
    proc, tf, code = dry(tmp_path, command)
    assert proc.returncode == 0, proc.stderr
    assert pins(tf) == ["in.txt"] and code == f"(\n{command.replace('./in.txt', 'in.txt')}\n) > RESULT\n"
    proc = run(tmp_path, command)
    assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(proc.stdout.split()) == [b"a", b"b"]


def test_the_redirections_of_a_compound_command_come_before_its_body(tmp_path):
    """They are opened before the body runs: a file the body writes is still read."""
    (tmp_path / "in.txt").write_text("a\n")
    (tmp_path / "out.txt").write_text("stale\n")
    proc, tf, code = dry(tmp_path, "{ cat; echo x > in.txt; } < in.txt")
    assert proc.returncode == 0 and pins(tf) == ["in.txt"], proc.stderr
    (tmp_path / "JOB" / "transformation.json").unlink()
    (tmp_path / "JOB" / "command.txt").unlink()
    (tmp_path / "JOB").rmdir()
    proc, tf, code = dry(tmp_path, "{ echo a; cat out.txt; } > out.txt")  # empty when cat reads it
    assert proc.returncode == 0 and pins(tf) == [], proc.stderr


def test_a_command_that_is_only_a_redirection(tmp_path):
    (tmp_path / "in.txt").write_text("a\n")
    proc, tf, code = dry(tmp_path, "< in.txt")
    assert proc.returncode == 0, proc.stderr
    assert pins(tf) == ["in.txt"]
    proc = run(tmp_path, "< in.txt; echo done")
    assert proc.returncode == 0 and proc.stdout == b"done\n", proc.stderr
    proc = run(tmp_path, "< missing.txt")  # the primary pipeline's rule 1
    assert proc.returncode == 1 and b"missing.txt" in proc.stderr


def test_an_input_redirection_is_a_file_without_an_extension_too(tmp_path):
    """Rule 2 is for words that may be values; the file of `<` is always read."""
    (tmp_path / "data").write_text("a\nb\n")
    proc = run(tmp_path, "while read l; do echo $l; done < data")
    assert proc.returncode == 0 and proc.stdout == b"a\nb\n", proc.stderr
    proc = run(tmp_path, "wc -l < data")
    assert proc.returncode == 0 and proc.stdout == b"2\n", proc.stderr


@pytest.mark.parametrize("command", ["{ cat in.txt; } > out.txt", "(cat in.txt) >> out.txt",
                                     "for i in 1; do cat in.txt; done > out.txt",
                                     "while read l; do echo $l; done < in.txt > out.txt",
                                     "echo a; { cat in.txt; } > out.txt",
                                     "echo a; if true; then cat in.txt; fi > out.txt",
                                     "case x in x) cat in.txt;; esac > out.txt"])
def test_the_output_redirection_of_a_last_compound_command_is_a_result(tmp_path, command):
    (tmp_path / "in.txt").write_text("a\n")
    proc, tf, code = dry(tmp_path, command)
    assert proc.returncode == 0, proc.stderr
    assert pins(tf) == ["in.txt"] and code == f"mkdir -p RESULT/\n{command}\nmv out.txt RESULT/\n"
    proc = run(tmp_path, command)
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "out.txt").read_text() == "a\n"


def test_a_file_a_compound_command_writes_is_not_an_input_after_it(tmp_path):
    (tmp_path / "in.txt").write_text("b\na\n")
    (tmp_path / "t.txt").write_text("stale\n")
    for command in ("{ sort in.txt; } > t.txt; head -1 t.txt", "for i in 1; do sort in.txt; done > t.txt; head -1 t.txt"):
        proc = run(tmp_path, command)
        assert proc.returncode == 0 and proc.stdout == b"a\n", proc.stderr


@pytest.mark.parametrize("command", ["case x in x) cat in2.txt;; esac", "case x in (x) cat in2.txt;; esac",
                                     "case $((1+1)) in 1|2) cat in2.txt ;& 3) cat in2.txt;;& *) :;; esac",
                                     "true; case x in\n  x)\n    cat in2.txt\n    ;;\nesac"])
def test_case_runs_and_its_commands_are_scanned(tmp_path, command):
    (tmp_path / "in2.txt").write_text("two\n")
    proc, tf, code = dry(tmp_path, command)
    assert proc.returncode == 0, proc.stderr
    assert pins(tf) == ["in2.txt"] and code == f"(\n{command}\n) > RESULT\n"
    proc = run(tmp_path, command)
    assert proc.returncode == 0 and proc.stdout.startswith(b"two\n"), proc.stderr


def test_the_words_of_a_for_loop_are_scanned_not_argtyped(tmp_path):
    """As upstream, `for f in *.txt` is no command (its words are not argtyped, so a
    pattern is fine); here an existing file among them is an input."""
    (tmp_path / "a.txt").write_text("A\n")
    proc, tf, code = dry(tmp_path, "for f in *.txt; do cat $f; done")
    assert proc.returncode == 0 and pins(tf) == [], proc.stderr
    proc = run(tmp_path, "for f in a.txt missing.txt; do cat $f 2>/dev/null || echo none; done")
    assert proc.returncode == 0 and proc.stdout == b"A\nnone\n", proc.stderr


def test_a_compound_command_on_its_own_argtypes_its_first_command(tmp_path):
    """As upstream: in `(a; b)` and `{ a | b; }` only a is argtyped; b is scanned."""
    (tmp_path / "a.txt").write_text("A x.y\n")
    for command in ("(cat a.txt; echo x.y)", "{ cat a.txt | grep -c x.y; }", "if cat a.txt; then echo v1.x; fi"):
        proc, tf, code = dry(tmp_path / command.replace("/", "_"), command, cwd=tmp_path)
        assert proc.returncode == 0 and pins(tf) == ["a.txt"], (command, proc.stderr)
    proc = run(tmp_path, "(cat missing.txt; echo x)")
    assert proc.returncode == 1 and b"missing.txt" in proc.stderr


# --- a -cp result is never an input ------------------------------------------------------


def cache_is_intact(cache):
    """Every buffer in the store still has the checksum it is stored under."""
    import hashlib
    files = [p for p in cache.rglob("*") if p.is_file() and len(p.name) == 64]
    assert files
    for path in files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path


@pytest.mark.parametrize("command", ["mkdir -p od; echo 1 > od/a", "mkdir od; echo 1 > od/a",
                                     "mkdir -p od; echo 1 > od/a; seq 7 > od/b",
                                     "mkdir -p od/s && ls od; echo 1 > od/s/a"])
def test_a_result_directory_of_the_primary_pipeline_is_a_cache_hit(tmp_path, command):
    checksums = []
    for n in range(3):
        checksums.append(run(tmp_path, "--dry", "-cp", "od", command).stdout)
        proc = run(tmp_path, "-cp", "od", command)
        assert proc.returncode == 0, (n, proc.stderr.decode())
        assert (tmp_path / "od.INDEX").exists()
        if n == 1:  # only the sidecars are left: still the same transformation
            for path in sorted((tmp_path / "od").rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            (tmp_path / "od").rmdir()
    assert checksums[0] == checksums[1] == checksums[2] != b""
    assert (tmp_path / "od" / ("s/a" if "od/s" in command else "a")).read_text() == "1\n"
    cache_is_intact(tmp_path / "cache")


def test_a_result_path_is_never_an_input(tmp_path):
    (tmp_path / "sorted.txt").write_text("old\n")
    (tmp_path / "data.txt").write_text("b\na\n")
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "x.txt").write_text("downloaded\n")
    for capture, command in (("sorted.txt", "cat sorted.txt data.txt | sort > sorted.txt"),
                             ("res/x.txt", "cat res/x.txt data.txt; ls res/x.txt"),
                             ("res:elsewhere", "mkdir -p res; cat res/x.txt data.txt > res/y.txt")):
        proc, tf, code = dry(tmp_path / f"job-{len(capture)}", "-cp", capture, command, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert pins(tf) == ["data.txt"], capture
    # the escape hatch: a result delivered under the name of the input it replaces
    proc = run(tmp_path, "-cp", "sorted.txt:data.txt", "sort data.txt > sorted.txt")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data.txt").read_text() == "a\nb\n"


# --- a file inside a directory input -------------------------------------------------------


def test_a_file_inside_a_directory_given_by_its_sidecars(tmp_path):
    sidecar_dir(tmp_path, "results")
    for argv, out in ((["-i", "results", "cat results/x.txt"], b"x\n"),
                      (["-i", "results/", "cat ./results/x.txt | wc -l"], b"1\n"),
                      (["cat results/x.txt; ls results"], b"x\nx.txt\n"),
                      (["-i", "results", "ls results/"], b"x.txt\n")):
        proc = run(tmp_path, *argv)
        assert proc.returncode == 0, (argv, proc.stderr.decode())
        assert proc.stdout == out, argv
    proc, tf, code = dry(tmp_path, "-i", "results", "cat results/x.txt")
    assert pins(tf) == ["results"] and code == "(\ncat results/x.txt\n) > RESULT\n"
    proc = run(tmp_path, "-i", "results", "cat results/y.txt")  # not in the directory
    assert proc.returncode == 1 and b"results/y.txt" in proc.stderr


def test_a_file_inside_a_directory_input_is_renamed_with_it(tmp_path):
    (tmp_path / "sub").mkdir()
    sidecar_dir(tmp_path / "sub", "results")
    proc, tf, code = dry(tmp_path, "-ms", "-i", "sub/results", "cat sub/results/x.txt")
    assert proc.returncode == 0, proc.stderr
    assert pins(tf) == ["results"] and code == "(\ncat results/x.txt\n) > RESULT\n"


def test_a_path_inside_an_existing_directory_input_is_no_second_pin(tmp_path):
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "x.txt").write_text("X\n")
    (tmp_path / "d" / "README").write_text("R\n")
    for argv in (["-i", "d", "cat d/x.txt"], ["ls d; cat d/x.txt"], ["-i", "d", "cat d/README"]):
        proc, tf, code = dry(tmp_path / str(len(argv[-1])), *argv, cwd=tmp_path)
        assert proc.returncode == 0, (argv, proc.stderr)
        assert pins(tf) == ["d"], argv


# --- where upstream works, the transformation is upstream's --------------------------------

VENV = os.environ.get("SEAMLESS_UPSTREAM_VENV", "")
UPSTREAM = os.path.join(VENV, "bin", "seamless-run") if VENV else ""

SAME_AS_UPSTREAM = [
    "cat a.txt || cat b.txt",
    "X=$(cat a.txt); echo $X",
    "{ cat a.txt; cat b.txt; } | wc -l",
    "cat a.txt | { cat b.txt; }",
    "f() { cat a.txt; }; f",
    "cat ./a.txt .//b.txt",
    "cat a.txt > sortie_é.txt",
    "cat a.txt 2>&1 | wc -l; echo done",
    "cat a.txt; echo v1.2 nodir/",
    "sort a.txt > t.txt; echo x",
    "ls d; ls d/s",
    "ls d d/s",
    "{ cat a.txt; } > out.txt",
    "(cat a.txt) > out.txt",
    "for i in 1; do cat a.txt; done > out.txt",
    "for f in *.txt; do cat $f; done",
    "(cat a.txt; echo x.y)",
    "{ cat a.txt | grep -c x.y; }",
    "while read l; do echo $l; done",
    "f() { cat a.txt > o.txt; }; f",
]


@pytest.mark.skipif(not os.path.exists(UPSTREAM), reason="no upstream virtualenv (SEAMLESS_UPSTREAM_VENV)")
def test_same_transformation_as_upstream_where_upstream_works(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("A\n")
    (work / "b.txt").write_text("B\n")
    (work / "d" / "s").mkdir(parents=True)
    (work / "d" / "s" / "y.txt").write_text("Y\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env.update(HOME=str(home), SEAMLESS_CACHE=str(tmp_path / "upcache"),
               PATH=os.path.join(VENV, "bin") + os.pathsep + env["PATH"])
    try:
        for n, command in enumerate(SAME_AS_UPSTREAM):
            jobs = []
            for who, argv in (("up", [UPSTREAM]), ("ours", [tool("seamless-run")])):
                job = tmp_path / f"{who}{n}"
                proc = subprocess.run([*argv, "--dry", "-j", str(job), command], cwd=work, env=env,
                                      capture_output=True, timeout=300)
                assert proc.returncode == 0, (who, command, proc.stderr.decode()[-1000:])
                jobs.append(((job / "transformation.json").read_text(), (job / "command.txt").read_text()))
            assert jobs[0] == jobs[1], command
    finally:
        for status in (home / ".remote-http-launcher" / "server").glob("*.json"):
            try:
                os.kill(int(json.loads(status.read_text())["pid"]), 15)
            except (OSError, ValueError, KeyError):
                pass


def test_an_empty_word_is_a_value_and_the_workdir_itself_a_clear_error(tmp_path):
    """`grep -c "" f` runs: "" names no file. `ls .` cannot run as meant (in the job "."
    is the job directory): refused, as upstream does, saying why."""
    (tmp_path / "in.txt").write_text("a\nb\n")
    proc = run(tmp_path, 'grep -c "" in.txt')
    assert proc.returncode == 0 and proc.stdout == b"2\n", proc.stderr
    proc = run(tmp_path, "ls .")
    assert proc.returncode == 1 and b"cannot be an input as a whole" in proc.stderr, proc.stderr
