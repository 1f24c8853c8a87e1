"""seamless: cached, content-addressed transformations as small Unix tools.

Importing the package imports nothing but its version: tools load only what they use.
The names of upstream's top-level API (Checksum, Buffer, CacheMissError, close,
is_worker) are loaded on first use; this face of the package may reach every layer.
"""

from seamless.version import __version__  # noqa: F401


def close():
    """Stop the worker pool (if any); later calls start afresh."""
    import sys

    backends = sys.modules.get("seamless.execution.backends")
    if backends is not None:
        backends.close()


def is_worker() -> bool:
    import sys

    worker = sys.modules.get("seamless.execution.worker")
    return worker is not None and worker.channel is not None


def __getattr__(name):
    if name in ("Checksum", "Buffer", "CacheMissError"):
        import seamless.execution.fingertip  # noqa: F401 (gives Checksum.fingertip() its recompute)
        from seamless import buffer

        return getattr(buffer, name)
    raise AttributeError(f"module 'seamless' has no attribute {name!r}")
