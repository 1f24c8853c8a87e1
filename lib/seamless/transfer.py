"""What moving many or big buffers needs: confirmation thresholds and a progress bar.

Thresholds follow upstream: uploads above 400 files or 100 MB, downloads above 2000
files or 500 MB ask first (SEAMLESS_MAX_UPLOAD_FILES/_SIZE, SEAMLESS_MAX_DOWNLOAD_FILES/
_SIZE override; sizes like "100 MB"). -y answers yes, -n no; without a terminal to ask,
the transfer goes ahead. Only transfers to or from servers ask; local stores never do.
Downloads are counted in files only (their sizes are not known in advance).
"""

import os
import sys
import time

from seamless.sizes import human, parse_size

LIMITS = {"upload": (400, "100 MB"), "download": (2000, "500 MB")}


def add_confirm_arguments(parser, what="large transfers"):
    """-y/--yes and -n/--no, stored as args.answer (True, False or None: ask)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-y", "--yes", dest="answer", action="store_const", const=True,
                       help=f"do {what} without asking")
    group.add_argument("-n", "--no", dest="answer", action="store_const", const=False,
                       help=f"refuse {what} without asking")


def within_limits(kind, files, size) -> bool:
    max_files, max_size = LIMITS[kind]
    max_files = int(os.environ.get(f"SEAMLESS_MAX_{kind.upper()}_FILES", max_files))
    max_size = parse_size(os.environ.get(f"SEAMLESS_MAX_{kind.upper()}_SIZE", max_size))
    return files <= max_files and size <= max_size


def remote(stores) -> bool:
    """Do any of these buffer stores sit behind a server (transfers worth confirming)?"""
    from seamless.store.directory import DirectoryStore

    return any(not isinstance(s, DirectoryStore) for s in stores)


def confirm(kind, files, size, answer=None, prog="seamless") -> bool:
    """May a transfer of `files` buffers totalling `size` bytes go ahead?"""
    if within_limits(kind, files, size):
        return True
    if answer is not None:
        return answer
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return True
    sys.stderr.write(f"{prog}: confirm {kind} of {files} files, total {human(size)}? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal and after 1 s."""

    def __init__(self, total, label, prog="seamless", enabled=True):
        self.total = max(total, 1)
        self.label = label
        self.prog = prog
        self.done = 0
        self.start = time.monotonic()
        self.shown = False
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0

    def advance(self, amount):
        self.done += amount
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < 1.0 or now - self._last < 0.1:
            return
        self._last = now
        self.shown = True
        fraction = min(self.done / self.total, 1.0)
        bar = "#" * int(30 * fraction)
        sys.stderr.write(f"\r{self.prog}: {self.label} [{bar:<30}] {fraction:4.0%} {human(self.done)}")
        sys.stderr.flush()

    def close(self):
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
