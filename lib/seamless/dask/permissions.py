"""May a Dask worker submit a nested transformation to its cluster? (no dask import)

A Dask worker with N slots advertises the Dask resource S = N: it takes N
transformations at once (each task needs S=1). A transformation whose code calls others
blocks while they run, still holding its slot. So each nested submission raises the
worker's S by one while it is pending, up to `most` (the wrapper gives the worker twice
as many threads as slots: the extra ones are these): the nested task finds a slot even
when every slot is held by a parent that waits for it. Past that, permission is refused
and the Seamless worker that asked runs it itself, which always makes progress. Nesting
never deadlocks, and never floods the cluster with more work than its threads can hold.
"""

import threading


class Permissions:
    def __init__(self, slots, most, advertise):
        self.base, self.most = slots, max(slots, most)
        self.granted = 0
        self.lock = threading.Lock()
        self.advertise = advertise  # advertise(S): tell the scheduler what this worker offers now

    @property
    def slots(self) -> int:
        return self.base + self.granted

    def request(self) -> bool:
        """True (S is raised by one until release()), or False: run it yourself."""
        with self.lock:
            if self.slots >= self.most:
                return False
            self.granted += 1
            self.advertise(self.slots)  # under the lock: the last value told is the current one
        return True

    def release(self):
        with self.lock:
            self.granted = max(0, self.granted - 1)
            self.advertise(self.slots)
