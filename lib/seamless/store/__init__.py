"""Buffer stores and result databases.

A buffer store answers has / get / put by checksum (DirectoryStore, HttpBufferStore).
A result database maps transformation checksum -> result checksum, plus the reverse
lookup and execution records (ResultDB on a seamless.db file, HttpResultDB over HTTP).
Which ones are active comes from seamless.store.clients.
"""


class StoreError(Exception):
    """A store could not do what was asked; the message says why."""


class ChecksumMismatch(StoreError):
    """The bytes do not hash to the checksum they were stored or sent under."""


class CorruptBuffer(StoreError):
    """A stored file no longer hashes to its name (or does not decompress)."""

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class ReadOnlyStore(StoreError):
    """A write was attempted on a store opened read-only."""


class WriteFailed(StoreError):
    """The store's own storage cannot be written (a removed directory, permissions, a
    read-only filesystem, an I/O error): its fault, not the caller's; nothing was stored."""


class NoSpace(WriteFailed):
    """The disk (or quota) is full; nothing was stored."""
