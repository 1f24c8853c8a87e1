"""Fingertip: rebuild a buffer that no cache or store holds by re-running a transformation
that produced it (the database's rev_transformation rows), after checking that it gives
the same bytes. Its own missing inputs are rebuilt the same way. One function for every
kind of transformation: a seamless-run command's result files go back into the stores;
a Python transformation's bytes are handed back, for the caller to keep in memory only,
as upstream does (a scratch result stays scratch). One file of a command's result files
is found through its expression row (path P of result index I is this file): I is
recomputed, which puts its files back, and must still say that P is this file.
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
    busy = _busy | {cs}  # what is being rebuilt up the chain: never again below it
    for tf in stores.get_rev_transformations(cs):
        if tf in busy:
            continue
        stored = get_buffer(tf)  # a corrupt copy is as good as none
        if stored is None:
            errors.append(f"transformation {tf} made it, but its transformation dict is gone from the stores too")
            continue
        inner = busy | {tf}

        def recover(input_cs):
            return recompute(input_cs, stores, get_buffer, quiet, inner)

        def inputs(input_cs):
            data = get_buffer(input_cs)
            return data if data is not None else recover(input_cs)

        try:
            transformation = json.loads(stored)
            if is_command(transformation):
                result = runner.run(transformation, stores.get_buffer, stores, quiet=quiet, recover=recover)
            else:
                result = runner.run(transformation, inputs)
        except (TransformationFailure, JobError, StoreError, OSError, ValueError, KeyError) as exc:
            errors.append(f"re-running transformation {tf} failed: {exc}")
            continue
        if result.checksum == cs:
            return result.data
        errors.append(f"re-running transformation {tf} gave {result.checksum}, not {cs}: it is not deterministic")
    for index, path in _indexes_holding(stores, cs):
        if index in busy:
            continue
        where = f"file {path!r} of result index {index}"
        try:
            recompute(index, stores, get_buffer, quiet, busy)  # re-runs what made the index: its files come back
        except Unavailable as exc:
            errors.append(f"{where}: {exc}")
            continue
        entry = _entry(get_buffer(index), path)
        if entry != cs:  # the index is the authority: a row that says otherwise is not followed
            errors.append(f"{where}: the recomputed index " +
                          (f"says that file is {entry}, not {cs}" if entry else "has no such file"))
        elif stores.has_buffer(cs):
            return None
        else:
            errors.append(f"{where}: recomputed, but the file is not back in the stores")
    why = "; ".join(errors) if errors else "no known transformation made it, nor is it a file of a known result index"
    raise Unavailable(f"cannot recompute buffer {cs}: {why}")


def _indexes_holding(stores, cs):
    """(index checksum, path) of each result index whose entry `path` the databases say is cs."""
    from seamless.store.sqlitedb import INDEX_ENTRY

    for row in stores.get_rev_expression(cs):
        path = row.get("path")
        if (row.get("celltype"), row.get("target_celltype")) == INDEX_ENTRY and isinstance(path, list) \
                and len(path) == 1 and isinstance(path[0], str):
            yield row["checksum"], path[0]


def _entry(data, path):
    """The checksum entry `path` of an index buffer (None if absent or not an index)."""
    import json

    try:
        index = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return index.get(path) if isinstance(index, dict) else None


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
