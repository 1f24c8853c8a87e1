"""Checksum and Buffer: the values the Python API hands out (upstream's seamless.Checksum
and seamless.Buffer).

A Checksum is the hex string itself (so it compares, hashes and prints as one) with
upstream's methods; resolve() finds its buffer in this process's caches or the
stores in force, fingertip() also recomputes it from a transformation that made it. A
Buffer is bytes with their checksum: Buffer(b"...") takes them as they are,
Buffer(value, celltype) serializes a value as upstream does.
"""

from seamless.cache import cache
from seamless.checksum import calculate_checksum, deserialize, parse_checksum, serialize

# cs -> bytes, rebuilding a buffer from a transformation that made it: installed by
# seamless.execution.fingertip (the layer that can run transformations imports this one)
recompute_missing = None


class CacheMissError(LookupError):
    """A buffer is in no cache and no store."""


def _checksum_file(filename: str) -> str:
    return filename if filename.endswith(".CHECKSUM") else filename + ".CHECKSUM"


class Checksum(str):
    __slots__ = ()

    def __new__(cls, value):
        if isinstance(value, Checksum):
            return value
        return super().__new__(cls, parse_checksum(value))

    @classmethod
    def load(cls, filename: str) -> "Checksum":
        """From a .CHECKSUM file (the suffix is added when missing)."""
        with open(_checksum_file(filename)) as f:
            return cls(f.read().strip())

    def save(self, filename: str) -> None:
        """To a .CHECKSUM file (the suffix is added when missing)."""
        with open(_checksum_file(filename), "w") as f:
            f.write(self.hex() + "\n")

    def hex(self) -> str:
        return str.__str__(self)

    def bytes(self) -> bytes:
        return bytes.fromhex(self)

    def __str__(self):
        return str.__str__(self)

    def __repr__(self):
        return repr(str.__str__(self))

    def resolve(self, celltype=None):
        """The buffer (celltype None) or the value it holds."""
        data = cache.get_buffer(self)
        if data is None:
            raise CacheMissError(self.hex())
        return self._as(data, celltype)

    async def resolution(self, celltype=None):
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.resolve, celltype)

    def fingertip(self, celltype=None):
        """Like resolve(), but a missing buffer is recomputed from a transformation that made it."""
        data = cache.get_buffer(self)
        if data is None:
            if recompute_missing is None:
                raise CacheMissError(f"{self.hex()}: in no cache or store (to recompute it, import Checksum from seamless, or import seamless.transformer)")
            data = recompute_missing(self.hex())
        return self._as(data, celltype)

    def _as(self, data, celltype):
        return Buffer(data, checksum=self) if celltype is None else deserialize(data, celltype)

    def incref(self, *, scratch: bool = False) -> None:
        """Keep the buffer in this process's cache (never evicted) until decref()."""
        cache.pin(self.hex(), self.resolve().content)

    def decref(self) -> None:
        cache.unpin(self.hex())


class Buffer:
    __slots__ = ("content", "_checksum")

    def __init__(self, value_or_buffer, celltype=None, *, checksum=None):
        if isinstance(value_or_buffer, Buffer):
            value_or_buffer = value_or_buffer.content
        elif isinstance(value_or_buffer, Checksum):
            raise TypeError("Buffer() takes bytes or a value, not a Checksum: use checksum.resolve()")
        if celltype is not None:
            value_or_buffer = serialize(value_or_buffer, celltype)
        elif not isinstance(value_or_buffer, (bytes, bytearray, memoryview)):
            raise TypeError(f"Buffer() without a celltype takes bytes, not {type(value_or_buffer).__name__}: "
                            f"give one to serialize a value, e.g. Buffer(42, 'int')")
        self.content = bytes(value_or_buffer)
        self._checksum = Checksum(checksum) if checksum is not None else None

    @classmethod
    def load(cls, filename: str) -> "Buffer":
        with open(filename, "rb") as f:
            return cls(f.read())

    def save(self, filename: str) -> None:
        with open(filename, "wb") as f:
            f.write(self.content)

    @property
    def checksum(self) -> Checksum:
        if self._checksum is None:
            self._checksum = Checksum(calculate_checksum(self.content))
        return self._checksum

    def get_checksum(self) -> Checksum:
        return self.checksum

    async def get_checksum_async(self) -> Checksum:
        return self.checksum

    def get_value(self, celltype="mixed"):
        return deserialize(self.content, celltype)

    async def get_value_async(self, celltype="mixed", *, copy=True):
        return self.get_value(celltype)

    def decode(self, encoding="utf-8"):
        return self.content.decode(encoding)

    def incref(self) -> None:
        """Keep it in this process's cache (never evicted) until decref()."""
        cache.pin(self.checksum.hex(), self.content)

    def decref(self) -> None:
        cache.unpin(self.checksum.hex())

    async def write(self) -> bool:
        """Put it in the persistent stores of the configuration in force; False if there are none."""
        stores = cache.stores()
        if stores is None:
            return False
        stores.put_buffer(self.content)
        return True

    def __bytes__(self):
        return self.content

    def __str__(self):
        return str(self.content)

    def __len__(self):
        return len(self.content)

    def __eq__(self, other):
        if isinstance(other, Buffer):
            return self.content == other.content
        if isinstance(other, (bytes, bytearray, memoryview)):
            return self.content == bytes(other)
        return NotImplemented

    def __hash__(self):  # equal to bytes of the same content, so hashed alike
        return hash(self.content)

    def __repr__(self):
        return f"Seamless Buffer, checksum {self.checksum}, length {len(self.content)}"


# upstream's names: seamless.Checksum, seamless.Buffer, seamless.CacheMissError
for _cls in (Checksum, Buffer, CacheMissError):
    _cls.__module__ = "seamless"
