"""A service's life, HTTP or not (the servers here; the Dask wrapper's scheduler too).

* Its options: --port | --port-range A B, --host (default 127.0.0.1), --status-file,
  --timeout, -v.
* Port choice by actually binding: a fixed port, a random free port of a range, or 0.
* The launcher's status-file handshake: wait for the file, read its parameters, write
  "running" with the port (or "failed"), and "stopped" on the way out.
* Idle shutdown after --timeout seconds without a request; SIGTERM, SIGHUP and SIGINT
  end it cleanly.
A service offers bind_port(host, port, port_range) -> port, serve(), stop(), close()
and idle_seconds().
"""

import argparse
import errno
import os
import random
import signal
import sys
import threading
import time

from seamless.cli import UserError, add_version
from seamless.launch.status import StatusFileError, wait_for_status_file, write_final_status, write_status

DEFAULT_PORT_RANGE = (49152, 65535)


def add_service_arguments(parser: argparse.ArgumentParser):
    add_version(parser)
    ports = parser.add_mutually_exclusive_group()
    ports.add_argument("--port", type=port, help="listen on this port (0: any free port)")
    ports.add_argument("--port-range", type=port, nargs=2, metavar=("START", "END"),
                       help="listen on a random free port of this inclusive range")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--status-file", metavar="FILE",
                        help="launcher handshake: wait for FILE, then write port and status into it")
    parser.add_argument("--timeout", type=seconds, metavar="SECONDS",
                        help="exit after SECONDS without any request")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request on stderr")


def port(text):
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 0-65535")
    return value


def count(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def seconds(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def pick_port(host, port, port_range, bind) -> int:
    """bind(port) the given port, or a random free one of port_range; the port bound."""
    if port is not None:
        candidates = [port]
    else:
        start, end = port_range or DEFAULT_PORT_RANGE
        candidates = list(range(start, end + 1))
        random.shuffle(candidates)
    for candidate in candidates:
        try:
            bind(candidate)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and port is None:
                continue
            where = f"{host}:{candidate}" if port is not None else host
            hint = "choose another --port" if exc.errno == errno.EADDRINUSE else "check --host"
            raise UserError(f"cannot listen on {where}: {exc.strerror} ({hint})") from None
        return candidate
    raise UserError(f"no free port in {start}-{end} on {host} (widen --port-range)")


def serve(service, args, describe: str, start=None):
    """Bind, do the status-file handshake, serve until idle timeout or signal.

    `start(parameters)` opens the service's resources after the status file is read
    (its "parameters", {} without one), so that a failure there is reported as status
    "failed". Returns the exit code.
    """
    base = {}
    if args.status_file:
        try:
            base = wait_for_status_file(args.status_file)
        except StatusFileError as exc:
            raise UserError(str(exc)) from None
    try:
        if start is not None:
            parameters = base.get("parameters")
            start(parameters if isinstance(parameters, dict) else {})
        port = service.bind_port(args.host, args.port, args.port_range)
    except BaseException:
        if args.status_file:
            write_status(args.status_file, base, status="failed")
        raise
    if args.status_file:
        write_status(args.status_file, base, port=port, pid=os.getpid(), status="running")
    host = args.host if ":" not in args.host else f"[{args.host}]"
    print(f"http://{host}:{port}", flush=True)
    if args.verbose:
        sys.stderr.write(f"{describe} on http://{host}:{port}\n")

    stop = {"code": 0}

    def shutdown(code):
        stop["code"] = code
        threading.Thread(target=service.stop, daemon=True).start()

    def on_signal(signum, frame):
        shutdown(130 if signum == signal.SIGINT else 0)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    if args.timeout:
        def watch_idle():
            while True:
                time.sleep(min(1.0, args.timeout / 4))
                if service.idle_seconds() >= args.timeout:
                    if args.verbose:
                        sys.stderr.write(f"idle for {args.timeout:g} s: exiting\n")
                    shutdown(0)
                    return

        threading.Thread(target=watch_idle, daemon=True).start()
    try:
        service.serve()
    finally:
        service.close()
        if args.status_file:  # say so, so that the next launch need not probe a dead port
            write_final_status(args.status_file, base, port=port, pid=os.getpid(), status="stopped")
    return stop["code"]
