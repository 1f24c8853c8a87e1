"""Which stores a tool uses when nothing is said: the one place that decides.

1. SEAMLESS_CACHE=/path: the local cache there (as upstream, it wins over the rest).
2. SEAMLESS_REMOTE_CLIENTS: exactly the hashservers, databases and directories it names.
3. Otherwise the zero-config local cache in ${XDG_CACHE_HOME:-~/.cache}/seamless.
(seamless.yaml configurations slot in between 2 and 3 with the configuration issue.)
"""

import os

from seamless.store.clients import StoreSet


def cache_root(environ=None) -> str:
    environ = os.environ if environ is None else environ
    if environ.get("SEAMLESS_CACHE"):
        return os.path.abspath(os.path.expanduser(environ["SEAMLESS_CACHE"]))
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "seamless")


def stores_at(destination=None, writable=True) -> StoreSet:
    """A buffer directory to use directly, or else the active stores."""
    if destination:
        from seamless.store.directory import DirectoryStore

        store = DirectoryStore(destination, writable=writable, create=writable)
        return StoreSet([store], [store] if writable else [])
    return active_stores()


def active_stores(environ=None) -> StoreSet:
    environ = os.environ if environ is None else environ
    if not environ.get("SEAMLESS_CACHE"):
        stores = StoreSet.from_env(environ)
        if stores is not None:
            return stores
    return StoreSet.local_cache(cache_root(environ))
