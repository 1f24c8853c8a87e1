"""seamless-queue: run the jobs of `seamless-run --qsubmit`; seamless-queue-finish: end it.

    seamless-queue [-q] [-v] [--workers N]
    seamless-queue-finish

seamless-queue tails the queue file (run/queue.py: $SEAMLESS_QUEUE_FILE, default
.seamless-queue) and runs each SUBMIT record through seamless-run's own execution path,
up to N at a time, writing the results into the record's workdir. A record it cannot run
is refused (one stderr line), and the .FUTURE markers --qsubmit wrote for it are removed.
At an EOF record it waits for the running jobs, deletes the queue file and exits: 0 if
every record ran and succeeded, 1 if one was refused or failed, 130 when interrupted
(its jobs are canceled). Records, jobs run, refused records and failed jobs are counted
apart: records = jobs + refused, failed <= jobs.
seamless-queue-finish appends the EOF record and waits for the queue to drain.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

from seamless.cli import UserError, add_version, error_line, set_debug
from seamless.files import atomic_write
from seamless.run import queue

PROG = "seamless-queue"
POLL = 0.1
START_WAIT = 5.0  # seamless-queue-finish: how long a queue started just before may take to appear


def parser():
    p = argparse.ArgumentParser(prog=PROG, description="Run the jobs that `seamless-run --qsubmit` appends to "
                                "the queue file ($SEAMLESS_QUEUE_FILE, default .seamless-queue), several at "
                                "a time, until seamless-queue-finish ends the queue.")
    add_version(p)
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr; hide the jobs' stderr")
    p.add_argument("-v", "--verbose", action="count", default=0, help="say more on stderr (repeatable)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="jobs run at once (default: the configuration's nparallel, or the number of CPUs)")
    return p


def main(argv):
    args = parser().parse_args(argv)
    set_debug(args.verbose >= 2)
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    path = queue.queue_path()
    try:
        queue.check_queue_file(path)
        with queue.Running(path):
            return Queue(path, args).serve()
    except queue.QueueError as exc:
        raise UserError(str(exc)) from None


class Queue:
    def __init__(self, path, args):
        self.path, self.args = path, args
        self.jobs = []  # the Jobs started, in order
        self.records = self.refused = self.failed = 0  # records other than EOF; not run; run and failed
        self.stop = threading.Event()
        self.slots = None
        self.lock = threading.Lock()

    def say(self, message):
        if not self.args.quiet:
            sys.stderr.write(f"{PROG}: {message}\n")

    def fail(self, message):
        """A job that ran (or was to run) and failed."""
        with self.lock:
            self.failed += 1
        error_line(PROG, message)

    def refuse(self, why, record=None):
        """A record that is not run: its markers go, so that no later step waits for it."""
        self.refused += 1
        label = f"record {self.records}"
        if record is not None:
            sub = queue.Submission(record)
            sub.remove_futures()
            label += f" ({sub.command})"
        error_line(PROG, f"{label} refused: {why}")

    def outcome(self) -> dict:
        return {"records": self.records, "jobs": len(self.jobs), "refused": self.refused, "failed": self.failed}

    def serve(self) -> int:
        from seamless.run import cli

        # the stores and configuration of this directory: errors now, not per job; its nparallel
        stores, resolved = cli.run_stores(cli.parser().parse_args(["-q", "true"]))
        cli.require_writable(stores)
        workers = self.args.workers or (resolved.nparallel if resolved is not None else None) or os.cpu_count() or 1
        self.slots = threading.Semaphore(workers)
        self.say(f"serving {self.path} with {workers} worker{'s' if workers > 1 else ''}")
        signal.signal(signal.SIGTERM, _interrupt)
        tail = queue.Tail(self.path)
        try:
            replies = self.read_until_eof(tail)
            for job in self.jobs:
                if job.thread is not None:
                    job.thread.join()
            with queue.holding(self.path):  # nothing is appended between the last read and the delete
                replies += self.after_eof(tail)
                for pid in replies:
                    atomic_write(queue.reply_path(self.path, pid), json.dumps(self.outcome()))
                os.unlink(self.path)
        except KeyboardInterrupt:
            self.cancel()
            return 130
        finally:
            tail.close()
        self.say(summary(self.outcome()))
        return 1 if self.failed or self.refused else 0

    def read_until_eof(self, tail) -> list:
        """Start every SUBMIT up to the first EOF record; the pid that EOF wants told."""
        first = True
        while True:
            chunks = tail.read()
            if chunks and first:
                queue.check_queue_file(self.path)  # it appeared only now
                first = False
            for n, chunk in enumerate(chunks):
                record = self.decode(chunk)
                if record is None:
                    continue
                if record["queue_command"] == "EOF":
                    tail.pending = b"\0".join(chunks[n + 1:] + [tail.pending])
                    return _reply_pids([record])
                self.submit(record)
            time.sleep(POLL)

    def after_eof(self, tail) -> list:
        """Records that came after the EOF: a SUBMIT is not run (an error); an EOF is answered."""
        records = [r for r in map(self.decode, tail.read()) if r is not None]
        for record in records:
            if record["queue_command"] == "SUBMIT":
                self.refuse("submitted after seamless-queue-finish, not run", record)
        return _reply_pids([r for r in records if r["queue_command"] == "EOF"])

    def decode(self, chunk):
        """The record in chunk, or None when it is refused (counted and said here)."""
        try:
            record = queue.decode(chunk)
        except queue.QueueError as exc:
            self.records += 1
            self.refuse(exc)
            return None
        if record["queue_command"] != "EOF":
            self.records += 1
            if record["queue_command"] != "SUBMIT":
                self.refuse(f"unknown queue_command {record['queue_command']!r}")
                return None
        return record

    def submit(self, record):
        sub = queue.Submission(record)
        try:
            sub.check()
        except Exception as exc:  # whatever the record holds, it is this record's error only
            self.refuse(exc if isinstance(exc, queue.QueueError) else
                        f"malformed record ({type(exc).__name__}: {exc})", record)
            return
        job = Job(self, len(self.jobs) + 1, sub)
        self.jobs.append(job)
        job.start()

    def cancel(self):
        self.stop.set()
        running = [job for job in self.jobs if job.thread is not None and job.thread.is_alive()]
        if running:
            self.say(f"interrupted: canceling {len(running)} jobs")
        deadline = time.monotonic() + 30
        while running and time.monotonic() < deadline:
            for job in running:
                if job.job is not None:
                    job.job.cancel()
            for job in running:
                job.thread.join(POLL)
            running = [job for job in running if job.thread.is_alive()]


class Job:
    """One queued job: its .FUTURE markers from now until it has ended, its thread."""

    def __init__(self, owner, number, sub):
        self.owner, self.number, self.sub = owner, number, sub
        self.job = None  # the execution job, once it runs: its cancel() stops it
        self.futures = self.thread = None  # once it is started

    def start(self):
        from seamless.run.results import Futures

        targets = self.sub.targets if self.sub.download else []  # as seamless-run: -nd writes none
        self.futures = Futures(targets, self.sub.checksum).__enter__()
        self.thread = threading.Thread(target=self.run, name=f"seamless-queue-job-{self.number}")
        self.thread.start()

    def run(self):
        from seamless.execution.job import Canceled
        from seamless.run import cli

        owner, sub = self.owner, self.sub
        label = f"job {self.number} ({sub.command})"
        try:
            with owner.slots:
                if owner.stop.is_set():
                    raise Canceled("canceled")
                owner.say(f"job {self.number} started: {sub.command}")
                args, spec = job_request(sub, owner.args)
                args.prog = f"{PROG}: job {self.number}"
                cli.execute_or_reuse(args, spec, canceled=owner.stop.is_set,
                                     started=lambda job: setattr(self, "job", job))
            owner.say(f"job {self.number} done")
        except Canceled:
            owner.fail(f"{label}: canceled")
        except (UserError, OSError) as exc:
            owner.fail(f"{label}: {_os_message(exc)}")
        except Exception as exc:  # a store's error, or a bug: this job fails, not the queue
            owner.fail(f"{label}: {type(exc).__name__}: {exc}")
        finally:
            self.futures.__exit__(None, None, None)


def job_request(sub, queue_args):
    """seamless-run's arguments and prepared command for a checked SUBMIT record: parsed by
    seamless-run's own parser, so every option has the default seamless-run gives it."""
    from seamless.run import cli

    argv = ["-q"] if queue_args.quiet else ["-v"] * queue_args.verbose
    argv += ["-y" if sub.answer else "-n"]
    if not sub.download:
        argv.append("-nd")
    if sub.scratch:
        argv.append("--scratch")
    options = sub.options
    for flag in ("local", "fingertip"):
        if options.get(flag) is True:
            argv.append("--" + flag)
    for name in ("project", "stage", "queue"):
        value = options.get(name)
        if isinstance(value, str) and value:
            argv.append(f"--{name}={value}")  # one word: a value is never taken for an option
    args = cli.parser().parse_args(argv + ["--", "true"])
    spec = {"checksum": sub.checksum, "transformation": sub.transformation, "buffers": {}, "inputs": [],
            "targets": sub.targets}  # the inputs are in the stores: --qsubmit put them there
    return args, spec


def _os_message(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


def summary(outcome) -> str:
    """The queue's last line: '18 records: 13 jobs run (3 failed), 5 refused'."""
    def n(key):
        value = outcome.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    records, jobs = n("records"), n("jobs")
    return (f"{records} record{'' if records == 1 else 's'}: {jobs} job{'' if jobs == 1 else 's'} run "
            f"({n('failed')} failed), {n('refused')} refused")


def _reply_pids(records) -> list:
    return [r["reply_pid"] for r in records
            if isinstance(r.get("reply_pid"), int) and not isinstance(r.get("reply_pid"), bool)
            and r["reply_pid"] > 0]


def _interrupt(signum, frame):
    raise KeyboardInterrupt


# --- seamless-queue-finish -----------------------------------------------------------------


def finish_parser():
    p = argparse.ArgumentParser(prog="seamless-queue-finish",
                                description="End the queue: append the EOF record to the queue file "
                                "($SEAMLESS_QUEUE_FILE, default .seamless-queue) and wait until seamless-queue "
                                "has run every job and deleted it.")
    add_version(p)
    return p


def finish(argv):
    finish_parser().parse_args(argv)
    path = queue.queue_path()
    deadline = time.monotonic() + START_WAIT
    while (info := queue.serving(path)) is None:  # `seamless-queue &` may still be starting
        if time.monotonic() > deadline:
            raise UserError(f"no seamless-queue is serving {path} (start one first: `seamless-queue &`); "
                            "nothing was appended")
        time.sleep(POLL)
    pid = os.getpid()
    reply = queue.reply_path(path, pid)
    if os.path.exists(reply):
        os.unlink(reply)
    queue.append(path, {"queue_command": "EOF", "reply_pid": pid})
    while True:
        outcome = _read_reply(reply)
        if outcome is None and queue.serving(path) is None:
            outcome = _read_reply(reply)  # written before the queue stops
            if outcome is None:
                if os.path.exists(path):
                    raise UserError(f"seamless-queue (pid {info.get('pid', '?')}) stopped before it "
                                    f"drained {path}")
                return 0
        if outcome is not None:
            while os.path.exists(path) and queue.serving(path) is not None:
                time.sleep(POLL)
            outcome = outcome if isinstance(outcome, dict) else {}
            if outcome.get("failed") or outcome.get("refused"):
                raise UserError(f"{summary(outcome)} (seamless-queue's stderr says which)")
            return 0
        time.sleep(POLL)


def _read_reply(reply):
    try:
        with open(reply) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    os.unlink(reply)
    try:
        return json.loads(text)
    except ValueError:
        return {}
