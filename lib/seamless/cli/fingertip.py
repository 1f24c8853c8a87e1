"""seamless-fingertip: deliver a buffer, recomputing it if it is gone from the stores.

A buffer that no store holds is rebuilt by re-running a transformation that the
database says produced it (seamless.execution.fingertip.recompute, as seamless-run
--fingertip does for its inputs; its own missing inputs are rebuilt the same way),
here, in this process. The re-run must give the same checksum; the rebuilt buffer is
stored, then printed or written to -o OUT like seamless-resolve.
"""

import argparse
import contextlib
import sys

from seamless.cli import UserError, open_stores, selection
from seamless.cli.resolve import add_arguments, checksum_of, deliver

PROG = "seamless-fingertip"


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False)
    add_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true", help="say on stderr when it recomputes, and show "
                   "the re-run's stderr")
    return p.parse_args(argv)


def main(argv):
    from seamless.execution.fingertip import recompute
    from seamless.execution.job import Unavailable

    args = parse_args(argv)
    cs = checksum_of(args.item)
    stores = open_stores(**selection(args))
    if not stores.buffer_write:
        raise UserError("no writable buffer store is configured: a recomputed buffer could not be kept")
    if deliver(stores, cs, args.output):
        return 0
    if args.verbose:
        sys.stderr.write(f"{PROG}: buffer {cs} is in no store: recomputing it\n")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # what a re-run command prints is not the buffer
            data = recompute(cs, stores, stores.get_buffer, quiet=not args.verbose)
    except Unavailable as exc:
        raise UserError(str(exc)) from None
    if data is not None:  # a Python transformation's result: handed back, not stored yet
        stores.put_buffer(data, cs)
    if not deliver(stores, cs, args.output):
        raise UserError(f"buffer {cs} was recomputed, but the stores do not give it back")
    return 0
