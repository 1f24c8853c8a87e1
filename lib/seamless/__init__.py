"""seamless: cached, content-addressed transformations as small Unix tools.

Importing the package imports nothing else: tools load only what they use. The names
of upstream's top-level API (Checksum, Buffer, CacheMissError, close, is_worker) are
loaded on first use.
"""

from seamless.version import __version__  # noqa: F401


def close():
    """Stop the worker pool (if any); later calls start afresh."""
    import sys

    dispatch = sys.modules.get("seamless.transformer.dispatch")
    if dispatch is not None:
        dispatch.close_pool()


def is_worker() -> bool:
    import sys

    worker = sys.modules.get("seamless.transformer.worker")
    return worker is not None and worker.channel is not None


def __getattr__(name):
    if name in ("Checksum", "Buffer", "CacheMissError"):
        from seamless import buffer

        return getattr(buffer, name)
    raise AttributeError(f"module 'seamless' has no attribute {name!r}")
