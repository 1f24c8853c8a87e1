"""seamless-run: a shell command as a cached, content-addressed transformation.

    seamless-run [OPTIONS] COMMAND...

Options come before the command (or end at `--`). The command's input files are found
by argtyping; the command, its inputs and their checksums make the transformation,
whose checksum is looked up in the result database. On a hit the stored result is
printed or written; on a miss the command runs in a fresh job directory first.
"""

import argparse
import os
import sys

from seamless.version import __version__
from seamless.checksum import calculate_checksum, serialize
from seamless.cli import UserError, add_version, open_stores, selection, set_debug
from seamless.identity import identity_buffer, transformation_checksum
from seamless.run.argtyping import ArgtypeError
from seamless.run.command import analyze, bash_code, targets_of
from seamless.transfer import add_confirm_arguments

PROG = "seamless-run"


def parser():
    p = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False,
        usage="%(prog)s [OPTIONS] COMMAND...",
        description="Run a shell command as a cached transformation: the same command on the same "
        "inputs is computed once and its result reused. Options must come before the command.")
    add_version(p)
    p.add_argument("-v", "--verbose", action="count", default=0, help="say more on stderr (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="say nothing on stderr; hide the job's stderr")
    p.add_argument("-c", dest="unquote", action="store_true",
                   help="take the single argument verbatim as the command string")
    p.add_argument("-g1", dest="rule1", action="store_false",
                   help="argtyping rule 1 off: a word with an extension need not be an existing file")
    p.add_argument("-g2", dest="rule2", action="store_false",
                   help="argtyping rule 2 off: a word without extension may be an existing file")
    wd = p.add_mutually_exclusive_group()
    wd.add_argument("-w", dest="workdir", metavar="DIR", default=".",
                    help="directory that input names are relative to (default: the current one)")
    wd.add_argument("-W", dest="workdir", action="store_const", const="/", help="input names relative to /")
    mapping = p.add_mutually_exclusive_group()
    mapping.add_argument("-ms", dest="mapping", action="store_const", const="strip",
                         help="name inputs by their basename in the job")
    mapping.add_argument("-mx", dest="mapping", action="store_const", const="extension",
                         help="name input files file1.ext, file2.ext... in the job")
    p.add_argument("-cp", "--capture", action="append", default=[], metavar="X|A:B|:B",
                   help="result to collect: job file/dir X, job path A saved as B, or stdout (:B)")
    p.add_argument("-i", "--input", action="append", default=[], metavar="PATH",
                   help="extra input file or directory (not on the command line)")
    p.add_argument("-I", "--input-file", action="append", default=[], metavar="LIST",
                   help="extra inputs listed in LIST, one per line, relative to LIST's directory")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="a value that is part of the transformation, as $NAME and file NAME in the job")
    p.add_argument("--metavar", action="append", default=[], metavar="NAME=VALUE",
                   help="a value exported as $NAME that does not change the transformation (e.g. threads)")
    p.add_argument("--prologue", action="append", default=[], metavar="CMD",
                   help="command to run first (after argtyping); repeatable")
    p.add_argument("--primary", type=int, default=1, metavar="N",
                   help="argtype the N-th command of a ';'/'&&' list (default 1)")
    add_confirm_arguments(p, "large uploads/downloads to or from servers")
    p.add_argument("-nd", "--no-download", dest="download", action="store_false",
                   help="write result .CHECKSUM/.INDEX sidecars only, not the contents")
    p.add_argument("--scratch", action="store_true",
                   help="do not keep the result bytes, only the transformation -> result checksum")
    p.add_argument("--fingertip", action="store_true",
                   help="recompute input buffers that are gone from the transformations that made them")
    p.add_argument("--local", action="store_true", help="run in this process whatever the configuration")
    p.add_argument("--dry", "--dry-run", dest="dry", action="store_true",
                   help="build the transformation and print its checksum; run nothing")
    p.add_argument("-j", "--write-job", metavar="DIR", help="with --dry: write the transformation into DIR")
    p.add_argument("--upload", action="store_true",
                   help="with --dry: store the inputs and the transformation, print its checksum")
    p.add_argument("--write-remote-job", metavar="DIR",
                   help="write a runnable job directory (inputs + transform.sh) instead of running")
    p.add_argument("--project", metavar="P[:SUB]", help="project (and subproject) whose storage to use")
    p.add_argument("--stage", metavar="S[:SUB]", help="stage (and substage) of the configuration to use")
    p.add_argument("--queue", metavar="Q", help="queue of the selected cluster (for remote execution)")
    p.add_argument("--docker", metavar="IMAGE", help="record a docker image in the environment (not run)")
    p.add_argument("--conda", metavar="ENV", help="activate this conda environment for the command")
    p.add_argument("--direct-print", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--undo", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    return p


def is_name(text):
    """A shell variable name: [A-Za-z_][A-Za-z0-9_]* (without importing re)."""
    return text.isascii() and text.replace("_", "a").isalnum() and not text[0].isdigit() if text else False


def say(args, level, message):
    if not args.quiet and args.verbose >= level:
        sys.stderr.write(f"{PROG}: {message}\n")


def main(argv):
    args = parser().parse_args(argv)
    set_debug(args.verbose >= 2)
    words = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not words:
        raise UserError("no command given (usage: seamless-run [OPTIONS] COMMAND...)")
    if args.unquote and len(words) != 1:
        raise UserError("-c takes the command as a single (quoted) argument")
    command = words[0] if args.unquote else " ".join(words)
    check_options(args)

    try:
        spec = prepare(args, command)
    except ArgtypeError as exc:
        raise UserError(str(exc)) from None
    say(args, 1, f"transformation {spec['checksum']}")

    if args.dry or args.write_remote_job:
        return dry_run(args, spec)
    return execute_or_reuse(args, spec)


def run_stores(args):
    """The stores of the configuration in force, refusing execution modes this tool lacks."""

    def check(resolved):
        if resolved.execution == "remote" and not args.local:
            raise UserError(f"the configuration runs commands on cluster '{resolved.cluster}' "
                            f"({resolved.remote}), which seamless-run cannot do yet; add --local to run "
                            "here and keep the results in the cluster's storage")
        for warning in resolved.warnings:
            say(args, 1, warning)

    return open_stores(check=check, **selection(args))


def check_options(args):
    if args.undo:
        raise UserError("--undo is not supported (upstream never finished it either)")
    if (args.write_job or args.upload) and not args.dry:
        raise UserError("-j/--write-job and --upload need --dry")
    if args.write_job and os.path.exists(args.write_job):
        raise UserError(f"job directory {args.write_job!r} already exists (choose a new one)")
    if args.write_remote_job and os.path.exists(args.write_remote_job):
        raise UserError(f"job directory {args.write_remote_job!r} already exists (choose a new one)")
    if args.primary < 1:
        raise UserError("--primary counts from 1")


def parse_assignments(items, flag):
    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"{flag} {item!r}: expected NAME=VALUE")
        if not is_name(name):
            raise UserError(f"{flag} {item!r}: the name must match [A-Za-z_][A-Za-z0-9_]*")
        if flag == "--metavar" and name.startswith("META__"):
            raise UserError(f"{flag} {item!r}: the name must not start with META__")
        if values.get(name, value) != value:
            raise UserError(f"{flag} {name} is given twice with different values")
        values[name] = value
    return values


def extra_inputs(args):
    paths = list(args.input)
    for listing in args.input_file:
        if not os.path.isfile(listing):
            raise UserError(f"--input-file {listing!r} is not a file")
        base = os.path.dirname(listing)
        with open(listing) as f:
            for line in f:
                line = line.strip()
                if line:  # upstream's help says empty lines are ignored; here they are
                    paths.append(os.path.join(base, line))
    return paths


def prepare(args, command):
    """Argtype, hash the inputs and build the transformation dict."""
    from seamless.run.inputs import resolve

    variables = parse_assignments(args.var, "--var")
    metavars = parse_assignments(args.metavar, "--metavar")
    analysis = analyze(command, primary=args.primary, rule1=args.rule1, rule2=args.rule2,
                       workdir=args.workdir, mapping=args.mapping or "literal",
                       extra_inputs=extra_inputs(args), captures=args.capture)
    if args.prologue:
        analysis.command = "; ".join(args.prologue + [analysis.command])
    targets = targets_of(analysis, args.capture)
    if not targets and (not args.download or args.scratch):
        raise UserError("the result would go to the screen, but downloading is off (-nd/--scratch); "
                        "name the result files with -cp")
    for item in analysis.inputs:
        resolve(item)
    code = bash_code(analysis, targets, metavars)
    buffers = {}  # checksum -> bytes of small buffers the transformation refers to

    def pin(buffer):
        cs = calculate_checksum(buffer)
        buffers[cs] = buffer
        return cs

    transformation = {
        "__language__": "bash",
        "__output__": ["result", "deepfolder" if targets else "bytes", None],
        "code": ["text", None, pin(serialize(code, "text"))],
    }
    formats = {}
    for item in analysis.inputs:
        if item.kind == "file":
            transformation[item.name] = ["bytes", None, item.checksum]
            formats[item.name] = {"filesystem": {"mode": "file", "optional": True}}
        else:
            transformation[item.name] = ["mixed", None, item.checksum]
            formats[item.name] = {"celltype": "deepfolder", "filesystem": {"mode": "directory", "optional": True}}
            if item.index is not None:
                buffers[item.checksum] = serialize(item.index, "plain")
    for name, value in variables.items():
        if name in transformation:
            raise UserError(f"--var {name} clashes with an input of the same name")
        transformation[name] = ["str", None, pin(serialize(value, "str"))]
    for name, value in metavars.items():
        transformation["META__" + name] = ["str", None, pin(serialize(value, "str"))]
    if formats:
        transformation["__format__"] = formats
    env = {}
    if args.docker:
        env["docker"] = {"name": args.docker}
    if args.conda:
        env["conda_environment"] = args.conda
    if env:
        transformation["__env__"] = env
    meta = {}
    if args.direct_print:
        meta["__direct_print__"] = True
    if args.write_remote_job:
        meta["write_remote_job"] = args.write_remote_job
    if meta:
        transformation["__meta__"] = meta
    return {"transformation": transformation, "checksum": transformation_checksum(transformation),
            "code": code, "inputs": analysis.inputs, "targets": targets, "buffers": buffers}


# --- dry runs and job directories ------------------------------------------------------


def dry_run(args, spec):
    import json

    transformation, tf_cs = spec["transformation"], spec["checksum"]
    if args.write_remote_job:
        return write_remote_job(args, spec)
    if args.upload:
        stores = run_stores(args)
        upload(stores, spec, args.answer)
    if args.write_job:
        os.makedirs(args.write_job)
        if args.upload:
            _write(args.write_job, "transformation.json.CHECKSUM", tf_cs)
        else:
            _write(args.write_job, "transformation.json", identity_buffer(transformation))
            _write(args.write_job, "command.txt", spec["code"])
            if "__env__" in transformation:
                _write(args.write_job, "env.json", json.dumps(transformation["__env__"], indent=2) + "\n")
        if "__meta__" in transformation:
            _write(args.write_job, "dunder.json", json.dumps({"__meta__": transformation["__meta__"]}, indent=2) + "\n")
    print(tf_cs, flush=True)
    return 0


def _write(directory, name, data):
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def upload(stores, spec, answer=None):
    """Store everything the transformation refers to, and the transformation itself."""
    from seamless.run.execute import store_transformation
    from seamless.run.inputs import store_input
    from seamless.transfer import confirm, human, remote

    if remote(stores.buffer_write):
        files = sum(len(i.files) if i.kind == "directory" else 1 for i in spec["inputs"])
        size = sum(_input_size(i) for i in spec["inputs"])
        if not confirm("upload", files, size, answer, PROG):
            raise UserError(f"upload of {files} input files ({human(size)}) not confirmed (-y to allow)")
    for item in spec["inputs"]:
        store_input(stores, item)
    for cs, buffer in spec["buffers"].items():
        stores.put_buffer(buffer, cs)
    store_transformation(stores, spec["transformation"])


def _input_size(item):
    if item.kind == "directory":
        return sum(os.path.getsize(p) for p in item.files.values())
    return os.path.getsize(item.source) if os.path.isfile(item.source) else 0


def write_remote_job(args, spec):
    """A job directory that runs with plain bash: inputs, values, transform.sh."""
    from seamless.run.execute import pins_of
    from seamless.run.job import HEADER, Job

    stores = run_stores(args)
    upload(stores, spec, args.answer)
    transformation = spec["transformation"]
    target = os.path.abspath(os.path.expanduser(args.write_remote_job))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    job = Job(stores, parent=os.path.dirname(target))
    try:
        job.materialize(pins_of(transformation, stores), spec["code"])
        for name, value in _metavars(transformation, spec).items():
            job.env[name] = value
        exports = "".join(f"export {k}={_quote(v)}\n" for k, v in sorted(job.env.items()) if is_name(k))
        script = "#!/bin/bash\n" + exports + HEADER + spec["code"]
        path = os.path.join(job.dir, "transform.sh")
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, 0o755)
        os.rename(job.dir, target)
        job.release()
    except BaseException:
        job.cleanup()
        raise
    print(f"{PROG}: wrote {target}: run it with `cd {target} && bash transform.sh` (writes RESULT)",
          file=sys.stderr)
    print(spec["checksum"], flush=True)
    return 0


def _metavars(transformation, spec):
    from seamless.checksum import deserialize

    return {name: deserialize(spec["buffers"][pin[2]], "str")
            for name, pin in transformation.items() if name.startswith("META__")}


def _quote(value):
    import shlex

    return shlex.quote(value)


# --- the real thing --------------------------------------------------------------------


def execute_or_reuse(args, spec):
    stores = run_stores(args)
    say(args, 1, f"store: {stores.describe()}")
    if not stores.db_write or not stores.buffer_write:
        missing = "database" if not stores.db_write else "buffer store"
        raise UserError(f"no writable {missing} is configured (SEAMLESS_REMOTE_CLIENTS needs a "
                        f"{'database' if missing == 'database' else 'buffer'} entry with \"readonly\": false), "
                        "so a result could not be kept")
    with single_flight(stores, spec["checksum"], args):
        result = reuse(args, spec, stores)
        if result is not None:
            output = open_output(args, spec, stores, result)
            if output is not None:
                say(args, 1, f"cache hit: result {result}")
                return output()
            say(args, 0, f"the cached result {result} is damaged or incomplete: computing it again")
        result = execute(args, spec, stores)
        output = open_output(args, spec, stores, result)
    if output is None:
        raise UserError(f"the result {result} vanished from the store before it could be written out")
    return output()


def reuse(args, spec, stores):
    """The cached result checksum, if its bytes are there (or not needed)."""
    result = stores.get_transformation(spec["checksum"])
    if result is None:
        return None
    if spec["targets"] and args.download and not args.scratch:
        index = _index(args, stores, result)
        present = index is not None and all(stores.has_buffer(cs) for cs in index.values())
    elif spec["targets"]:
        present = _index(args, stores, result) is not None
    else:
        present = stores.has_buffer(result)
    if present:
        return result
    say(args, 1, "cache hit, but the result bytes are gone: computing again")
    return None


def _index(args, stores, result):
    from seamless.run.results import ResultError, read_index

    try:
        return read_index(stores, result)
    except ResultError as exc:
        say(args, 0, f"ignoring the cached result: {exc}")
        return None


def open_output(args, spec, stores, result):
    """Get the result's bytes ready to write out: a function that writes them (stdout or
    the target files) and returns the exit code, or None when a good copy cannot be had
    (corrupt copies are discarded on the way, so computing again repairs the cache)."""
    from seamless.run.results import print_result

    if not spec["targets"]:
        f = stores.open_verified(result)  # verified before the first byte reaches stdout
        if f is None:
            return None

        def write():
            with f:
                print_result(f)
            return 0

        return write
    index = _index(args, stores, result)
    if index is None:
        return None
    if args.download and not args.scratch:
        missing = deliver(args, spec, stores, index)
        if missing:
            return None
    else:
        deliver(args, spec, stores, index)
    return lambda: 0

def execute(args, spec, stores):
    from seamless.run import execute as runner
    from seamless.run.job import JobError
    from seamless.run.results import Futures
    from seamless.store import StoreError

    tf_cs = spec["checksum"]
    say(args, 1, "running the command")
    upload(stores, spec, args.answer)
    parent = os.path.join(stores.root, "jobs") if getattr(stores, "root", None) else None
    if parent:
        os.makedirs(parent, exist_ok=True)
    stop_keepalive = stores.keepalive()  # a long job must not see its servers time out
    try:
        with Futures(spec["targets"] if args.download else [], tf_cs):
            result, usage = runner.run(spec["transformation"], stores, job_parent=parent, quiet=args.quiet,
                                       scratch=args.scratch, fingertip=args.fingertip)
    except JobError as exc:
        if args.quiet and exc.stderr_tail:
            tail = exc.stderr_tail.decode(errors="replace").rstrip("\n").splitlines()[-20:]
            sys.stderr.write("\n".join(tail) + "\n")
        raise CommandFailed(str(exc), exc.code) from None
    except StoreError as exc:
        raise UserError(str(exc)) from None
    finally:
        stop_keepalive()
    stores.set_transformation(tf_cs, result)
    record = {"schema_version": 1, "tf_checksum": tf_cs, "result_checksum": result,
              "seamless_version": __version__, "execution_mode": "process", "remote_target": None,
              **usage, "gpu_memory_peak_bytes": None}
    try:
        stores.set_metadata(tf_cs, result, record)
    except Exception as exc:  # provenance only: never fail a computed result over it
        say(args, 1, f"execution record not written: {exc}")
    return result


class CommandFailed(UserError):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def deliver(args, spec, stores, index):
    """Write the target files (or only their sidecars); returns what could not be had."""
    from seamless.run.results import ResultError, deliver as write_targets
    from seamless.transfer import confirm, remote

    downloading = args.download and not args.scratch
    if downloading and remote(stores.buffer_read) and not confirm("download", len(index), 0, args.answer, PROG):
        raise UserError(f"download of {len(index)} result files not confirmed (-y to allow)")
    try:
        return write_targets(stores, index, spec["targets"], download=downloading)
    except ResultError as exc:
        raise UserError(str(exc)) from None


class single_flight:
    """One execution per transformation on this machine: a second identical run waits."""

    def __init__(self, stores, tf_cs, args):
        from seamless.session import cache_root

        root = getattr(stores, "root", None) or cache_root()
        self.path = os.path.join(root, "locks", tf_cs + ".lock")
        self.args = args

    def __enter__(self):
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        told = False
        while True:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not told:
                    say(self.args, 0, "an identical command is running: waiting for its result")
                    told = True
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:  # the holder before us removes the file when done: lock the live one
                if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                    return self
            except FileNotFoundError:
                pass
            os.close(self.fd)

    def __exit__(self, *exc):
        try:
            os.unlink(self.path)  # while still holding the lock; waiters then retry
        except FileNotFoundError:
            pass
        os.close(self.fd)
        return False


def entry():
    """Console entry: exit with the command's own exit code when it failed."""
    from seamless.cli import error_line, run

    def wrapped(argv):
        try:
            return main(argv)
        except CommandFailed as exc:
            error_line(PROG, exc)
            return exc.code

    run(wrapped, PROG)
