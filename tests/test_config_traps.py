"""Configuration traps of issue 10: YAML alias bombs, mistyped stages, seamless-init --show
without a project. Real tools in subprocesses where the user would meet them."""

import json
import os
import resource
import subprocess
import textwrap

import pytest

from conftest import tool
from seamless.config.errors import ConfigError
from seamless.config.resolve import resolve

# 9 levels of 9 aliases: ~400 bytes that expand to 9**9 (387 million) strings
BOMB_LEVELS = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
    f"&{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]" for a, b in zip("abcdefgh", "bcdefghi")]


def bomb_list():  # a seamless.yaml: a list of commands
    return "".join(f"- inherit_from_parent: {level}\n" for level in BOMB_LEVELS)


def bomb_mapping(key="k"):  # any YAML mapping (clusters, specs, tools.yaml)
    return "".join(f"{key}{i}: {level}\n" for i, level in enumerate(BOMB_LEVELS))


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    e.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"),
             SEAMLESS_LAUNCH_DIR=str(tmp_path / "launch"))
    (tmp_path / "home" / ".seamless").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    return e


def bounded(argv, env, cwd):
    """Run a tool with 1.5 GB of address space and a minute: a bomb fails fast, not late."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))

    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=60, preexec_fn=limit)


def one_line_error(proc, path, line):
    err = proc.stderr.decode()
    assert proc.returncode == 1, err[-2000:]
    assert err.count("\n") == 1, err[-2000:]
    assert f"{path}: line {line}: " in err and "alias" in err, err


def test_alias_bomb_in_seamless_yaml(tmp_path, env):
    path = tmp_path / "work" / "seamless.yaml"
    path.write_text(bomb_list())
    for argv in (["seamless-init", "--show"], ["seamless-run", "echo hi"]):
        proc = bounded([tool(argv[0]), *argv[1:]], env, tmp_path / "work")
        one_line_error(proc, path, 6)  # the first list past the bound (9**6 values)


def test_alias_bomb_in_clusters_yaml(tmp_path, env):
    path = tmp_path / "home" / ".seamless" / "clusters.yaml"
    path.write_text(bomb_mapping("c"))
    (tmp_path / "work" / "seamless.yaml").write_text("- project: p\n")
    proc = bounded([tool("seamless-init"), "--show"], env, tmp_path / "work")
    one_line_error(proc, path, 6)


def test_alias_bomb_in_a_launch_spec(tmp_path, env):
    path = tmp_path / "spec.yaml"
    path.write_text("key: k\nworkdir: /tmp\n" + bomb_mapping())
    proc = bounded([tool("seamless-launch"), str(path)], env, tmp_path)
    one_line_error(proc, path, 8)


def test_alias_bomb_in_tools_yaml(tmp_path, env):
    path = tmp_path / "tools.yaml"
    path.write_text(bomb_mapping())
    (tmp_path / "home" / ".seamless" / "clusters.yaml").write_text(
        f"lab:\n  frontends:\n    - hostname: localhost\n      hashserver: {{bufferdir: {tmp_path}/b}}\n")
    env["SEAMLESS_TOOLS_YAML"] = str(path)
    proc = bounded([tool("seamless-launch"), "hashserver", "--cluster", "lab", "--project", "p", "--dry-run"],
                   env, tmp_path / "work")
    one_line_error(proc, path, 6)


def big_string_bomb(chars=200_000, uses=5000):
    """A seamless.yaml whose queue repeats one long string by alias: small on disk, `chars * uses`
    characters expanded (1 GB by default). The alias list is on line 9."""
    return textwrap.dedent(f"""\
        - project: p
        - clusters:
            hpc:
              type: slurm
              frontends: [{{hostname: login}}]
              queues:
                normal:
                  cores: 4
                  job_extra_directives: [&big '{"x" * chars}', {", ".join(["*big"] * (uses - 1))}]
        """)


def cache_file(env):
    return os.path.join(env["XDG_CACHE_HOME"], "seamless", "config-cache.json")


def test_alias_bomb_of_a_large_string(tmp_path, env):
    path = tmp_path / "work" / "seamless.yaml"
    path.write_text(big_string_bomb())
    for argv in (["seamless-init", "--show"], ["seamless-run", "echo hi"]):
        proc = bounded([tool(argv[0]), *argv[1:]], env, tmp_path / "work")
        one_line_error(proc, path, 9)
        assert "10 MB" in proc.stderr.decode()
    assert not os.path.exists(cache_file(env)) or os.path.getsize(cache_file(env)) < 1 << 20


def test_a_config_file_too_big_to_read(tmp_path, env):
    path = tmp_path / "work" / "seamless.yaml"
    path.write_text("- project: p\n" + "# padding\n" * 1_100_000)  # 11 MB, no aliases
    proc = bounded([tool("seamless-init"), "--show"], env, tmp_path / "work")
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1 and f"{path}: " in err and "10 MB" in err, err


def test_values_nested_too_deeply(tmp_path, env):
    path = tmp_path / "work" / "seamless.yaml"
    path.write_text("- project: p\n- nparallel: " + "[" * 990 + "]" * 990 + "\n")  # libyaml allows 1000
    proc = bounded([tool("seamless-init"), "--show"], env, tmp_path / "work")
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1 and f"{path}: line 2: " in err and "deep" in err, err


def show(env, cwd):
    proc = bounded([tool("seamless-init"), "--show"], env, cwd)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(None, 1) for line in proc.stdout.decode().splitlines())


def test_a_big_parse_is_not_cached(tmp_path, env):
    """3 MB expanded is within the YAML bound, but too much to read again on every later run."""
    (tmp_path / "work" / "seamless.yaml").write_text(big_string_bomb(300_000, 10))
    for _ in range(2):  # the second run parses again, with the same result
        assert show(env, tmp_path / "work")["project"] == "p"
        assert not os.path.exists(cache_file(env)) or os.path.getsize(cache_file(env)) < 1 << 20


def test_the_cache_file_stays_bounded(tmp_path, monkeypatch):
    """Every configuration file ever read leaves an entry; the oldest go first, the newest stays."""
    from seamless.config.yamlfiles import YamlReader

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for i in range(12):  # 12 x 100 KB: more than the cache file may hold (512 KB)
        path = tmp_path / f"c{i}.yaml"
        path.write_text(f"k: '{i:x>100000}'\n")
        reader = YamlReader()
        assert reader(str(path)) == {"k": f"{i:x>100000}"}
        reader.save()
        assert os.path.getsize(reader.path) <= 512 << 10
    with open(reader.path) as f:
        assert str(path) in json.load(f)


def test_an_oversized_cache_file_is_ignored_and_rewritten(tmp_path, env):
    work = tmp_path / "work"
    (work / "seamless.yaml").write_text("- project: p\n")
    assert show(env, work)["project"].strip() == "p"
    with open(cache_file(env)) as f:
        cache = json.load(f)
    key = str(work / "seamless.yaml")
    cache[key][1] = [{"project": "stale"}]  # what a reader trusting the file would print
    cache["/elsewhere/seamless.yaml"] = [[0, 0, 0], ["x" * 20_000_000]]
    with open(cache_file(env), "w") as f:
        json.dump(cache, f)
    assert show(env, work)["project"].strip() == "p"
    assert os.path.getsize(cache_file(env)) < 1 << 20  # rewritten
    with open(cache_file(env)) as f:
        assert json.load(f)[key][1] == [{"project": "p"}]


@pytest.mark.parametrize("content", [b"\xff\xfe not json", b"[1, 2]", b"[" * 100_000, b"PATH5", b"PATH[1]",
                                     b'PATH{"0": 1, "1": 2}', b"PATH[[1, 2, 3]]", None])
def test_an_unreadable_cache_file_is_ignored_and_rewritten(tmp_path, env, content):
    work = tmp_path / "work"
    key = str(work / "seamless.yaml")
    (work / "seamless.yaml").write_text("- project: p\n")
    os.makedirs(cache_file(env))
    if content is not None:  # else: a directory where the file belongs
        os.rmdir(cache_file(env))
        if content.startswith(b"PATH"):  # a JSON object whose entry for seamless.yaml is malformed
            content = b"{%s: %s}" % (json.dumps(key).encode(), content[4:])
        with open(cache_file(env), "wb") as f:
            f.write(content)
    assert show(env, work)["project"].strip() == "p"
    if content is not None:
        with open(cache_file(env)) as f:
            assert json.load(f)[key][1] == [{"project": "p"}]


def test_plain_aliases_and_merge_keys_still_work(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SEAMLESS_CACHE", raising=False)
    (tmp_path / "home" / ".seamless").mkdir(parents=True)
    (tmp_path / "home" / ".seamless" / "clusters.yaml").write_text(textwrap.dedent("""\
        hpc:
          type: slurm
          queues:
            normal: &normal {cores: 4, conda: seamless, walltime: "01:00:00"}
            big: {<<: *normal, cores: 32}
          frontends:
            - hostname: login.hpc
              hashserver: {bufferdir: ~/bufs}
              database: {database_dir: ~/dbs}
        """))
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "seamless.yaml").write_text("- project: &p proj\n- subproject: *p\n- cluster: hpc\n")
    r = resolve(str(tmp_path / "p"))
    assert (r.project, r.subproject) == ("proj", "proj")
    assert r.definition["queues"]["big"] == {"cores": 32, "conda": "seamless", "walltime": "01:00:00"}


# --- stages -------------------------------------------------------------------------------------


@pytest.fixture
def staged(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SEAMLESS_CACHE", raising=False)
    (tmp_path / "home").mkdir()
    parent = tmp_path / "parent"
    child = parent / "child"
    child.mkdir(parents=True)
    (parent / "seamless.yaml").write_text("- project: p\n- stage prod:\n    - project: pp\n")
    (child / "seamless.yaml").write_text("- inherit_from_parent\n- stage test:\n    - stage nested:\n"
                                         "        - subproject: n\n")
    (child / "seamless.profile.yaml").write_text("- stage mine: []\n")
    return child


def test_a_stage_no_block_names_is_an_error(staged):
    with pytest.raises(ConfigError) as info:
        resolve(str(staged), "prdo")
    message = str(info.value)
    assert "stage 'prdo'" in message and "did you mean 'prod'?" in message and message.count("\n") == 0
    assert str(staged / "seamless.yaml") in message
    with pytest.raises(ConfigError, match="did you mean 'nested'"):
        resolve(str(staged), "nestde")


def test_every_stage_of_every_loaded_file_is_valid(staged):
    assert resolve(str(staged), "prod").project == "pp"  # from the inherited parent
    assert resolve(str(staged), "test").project == "p"
    assert resolve(str(staged), "nested").stage == "nested"  # named in a block nested in another
    assert resolve(str(staged), "mine").stage == "mine"  # from seamless.profile.yaml
    assert resolve(str(staged)).stage is None


def test_files_without_stage_blocks_accept_no_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SEAMLESS_CACHE", raising=False)
    (tmp_path / "seamless.yaml").write_text("- project: p\n")
    with pytest.raises(ConfigError, match=r"stage 'dev'.*defines? no stages"):
        resolve(str(tmp_path), "dev")


def test_without_config_files_stages_name_storage(tmp_path, monkeypatch):
    from seamless.config import storage
    from seamless.session import resolve_config

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SEAMLESS_CACHE", raising=False)
    (tmp_path / "empty").mkdir()
    r = resolve_config(workdir=str(tmp_path / "empty"), stage="anything")  # zero-config
    assert storage.bufferdir(r).endswith("/STAGE-anything")
    (tmp_path / "empty" / "seamless.yaml").write_text("- project: p\n")
    monkeypatch.setenv("SEAMLESS_CACHE", str(tmp_path / "cache"))  # upstream's shortcut skips the files
    r = resolve_config(workdir=str(tmp_path / "empty"), stage="anything")
    assert storage.bufferdir(r) == str(tmp_path / "cache") + "/__TOPLEVEL__/STAGE-anything"


def test_mistyped_stage_on_the_command_line(tmp_path, env):
    work = tmp_path / "work"
    (work / "seamless.yaml").write_text("- project: p\n- stage prod:\n    - project: q\n")
    run = subprocess.run([tool("seamless-run"), "--stage", "prdo", "echo hi"], cwd=work, env=env,
                         capture_output=True, timeout=60)
    err = run.stderr.decode()
    assert run.returncode == 1 and run.stdout == b"" and err.count("\n") == 1, err
    assert err.startswith("seamless-run: error: ") and "did you mean 'prod'?" in err
    assert not list((tmp_path / "xdg").glob("**/STAGE-prdo"))  # nothing was stored for it
    show = subprocess.run([tool("seamless-init"), "--show", "--stage", "dev"], cwd=work, env=env,
                          capture_output=True, timeout=60)
    assert show.returncode == 1 and b"stage 'dev'" in show.stderr and show.stderr.count(b"\n") == 1
    good = subprocess.run([tool("seamless-init"), "--show", "--stage", "prod"], cwd=work, env=env,
                          capture_output=True, timeout=60)
    assert good.returncode == 0 and b"STAGE-prod" in good.stdout


# --- seamless-init --show -----------------------------------------------------------------------


def test_show_without_a_project(tmp_path, env):
    work = tmp_path / "work"
    (work / "seamless.yaml").write_text("- execution: process\n")
    proc = subprocess.run([tool("seamless-init"), "--show"], cwd=work, env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = dict(line.split(None, 1) for line in proc.stdout.decode().splitlines())
    assert rows["project"].strip() == "-" and rows["cluster"].strip() == "-"
    assert rows["buffers"].strip() == str(tmp_path / "xdg" / "seamless" / "__TOPLEVEL__")
    assert "None" not in proc.stdout.decode()
