"""Fingertip: rebuild a buffer that no cache or store holds by re-running a transformation
that produced it (the database's rev_transformation rows), after checking that it gives
the same bytes. Its own missing inputs are rebuilt the same way. One function for every
kind of transformation: a seamless-run command's result files go back into the stores
(a buffer may also be one file of its result directory); a Python transformation's
bytes are handed back, for the caller to keep in memory only, as upstream does (a
scratch result stays scratch).
"""

from seamless import buffer
from seamless.execution.job import TransformationFailure, Unavailable


def recompute(cs, stores, get_buffer, quiet=True, _busy=frozenset()):
    """Rebuild buffer `cs`: its bytes, or None when they are back in the stores. Raises
    Unavailable, saying why each producer could not give it."""
    import json

    from seamless.execution import runner
    from seamless.execution.job import JobError, is_command
    from seamless.store import StoreError

    errors = []
    for tf in stores.get_rev_transformations(cs):
        if tf in _busy:
            continue
        stored = get_buffer(tf)  # a corrupt copy is as good as none
        if stored is None:
            errors.append(f"transformation {tf} made it, but its transformation dict is gone from the stores too")
            continue
        busy = _busy | {tf}

        def recover(input_cs):
            return recompute(input_cs, stores, get_buffer, quiet, busy)

        def inputs(input_cs):
            data = get_buffer(input_cs)
            return data if data is not None else recover(input_cs)

        try:
            transformation = json.loads(stored)
            command = is_command(transformation)
            if command:
                result = runner.run(transformation, stores.get_buffer, stores, quiet=quiet, recover=recover)
            else:
                result = runner.run(transformation, inputs)
        except (TransformationFailure, JobError, StoreError, OSError, ValueError, KeyError) as exc:
            errors.append(f"re-running transformation {tf} failed: {exc}")
            continue
        if result.checksum == cs:
            return result.data
        if command and cs in _values(stores.get_buffer(result.checksum)):  # one file of a result directory
            return None
        errors.append(f"re-running transformation {tf} gave {result.checksum}, not {cs}: it is not deterministic")
    why = "; ".join(errors) if errors else ("no known transformation made it (nor, by itself, one file of a "
                                            "command's result files: run that seamless-run command again)")
    raise Unavailable(f"cannot recompute buffer {cs}: {why}")


def _values(buffer):
    import json

    if buffer is None:
        return ()
    try:
        data = json.loads(buffer)
    except ValueError:
        return ()
    return data.values() if isinstance(data, dict) else ()


def for_python(cs) -> bytes:
    """Checksum.fingertip(): from this process's cache and the stores in force; the
    rebuilt bytes are kept in memory."""
    from seamless.cache import cache

    CacheMissError = buffer.CacheMissError
    stores = cache.stores()
    if stores is None:
        raise CacheMissError(f"{cs}: not in memory, and no stores are in force to find the transformation "
                             "that made it (call seamless.config.init())")
    try:
        data = recompute(cs, stores, cache.get_buffer)
    except Unavailable as exc:
        raise CacheMissError(str(exc)) from None
    if data is None:
        data = cache.get_buffer(cs)
        if data is None:
            raise CacheMissError(f"cannot recompute buffer {cs}: rebuilt, but gone again")
    cache.keep(cs, data)
    return data


# Checksum.fingertip() needs this layer, which a value type must not import: hand it over
# (the faces that give out Checksums, seamless and seamless.transformer, import this module)
buffer.recompute_missing = for_python
