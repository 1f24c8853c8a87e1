"""seamless-checksum: print the Seamless checksum of files, like sha256sum."""

import argparse
import sys

from seamless.checksum import checksum_stream
from seamless.cli import add_version, error_line


def main(argv):
    parser = argparse.ArgumentParser(
        prog="seamless-checksum",
        description="Print '<checksum>  <file>' per file (SHA-256 of the exact bytes). "
        "'-' reads standard input.",
    )
    add_version(parser)
    parser.add_argument("files", nargs="*", default=["-"], metavar="FILE")
    args = parser.parse_args(argv)
    failed = False
    out = sys.stdout
    for name in args.files:
        try:
            if name == "-":
                checksum, _ = checksum_stream(sys.stdin.buffer)
            else:
                with open(name, "rb", buffering=0) as f:
                    checksum, _ = checksum_stream(f)
        except IsADirectoryError:
            error_line(parser.prog, f"{name}: is a directory (checksum its files, or use seamless-upload for a directory index)")
            failed = True
            continue
        except OSError as exc:
            error_line(parser.prog, f"{name}: {exc.strerror}")
            failed = True
            continue
        out.write(f"{checksum}  {name}\n")
    out.flush()
    return 1 if failed else 0
