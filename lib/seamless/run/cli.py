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
import time
from contextlib import contextmanager

from seamless.cli import UserError, add_version, open_stores, selection, set_debug
from seamless.identity import identity_buffer
from seamless.run import argtyping
from seamless.run.argtyping import ArgtypeError
from seamless.run.transformation import prepare
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
    p.add_argument("--qsubmit", "--qsub", action="store_true",
                   help="append the job to the queue file ($SEAMLESS_QUEUE_FILE, default .seamless-queue) "
                   "for seamless-queue to run, instead of running it")
    p.add_argument("--project", metavar="P[:SUB]", help="project (and subproject) whose storage to use")
    p.add_argument("--stage", metavar="S[:SUB]", help="stage (and substage) of the configuration to use")
    p.add_argument("--queue", metavar="Q", help="queue of the selected cluster (for remote execution)")
    p.add_argument("--docker", metavar="IMAGE", help="record a docker image in the environment (not run)")
    p.add_argument("--conda", metavar="ENV", help="activate this conda environment for the command")
    p.add_argument("--direct-print", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--undo", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    return p


def say(args, level, message):
    if not args.quiet and args.verbose >= level:
        sys.stderr.write(f"{getattr(args, 'prog', PROG)}: {message}\n")  # prog: a queued job's name


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
    if args.qsubmit and (args.dry or args.upload or args.write_remote_job):
        raise UserError("--qsubmit cannot be combined with --dry, --upload or --write-remote-job")
    argtyping.on_future = lambda marker, waited: waiting_for(args, marker, waited)

    try:
        spec = prepare(args, command)
    except ArgtypeError as exc:
        raise UserError(str(exc)) from None
    say(args, 1, f"transformation {spec['checksum']}")

    if args.qsubmit:
        return qsubmit(args, spec, argv)
    if args.dry or args.write_remote_job:
        return dry_run(args, spec)
    from seamless.run.results import Futures

    with Futures(spec["targets"] if args.download else [], spec["checksum"]):  # until the results are written
        return execute_or_reuse(args, spec)


def qsubmit(args, spec, argv):
    """--qsubmit: store the inputs, as a miss would, and queue the job for seamless-queue."""
    from seamless.run import queue
    from seamless.run.results import Futures

    if not spec["targets"]:
        raise UserError("--qsubmit needs result files: the queue cannot print to the screen; name them with "
                        "-cp (-cp :FILE for stdout) or redirect the command's output with >")
    stores, _ = run_stores(args)
    require_writable(stores)
    upload(stores, spec, args.answer)
    options = {"local": args.local, "fingertip": args.fingertip, "project": args.project, "stage": args.stage,
               "queue": args.queue}
    try:
        record = queue.submit_record(spec, argv, options, args.scratch, args.download, args.answer)
    except queue.QueueError as exc:
        raise UserError(f"--qsubmit: {exc}") from None
    path = queue.queue_path()
    queue.write_futures(Futures(spec["targets"] if args.download else [], spec["checksum"]))  # a later step waits
    queue.append(path, record)
    say(args, 1, f"queued in {path}")
    return 0


def dry_run(args, spec):
    """--dry (with -j, --upload) and --write-remote-job: nothing runs."""
    from seamless.run import writejob

    stores = None
    if args.upload or args.write_remote_job:
        stores, _ = run_stores(args)
        upload(stores, spec, args.answer)
    if args.write_remote_job:
        target = writejob.write_remote_job(spec, args.write_remote_job, stores)
        print(f"{PROG}: wrote {target}: run it with `cd {target} && bash transform.sh` (writes RESULT)",
              file=sys.stderr)
    elif args.write_job:
        writejob.write_job(spec, args.write_job, uploaded=args.upload)
    print(spec["checksum"], flush=True)
    return 0


def waiting_for(args, marker, waited):
    """An input is still being produced: said under -v at once, and anyway when it is long."""
    name = os.path.relpath(marker)
    name = marker if name.startswith("..") else name
    if not waited or args.verbose < 1:
        say(args, 0 if waited else 1, f"waiting for {name} (another seamless-run is still producing "
                                      f"{name[:-len('.FUTURE')]})")


def report_step(args, stores, resolved, tf, result, elapsed):
    """Say how the step went (-v), and count it for SEAMLESS_SUMMARY."""
    counting = bool(os.environ.get("SEAMLESS_SUMMARY"))
    if not counting and (args.quiet or args.verbose < 1):
        return  # the cache hit's hot path: nothing to look up
    from seamless.run import summary

    if result is None:
        step = {"outcome": "failed", "seconds": round(elapsed, 3)}
    elif result.hit:
        original = summary.original_seconds(stores, tf)
        took = "" if original is None else f" (computing it took {summary.duration(original)})"
        say(args, 1, f"cache hit: result {result.checksum}{took}")
        step = {"outcome": "cached", "seconds": round(elapsed, 3),
                "saved": None if original is None else round(max(0.0, original - elapsed), 3)}
    else:
        wall = result.usage.get("wall_time_seconds")
        wall = elapsed if wall is None else wall
        where = result.mode or "process"
        if where == "remote":
            where = "dask" if getattr(resolved, "remote", None) == "daskserver" else "jobserver"
        host = result.usage.get("hostname")
        if host and host != os.uname().nodename:
            where += f" on {host}"
        say(args, 1, f"executed in {summary.duration(wall)} ({where})")
        step = {"outcome": "executed", "seconds": round(wall, 3)}
    if counting and summary.enabled():
        summary.record(step, quiet=args.quiet)


def run_stores(args):
    """The stores of the configuration in force, and that configuration (None when
    SEAMLESS_REMOTE_CLIENTS or a buffer directory says which stores, not a file)."""
    chosen = []

    def check(resolved):
        chosen.append(resolved)
        for warning in resolved.warnings:
            say(args, 1, warning)

    stores = open_stores(check=check, **selection(args))
    return stores, (chosen[0] if chosen else None)


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


def upload(stores, spec, answer=None):
    """Store everything the transformation refers to, and the transformation itself."""
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
    stores.put_buffer(identity_buffer(spec["transformation"]))  # so it can be found and re-run later


def _input_size(item):
    if item.kind == "directory":
        return sum(os.path.getsize(p) for p in item.files.values())
    return os.path.getsize(item.source) if os.path.isfile(item.source) else 0


def require_writable(stores):
    """Stores that can keep a result, or a UserError."""
    if not stores.db_write or not stores.buffer_write:
        missing = "database" if not stores.db_write else "buffer store"
        raise UserError(f"no writable {missing} is configured (SEAMLESS_REMOTE_CLIENTS needs a "
                        f"{'database' if missing == 'database' else 'buffer'} entry with \"readonly\": false), "
                        "so a result could not be kept")


def execute_or_reuse(args, spec, canceled=None, started=None):
    """Compute (or find) the result and write it out; the exit code. canceled(): polled
    while it waits; started(job): told the job, whose cancel() stops it (seamless-queue)."""
    from seamless.execution.compute import compute
    from seamless.execution.job import JobError, TransformationFailure
    from seamless.store import StoreError

    stores, resolved = run_stores(args)
    say(args, 1, f"store: {stores.describe()}")
    require_writable(stores)
    job, place = execution_job(args, spec, stores, resolved, canceled)
    if started is not None:
        started(job)
    began = time.monotonic()
    try:
        for attempt in range(2):
            result = compute(job, place, refresh=attempt > 0,
                             on_wait=lambda: say(args, 0, "an identical command is running: waiting for its result"))
            output = open_output(args, spec, stores, result.checksum)
            if output is not None:
                report_step(args, stores, resolved, spec["checksum"], result, time.monotonic() - began)
                return output()
            if not result.hit:
                break
            # corrupt copies were discarded on the way: computing again repairs the cache
            say(args, 0, f"the cached result {result.checksum} is damaged or incomplete: computing it again")
    except JobError as exc:
        report_step(args, stores, resolved, spec["checksum"], None, time.monotonic() - began)
        if exc.stderr_tail and (args.quiet or not exc.shown):  # -q hid it, or it ran elsewhere
            tail = exc.stderr_tail.decode(errors="replace").rstrip("\n").splitlines()[-20:]
            sys.stderr.write("\n".join(tail) + "\n")
        raise CommandFailed(str(exc), exc.code) from None
    except (TransformationFailure, StoreError) as exc:
        report_step(args, stores, resolved, spec["checksum"], None, time.monotonic() - began)
        raise UserError(str(exc)) from None
    raise UserError(f"the result {result.checksum} vanished from the store before it could be written out")


def _echo(data):
    """A remote job's stderr, shown as a local job's would be."""
    sys.stderr.buffer.write(data)
    sys.stderr.buffer.flush()


def execution_job(args, spec, stores, resolved, canceled=None):
    """The command as a job for the execution path, and the place of its results."""
    from seamless.execution.job import Job
    from seamless.execution.places import InStores, lock_dir_of
    from seamless.session import cache_root

    parent = os.path.join(stores.root, "jobs") if getattr(stores, "root", None) else None

    @contextmanager
    def setup():  # only when it really runs: the inputs go first; live servers
        say(args, 1, "running the command")
        upload(stores, spec, args.answer)
        if parent:
            os.makedirs(parent, exist_ok=True)
        stop_keepalive = stores.keepalive()  # a long job must not see its servers time out
        try:
            yield
        finally:
            stop_keepalive()

    recover = None
    if args.fingertip:
        from seamless.execution.fingertip import recompute

        recover = lambda cs: recompute(cs, stores, stores.get_buffer)  # noqa: E731

    job = Job(spec["checksum"], spec["transformation"], spec["buffers"], stores.get_buffer, scratch=args.scratch,
              local=args.local, configuration=resolved, setup=setup, notify=lambda message: say(args, 0, message),
              echo=None if args.quiet else _echo, canceled=canceled,
              stores=stores, job_parent=parent, quiet=args.quiet, recover=recover)
    lock_dir = lock_dir_of(stores) or os.path.join(cache_root(), "locks")
    said = set()

    def say_once(level, message):  # compute() may look a result up twice (before and after its latch)
        if message not in said:
            said.add(message)
            say(args, level, message)

    return job, InStores(stores, lock_dir, usable=lambda result: usable(args, spec, stores, result, say_once),
                         say=lambda message: say(args, 1, message))


def usable(args, spec, stores, result, say_once) -> bool:
    """Is a cached result good enough for a hit: are its bytes there (or not needed)?"""
    if spec["targets"] and args.download and not args.scratch:
        index = _index(stores, result, lambda message: say_once(0, message))
        present = index is not None and all(stores.has_buffer(cs) for cs in index.values())
    elif spec["targets"]:
        present = _index(stores, result, lambda message: say_once(0, message)) is not None
    else:
        present = stores.has_buffer(result)
    if not present:
        say_once(1, "cache hit, but the result bytes are gone: computing again")
    return present


def _index(stores, result, warn):
    from seamless.run.results import ResultError, read_index

    try:
        return read_index(stores, result)
    except ResultError as exc:
        warn(f"ignoring the cached result: {exc}")
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
    index = _index(stores, result, lambda message: say(args, 0, message))
    if index is None:
        return None
    if args.download and not args.scratch:
        missing = deliver(args, spec, stores, index)
        if missing:
            return None
    else:
        deliver(args, spec, stores, index)
    return lambda: 0


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
