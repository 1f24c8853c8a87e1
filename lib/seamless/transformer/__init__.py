"""seamless.transformer: Python functions (and code strings) as cached transformations.

    from seamless.transformer import direct, delayed

    @direct
    def add(a, b):
        return a + b

    add(19, 23)          # 42: computed once, then found by checksum (here, or in the stores)

Upstream's import paths and identity: the same call gives the same transformation
checksum as seamless-transformer 0.6.1. See seamless-python(7).
"""

import threading

import seamless.execution.fingertip  # noqa: F401 (gives Checksum.fingertip() its recompute)

from seamless.transformer.batch import TransformationList, parallel, parallel_async
from seamless.transformer.transformation import Transformation, TransformationError
from seamless.transformer.transformer import DirectTransformer, Environment, Transformer, delayed, direct

global_lock = threading.RLock()  # for user code that is not thread-safe

__all__ = ["direct", "delayed", "Transformation", "TransformationError", "parallel", "parallel_async",
           "TransformationList", "spawn", "has_spawned", "global_lock", "Transformer", "DirectTransformer",
           "Environment"]


def spawn(num_workers=None):
    """Start a pool of worker processes (default: one per CPU); uncached transformations
    then run there. A second call raises RuntimeError."""
    from seamless.execution.backends import spawn as start

    start(num_workers)


def has_spawned() -> bool:
    from seamless.execution.backends import has_spawned as spawned

    return spawned()
