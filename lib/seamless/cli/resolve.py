"""seamless-resolve: print a buffer (or write it to a file), verified, from the stores.

It is seamless-download's single-buffer form, kept for upstream's users: the same
stores, the same checks and error lines, and no sidecar beside -o OUT. CHECKSUM|FILE is
64 hex digits, or a file: X.CHECKSUM, a path X with that sidecar, or a file holding a
checksum, alone or as the one line seamless-checksum / sha256sum write ("CHECKSUM  NAME")
(checksum_of, shared with seamless-fingertip and seamless-cancel).
"""

import argparse
import os

from seamless.checksum import is_checksum, parse_checksum
from seamless.cli import UserError, add_version, open_stores, selection
from seamless.cli.download import to_stdout, why_missing

PROG = "seamless-resolve"


def checksum_of(arg) -> str:
    """The checksum that a CHECKSUM|FILE argument names."""
    if not os.path.exists(arg) and is_checksum(arg):
        return parse_checksum(arg)
    path = arg if arg.endswith(".CHECKSUM") or not os.path.isfile(arg + ".CHECKSUM") else arg + ".CHECKSUM"
    if not os.path.isfile(path):
        raise UserError(f"{arg}: neither a checksum (64 hex digits) nor a file holding one")
    with open(path, "rb") as f:
        text = f.read(1 << 16)
    try:
        (line,) = text.decode().strip().splitlines()
        # the checksum alone, or one line as seamless-checksum and sha256sum write it:
        # "CHECKSUM  NAME" ("\\CHECKSUM ..." when NAME has escapes)
        return parse_checksum(line.split()[0].removeprefix("\\"))
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"{path} does not hold a checksum (64 hex digits, alone or as the first word of "
                        "a seamless-checksum line)") from None


def deliver(stores, cs, output=None) -> bool:
    """Write buffer `cs` to stdout (verified before its first byte) or to the file
    `output` (atomically, verified); False when no store has a good copy."""
    return stores.get_to_file(cs, output) if output is not None else to_stdout(stores, cs)


def add_arguments(p):
    """What seamless-resolve and seamless-fingertip share."""
    add_version(p)
    p.add_argument("item", metavar="CHECKSUM|FILE", help="a checksum, or a file holding one (X.CHECKSUM)")
    p.add_argument("-o", "--output", metavar="OUT", help="write the buffer to OUT (default: stdout)")
    p.add_argument("--project", metavar="P[:SUB]", help="project (and subproject) whose storage to use")
    p.add_argument("--stage", metavar="S[:SUB]", help="stage (and substage) whose storage to use")


def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0], allow_abbrev=False)
    add_arguments(p)
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    cs = checksum_of(args.item)
    stores = open_stores(writable=False, **selection(args))
    stores.warn_corrupt = False  # said in the error line
    if not deliver(stores, cs, args.output):
        raise UserError(f"buffer {why_missing(stores, cs)} (seamless-fingertip recomputes a buffer that a "
                        "known transformation made)")
    return 0
