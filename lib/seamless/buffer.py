"""Checksum and Buffer: the values the Python API hands out (upstream's seamless.Checksum
and seamless.Buffer).

A Checksum is the hex string itself (so it compares, hashes and prints as one) with
upstream's methods; resolve() finds its buffer in this process's caches or the
stores in force. A Buffer is bytes with their checksum and a celltype-aware decode.
"""

from seamless.checksum import calculate_checksum, deserialize, parse_checksum


class CacheMissError(LookupError):
    """A buffer is in no cache and no store."""


class Checksum(str):
    __slots__ = ()

    def __new__(cls, value):
        if isinstance(value, Checksum):
            return value
        return super().__new__(cls, parse_checksum(value))

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
        from seamless.transformer.cache import cache

        data = cache.get_buffer(self)
        if data is None:
            raise CacheMissError(self.hex())
        return Buffer(data, self) if celltype is None else deserialize(data, celltype)


class Buffer:
    __slots__ = ("content", "_checksum")

    def __init__(self, content, checksum=None):
        self.content = bytes(content)
        self._checksum = Checksum(checksum) if checksum is not None else None

    @property
    def checksum(self) -> Checksum:
        if self._checksum is None:
            self._checksum = Checksum(calculate_checksum(self.content))
        return self._checksum

    def get_checksum(self) -> Checksum:
        return self.checksum

    def get_value(self, celltype="mixed"):
        return deserialize(self.content, celltype)

    def decode(self, encoding="utf-8"):
        return self.content.decode(encoding)

    def __bytes__(self):
        return self.content

    def __len__(self):
        return len(self.content)

    def __eq__(self, other):
        if isinstance(other, Buffer):
            return self.content == other.content
        return NotImplemented

    def __hash__(self):
        return hash(self.checksum)

    def __repr__(self):
        return f"Seamless Buffer, checksum {self.checksum}, length {len(self.content)}"
