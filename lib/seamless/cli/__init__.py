"""What every executable shares: one-line errors, exit codes, debug tracebacks.

Exit codes: 0 ok, 1 error, 2 usage (argparse), 130 interrupted.
"""

import os
import sys


class UserError(Exception):
    """An error the user can fix; its text is the whole message (say what and how)."""


_debug = os.environ.get("SEAMLESS_DEBUG", "") not in ("", "0")


def set_debug(flag: bool = True):
    global _debug
    _debug = _debug or flag


def debug_enabled() -> bool:
    return _debug


def add_version(parser) -> None:
    """--version: the tool's name and the package's version, like every Unix tool."""
    from seamless.version import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s (seamless-toolbox) {__version__}")


def error_line(prog: str, message) -> None:
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.stderr.flush()


def _traceback():
    import traceback

    traceback.print_exc()


def selection(args):
    """The configuration choices of --project P[:SUB], --stage S[:SUB], --queue Q."""
    project, _, subproject = (args.project or "").partition(":")
    stage, _, substage = (args.stage or "").partition(":")
    if args.stage is not None and not stage:
        raise UserError("--stage: the stage name is empty")
    choices = {"project": project or None, "subproject": subproject or None, "queue": getattr(args, "queue", None)}
    return {"workdir": ".", "stage": stage or None, "substage": substage or None, "choices": choices}


def open_stores(destination=None, writable=True, check=None, **chosen):
    """seamless.session.open_stores, any configuration problem as a UserError."""
    from seamless.session import open_stores as open_
    from seamless.store import StoreError
    from seamless.store.sqlitedb import DBError

    try:
        return open_(destination, writable, check, **chosen)
    except (StoreError, DBError, ValueError) as exc:  # ValueError: ConfigError, ClientsError
        raise UserError(str(exc)) from None


def _is_store_error(exc) -> bool:
    """A buffer store's or result database's error (without importing them for it)."""
    store = sys.modules.get("seamless.store")
    db = sys.modules.get("seamless.store.sqlitedb")
    return bool(store and isinstance(exc, store.StoreError) or db and isinstance(exc, db.DBError))


def run(main, prog: str | None = None):
    """Call main(argv) and exit with its code, turning exceptions into one stderr line."""
    prog = prog or os.path.basename(sys.argv[0])
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, as Unix tools do
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        code = 1
    except UserError as exc:
        if _debug:
            _traceback()
        error_line(prog, exc)
        code = 1
    except OSError as exc:
        if _debug:
            _traceback()
        where = f": {exc.filename}" if exc.filename else ""
        error_line(prog, f"{exc.strerror or exc}{where}")
        code = 1
    except Exception as exc:
        if _debug:
            _traceback()
        if _is_store_error(exc):  # its message says what failed: a full disk, a server's answer...
            error_line(prog, exc)
        else:  # a bug: still one line unless debugging
            error_line(prog, f"{type(exc).__name__}: {exc} (set SEAMLESS_DEBUG=1 for a traceback)")
        code = 1
    sys.exit(code or 0)
