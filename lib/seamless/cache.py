"""Where this process finds and keeps buffers and results (the Python API's cache).

In memory, always: transformation -> result checksum (successes only) and a bounded
buffer cache (least recently used buffers go first; $SEAMLESS_BUFFER_CACHE_MB, default
512). Persistent, once seamless.config.init() (or set_remote_clients) put stores in
force (use_stores): the same buffer stores and result database seamless-run uses, read
after memory and written after every execution.
"""

import os
import threading
from collections import OrderedDict


def _cap_bytes():
    try:
        return int(float(os.environ.get("SEAMLESS_BUFFER_CACHE_MB", "512")) * 1024 * 1024)
    except ValueError:
        return 512 * 1024 * 1024


class Cache:
    def __init__(self):
        self.in_force = None  # the StoreSet of the configuration in force, once there is one
        self.results = {}
        self.buffers = OrderedDict()
        self.pinned = {}  # checksum -> (count, buffer): incref'ed, never evicted
        self.size = 0
        self.cap = _cap_bytes()
        self.lock = threading.Lock()

    # --- the persistent stores, when a configuration is in force ------------------------

    def use_stores(self, stores):
        """Read and write these persistent stores from now on (None: memory only)."""
        self.in_force = stores

    def stores(self):
        return self.in_force

    # --- buffers -------------------------------------------------------------------------

    def get_buffer(self, cs):
        with self.lock:
            pinned = self.pinned.get(cs)
            data = pinned[1] if pinned is not None else self.buffers.get(cs)
            if data is not None:
                if cs in self.buffers:
                    self.buffers.move_to_end(cs)
                return data
        stores = self.stores()
        data = stores.get_buffer(cs) if stores is not None else None  # a corrupt copy: None
        if data is not None:
            self.keep(cs, data)
        return data

    def has_buffer(self, cs) -> bool:
        with self.lock:
            if cs in self.buffers or cs in self.pinned:
                return True
        stores = self.stores()
        return stores is not None and stores.has_buffer(cs)

    def keep(self, cs, data):
        """Remember a buffer in memory only."""
        if len(data) > self.cap:
            return
        with self.lock:
            if cs in self.buffers:
                self.buffers.move_to_end(cs)
                return
            self.buffers[cs] = data
            self.size += len(data)
            while self.size > self.cap:
                _, old = self.buffers.popitem(last=False)
                self.size -= len(old)

    def pin(self, cs, data):
        """Keep a buffer until as many unpin() calls (upstream's incref/decref)."""
        from seamless.checksum import calculate_checksum

        if calculate_checksum(data) != cs:  # a Buffer given a wrong checksum= must not poison the cache
            raise ValueError(f"the buffer does not hash to {cs}: not kept")
        with self.lock:
            count = self.pinned[cs][0] if cs in self.pinned else 0
            self.pinned[cs] = (count + 1, data)

    def unpin(self, cs):
        with self.lock:
            if cs not in self.pinned:
                return
            count, data = self.pinned[cs]
            if count > 1:
                self.pinned[cs] = (count - 1, data)
            else:
                del self.pinned[cs]

    # --- results -------------------------------------------------------------------------

    def get_result(self, tf):
        """The result checksum of a transformation whose result buffer can be had, or None."""
        result = self.results.get(tf)
        if result is not None and self.has_buffer(result):
            return result
        stores = self.stores()
        if stores is None:
            return None
        result = stores.get_transformation(tf)
        if result is not None and self.has_buffer(result):
            self.results[tf] = result
            return result
        return None

    def known_result(self, tf):
        """The result checksum recorded for a transformation (its buffer may be gone)."""
        result = self.results.get(tf)
        if result is None:
            stores = self.stores()
            result = stores.get_transformation(tf) if stores is not None else None
        return result

    def set_result(self, tf, result):
        self.results[tf] = result

    def clear(self):
        with self.lock:
            self.results.clear()
            self.buffers.clear()
            self.pinned.clear()
            self.size = 0


cache = Cache()
