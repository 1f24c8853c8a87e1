"""seamless-jobserver: run transformation jobs for remote clients, wire-compatible with upstream.

    GET  /                                   "Seamless jobserver is running"
    GET  /healthcheck                        "OK"
    POST /run-transformation                 (GET with a body too, as upstream sends it)
         {"transformation_dict", "tf_checksum", "tf_dunder", "scratch", ...}
         -> {"result_checksum", "record_runtime"} once the job is done
    GET  /transformation-status/<checksum>   {"status": running|canceled|failed|done|not-running}
    POST /cancel-transformation/<checksum>   {"canceled": bool, "status": ...}

Only checksums travel: a job's inputs come from the stores named in the status file's
parameters (the remote-clients shape), its result buffer goes to the hashserver before
the answer; the caller writes the database row and the execution record. Python jobs run
in the worker pool (--workers, each with the transformation throttle), bash jobs as
processes of their own, at most workers x throttle at once; the usage figures are
measured where the job ran. Identical jobs submitted together run once. Cancel stops a
job where it runs and frees its slot; finished status entries expire.
"""

import argparse
import json
import os
import socket
import threading
import time

from seamless.checksum import parse_checksum
from seamless.cli import UserError, set_debug
from seamless.identity import transformation_checksum
from seamless.servers.http import Handler, HTTPError, add_server_arguments, make_server
from seamless.servers.service import count, serve

MAX_BODY = 256 << 20
STATUS_TTL = 600.0  # seconds a finished job's status stays queryable
CANCELED = "Transformation was canceled"  # upstream's answer text, which its clients match


class JobHandler(Handler):
    server_version = "seamless-jobserver"
    allowed_methods = ("GET", "POST", "HEAD")

    def route(self, method, path):
        if path == "/" and method in ("GET", "HEAD"):
            return self.respond(200, "Seamless jobserver is running")
        if path == "/run-transformation":
            return self.run_transformation()
        head, _, cs = path.rpartition("/")
        if head == "/transformation-status" and method in ("GET", "HEAD"):
            return self.respond_json(200, {"status": self.server.jobs.status(_checksum(cs))})
        if head == "/cancel-transformation" and method == "POST":
            canceled, status = self.server.jobs.cancel(_checksum(cs))
            return self.respond_json(200, {"canceled": canceled, "status": status})
        raise HTTPError(404, "Not found")

    def run_transformation(self):
        request = _request(self.body.read(MAX_BODY + 1))
        try:
            outcome = self.server.jobs.run(request)
        except CommandFailed as exc:  # the text for everyone; the exit code for our clients
            return self.respond(500, exc.text, headers=[("X-Seamless-Exit-Code", str(exc.code))])
        if outcome is None:
            return self.respond(200, CANCELED)
        self.respond_json(200, outcome)


class CommandFailed(Exception):
    def __init__(self, text, code):
        super().__init__(text)
        self.text, self.code = text, code


def _checksum(text):
    try:
        return parse_checksum(text)
    except ValueError:
        raise HTTPError(400, f"Invalid checksum: {text[:80]!r}") from None


def _request(body):
    """The job description of a /run-transformation body, checked (400 on anything else)."""
    if len(body) > MAX_BODY:
        raise HTTPError(413, f"request larger than {MAX_BODY} bytes", close=True)
    try:
        rq = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HTTPError(400, f"Invalid JSON: {exc}") from None
    if not isinstance(rq, dict):
        raise HTTPError(400, "Invalid payload: the body must be a JSON object")
    transformation = rq.get("transformation_dict")
    if not isinstance(transformation, dict) or not isinstance(transformation.get("__language__"), str):
        raise HTTPError(400, "Invalid payload: 'transformation_dict' must be a transformation (an object "
                        "with __language__)")
    try:
        tf = parse_checksum(rq.get("tf_checksum"))
    except (TypeError, ValueError):
        raise HTTPError(400, "Invalid payload: 'tf_checksum' must be a checksum in hex") from None
    dunder = rq.get("tf_dunder") or {}
    if not isinstance(dunder, dict):
        raise HTTPError(400, "Invalid payload: 'tf_dunder' must be an object")
    for name, spec in transformation.items():
        if name.startswith("__"):
            continue
        try:
            if not (isinstance(spec, list) and len(spec) == 3):
                raise ValueError
            parse_checksum(spec[2])
        except (TypeError, ValueError):
            raise HTTPError(400, f"Invalid payload: pin {name!r} must be [celltype, subcelltype, checksum]") from None
    output = transformation.get("__output__")
    if "code" not in transformation or not (isinstance(output, list) and len(output) == 3):
        raise HTTPError(400, "Invalid payload: a transformation needs a 'code' pin and an __output__")
    # the dunder keys travel apart (upstream's shape); the job runs on the whole dict
    whole = {**transformation, **{k: v for k, v in dunder.items() if k.startswith("__")}}
    try:
        matches = transformation_checksum(whole) == tf
    except (TypeError, ValueError) as exc:
        raise HTTPError(400, f"Invalid payload: {exc}") from None
    if not matches:  # identical jobs are merged by it: it must be the dict's own
        raise HTTPError(400, "Invalid payload: 'tf_checksum' is not the checksum of 'transformation_dict'")
    return {"tf": tf, "transformation": whole, "scratch": bool(rq.get("scratch"))}


class Jobs:
    """The jobs of this server: running them once each, their status, their cancellation."""

    def __init__(self, stores, slots):
        self.stores = stores
        self.place = _Delegated(stores)
        self.slots = threading.BoundedSemaphore(slots)  # bash jobs at once, as many as the pool runs
        self.lock = threading.Lock()
        self.entries = {}  # tf -> {"status", "job", "finished"}

    def run(self, request):
        from seamless.execution.compute import compute
        from seamless.execution.job import Canceled, Job, JobError, TransformationFailure
        from seamless.store import StoreError

        tf, transformation = request["tf"], request["transformation"]
        entry = self._begin(tf)
        job = Job(tf, transformation, get_buffer=self.stores.get_buffer, scratch=request["scratch"],
                  canceled=lambda: entry["status"] == "canceled")
        if job.command:
            job.setup = self._slot  # its own processes, with the stores its files come from and go to
            job.options.update(stores=self.stores, quiet=True)
        if entry["job"] is None:
            entry["job"] = job
        started, wall = time.time(), time.monotonic()
        try:
            result = compute(job, self.place)
        except (Canceled, TransformationFailure, JobError, StoreError) as exc:
            if entry["status"] == "canceled" or isinstance(exc, Canceled):
                self._end(tf, entry, "canceled")
                return None
            self._end(tf, entry, "failed")
            if isinstance(exc, JobError):  # a command's failure: its stderr too, which is shown nowhere here
                tail = exc.stderr_tail.decode(errors="replace")
                raise CommandFailed(str(exc) + ("\n" + tail if tail else ""), exc.code) from None
            raise HTTPError(500, str(exc)) from None
        except BaseException:
            self._end(tf, entry, "failed")
            raise
        if entry["status"] == "canceled":
            self._end(tf, entry, "canceled")
            return None
        self._end(tf, entry, "done")
        usage = result.usage
        runtime = {"started_at": _iso(started), "finished_at": _iso(time.time()),
                   "wall_time_seconds": usage.get("wall_time_seconds", round(time.monotonic() - wall, 6)),
                   "cpu_user_seconds": usage.get("cpu_time_user_seconds"),
                   "cpu_system_seconds": usage.get("cpu_time_system_seconds"),
                   "memory_peak_bytes": usage.get("memory_peak_bytes"), "gpu_memory_peak_bytes": None,
                   "hostname": socket.gethostname(), "pid": usage.get("pid", os.getpid())}
        answer = {"result_checksum": result.checksum, "record_runtime": runtime}
        if usage.get("stderr"):  # what a command said on stderr: its client shows it
            answer["stderr"] = usage["stderr"]
        return answer

    def _slot(self):
        return _Held(self.slots)

    def _begin(self, tf):
        with self.lock:
            self._expire()
            entry = {"status": "running", "job": None, "finished": None, "runs": 1}
            old = self.entries.get(tf)
            if old is not None and old["status"] == "running":  # identical, at the same time: runs once
                old["runs"] += 1
                return old
            self.entries[tf] = entry
            return entry

    def _end(self, tf, entry, status):
        with self.lock:
            entry["runs"] -= 1
            if entry["status"] != "canceled":
                entry["status"] = status
            if entry["runs"] <= 0:
                entry["finished"], entry["job"] = time.monotonic(), None

    def _expire(self):
        now = time.monotonic()
        for tf in [tf for tf, e in self.entries.items() if e["finished"] and now - e["finished"] > STATUS_TTL]:
            del self.entries[tf]

    def status(self, tf):
        with self.lock:
            self._expire()
            entry = self.entries.get(tf)
            return entry["status"] if entry is not None else "not-running"

    def cancel(self, tf):
        with self.lock:
            entry = self.entries.get(tf)
            if entry is None or entry["status"] != "running":
                return False, entry["status"] if entry is not None else "not-running"
            entry["status"] = "canceled"
            job = entry["job"]
        if job is not None:
            job.cancel()  # kills its worker or its processes: the slot is free at once
        return True, "canceled"


class _Held:
    """A bash job's slot, held while it runs."""

    def __init__(self, slots):
        self.slots = slots

    def __enter__(self):
        self.slots.acquire()

    def __exit__(self, *exc):
        self.slots.release()
        return False


class _Delegated:
    """The jobserver's place: it looks nothing up (its caller did) and keeps only the
    result buffer (the caller writes the database row and the record)."""

    lock_dir = None

    def __init__(self, stores):
        self.stores = stores

    def lookup(self, job):
        return None

    def note(self, hit):
        pass  # the client that asked counts it

    def keep(self, job, result):
        if result.data is not None and not job.scratch:
            self.stores.put_buffer(result.data, result.checksum)


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="seamless-jobserver",
        description="Run transformation jobs for remote clients in a pool of worker processes "
        "(protocol-compatible with upstream's seamless-jobserver).")
    add_server_arguments(parser, writable=False)
    parser.add_argument("--workers", type=count, default=1, metavar="N",
                        help="worker processes (default 1), each running up to "
                        "$SEAMLESS_WORKER_TRANSFORMATION_THROTTLE (default 3) jobs at once")
    parser.add_argument("--clients", metavar="JSON",
                        help="the stores jobs read and write (the SEAMLESS_REMOTE_CLIENTS shape; default: "
                        "the status file's parameters, else $SEAMLESS_REMOTE_CLIENTS)")
    return parser.parse_args(argv)


def main(argv):
    from seamless.execution import backends, pool
    from seamless.store.clients import ClientsError, StoreSet

    args = parse_args(argv)
    set_debug(args.verbose)
    server = make_server(JobHandler, args)

    def start(parameters):
        clients = args.clients or ({k: v for k, v in parameters.items() if k in ("buffer", "database")}
                                   if parameters.get("buffer") else None) or os.environ.get("SEAMLESS_REMOTE_CLIENTS")
        if not clients:
            raise UserError("no stores to run jobs against: give --clients JSON, a status file with "
                            "parameters, or SEAMLESS_REMOTE_CLIENTS")
        try:
            stores = StoreSet.from_clients(clients, in_remote=True)
        except (ClientsError, ValueError) as exc:
            raise UserError(str(exc)) from None
        if not stores.buffer_write:
            raise UserError("the stores have no writable buffer store: results could not be kept")
        backends.spawn(args.workers)
        server.jobs = Jobs(stores, args.workers * pool.throttle())

    try:
        return serve(server, args, f"jobserver with {args.workers} worker(s)", start)
    finally:
        backends.close()
