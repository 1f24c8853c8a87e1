"""Checksums and celltype serialization, byte-identical to upstream Seamless.

A checksum is the lowercase hex SHA-256 of a buffer's exact bytes. A value becomes a
buffer through its celltype; two JSON dialects are involved:

* "plain" follows orjson (OPT_INDENT_2 | OPT_SORT_KEYS): UTF-8 output, shortest
  round-trip floats written positionally only for 1e-5 <= |x| < 1e16, NaN/Inf as null.
* "mixed" follows the standard library (json.dumps(sort_keys=True, indent=2)):
  ASCII-escaped output, Python float repr, NaN written as NaN.

Only the standard library is imported here: this module is on seamless-run's hot path.
"""

import hashlib
import math

try:  # the C escaper, exactly like orjson; importing json itself costs ms on the hot path
    from _json import encode_basestring as _encode_str
except ImportError:  # pragma: no cover
    from json.encoder import py_encode_basestring as _encode_str

CHUNK = 1 << 20

CELLTYPES = (
    "binary", "mixed", "text", "python", "ipython", "plain", "yaml",
    "str", "bytes", "int", "float", "bool", "checksum",
)
TEXT_CELLTYPES = ("text", "python", "ipython", "yaml")
# celltypes that upstream accepts as aliases of plain
_PLAIN_ALIASES = ("deepcell", "deepfolder", "folder", "module")


def calculate_checksum(buffer) -> str:
    """Lowercase hex SHA-256 of a bytes-like buffer."""
    return hashlib.sha256(buffer).hexdigest()


def checksum_stream(fileobj, chunk=CHUNK) -> tuple[str, int]:
    """Hash a binary stream in constant memory; return (checksum, length)."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    total = 0
    readinto = getattr(fileobj, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(view)
            if not n:
                break
            h.update(view[:n])
        else:
            data = fileobj.read(chunk)
            if not data:
                break
            n = len(data)
            h.update(data)
        total += n
    return h.hexdigest(), total


def checksum_file(path) -> str:
    with open(path, "rb", buffering=0) as f:
        return checksum_stream(f)[0]


def parse_checksum(value) -> str:
    """Normalize a checksum (hex string of any case, or 32 raw bytes) to lowercase hex.

    Raises ValueError for anything else. Unlike bytes.fromhex, embedded whitespace
    is refused: a checksum is exactly 64 hex digits.
    """
    if isinstance(value, (bytes, bytearray)) and len(value) == 32:
        return bytes(value).hex()
    if isinstance(value, str):
        if len(value) != 64:
            raise ValueError(f"checksum must be 64 hex digits, got {len(value)} characters")
        low = value.lower()
        if low.strip("0123456789abcdef"):
            raise ValueError("checksum must contain only hex digits")
        return low
    raise ValueError(f"checksum must be a 64-digit hex string, not {type(value).__name__}")


def is_checksum(value) -> bool:
    try:
        parse_checksum(value)
    except ValueError:
        return False
    return True


# --- plain: orjson-compatible pretty JSON -------------------------------------------------

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def plain_float(x: float) -> str:
    """A float the way orjson writes it (ryu's shortest digits and layout rules)."""
    if x != x or x in (math.inf, -math.inf):
        return "null"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    text = repr(x)  # shortest round-trip digits, the same digits ryu finds
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp = text.partition("e")
    intpart, _, frac = mantissa.partition(".")
    alldigits = intpart + frac
    stripped = alldigits.lstrip("0")
    # value = 0.DIGITS x 10**point
    point = len(intpart) + int(exp or 0) - (len(alldigits) - len(stripped))
    digits = stripped.rstrip("0")
    n = len(digits)
    if 0 < point <= 16:
        if n <= point:
            body = digits + "0" * (point - n) + ".0"
        else:
            body = digits[:point] + "." + digits[point:]
    elif -5 < point <= 0:
        body = "0." + "0" * (-point) + digits
    else:
        body = digits[0] + ("." + digits[1:] if n > 1 else "") + "e" + str(point - 1)
    return sign + body


def _plain_parts(value, indent: str, out: list):
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise TypeError("Integer exceeds 64-bit range")
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(plain_float(value))
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = indent + "  "
        out.append("[\n")
        for i, item in enumerate(value):
            if i:
                out.append(",\n")
            out.append(inner)
            _plain_parts(item, inner, out)
        out.append("\n" + indent + "]")
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        for key in value:
            if not isinstance(key, str):
                raise TypeError("Dict key must be str")
        inner = indent + "  "
        out.append("{\n")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",\n")
            out.append(inner + _encode_str(key) + ": ")
            _plain_parts(value[key], inner, out)
        out.append("\n" + indent + "}")
    else:
        raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def plain_dumps(value) -> str:
    """orjson.dumps(value, OPT_INDENT_2 | OPT_SORT_KEYS) as text (no trailing newline)."""
    out: list = []
    _plain_parts(value, "", out)
    return "".join(out)


def mixed_dumps(value) -> str:
    import json

    return json.dumps(value, sort_keys=True, indent=2)


# --- serialization per celltype -----------------------------------------------------------


def _decoded(value):
    return value.decode() if isinstance(value, (bytes, bytearray)) else value


def serialize(value, celltype: str) -> bytes:
    """The buffer upstream Seamless makes of `value` for `celltype`."""
    if celltype in _PLAIN_ALIASES:
        celltype = "plain"
    if celltype == "plain":
        return (plain_dumps(value) + "\n").encode()
    if celltype == "str":
        if not isinstance(value, bool):  # upstream keeps a bool as a bool, and str()s bytes
            value = str(value)
        return (plain_dumps(value) + "\n").encode()
    if celltype in ("int", "float", "bool"):
        cast = {"int": int, "float": float, "bool": bool}[celltype]
        return (plain_dumps(cast(_decoded(value))) + "\n").encode()
    if celltype == "checksum":
        if isinstance(value, (bytes, bytearray)):
            value = parse_checksum(bytes(value))
        return (plain_dumps(value) + "\n").encode()
    if celltype in TEXT_CELLTYPES:
        return (str(_decoded(value)).rstrip("\n") + "\n").encode()
    if celltype == "bytes":
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if hasattr(value, "tobytes"):
            return value.tobytes()
        return str(value).rstrip("\n").encode()
    if celltype == "binary":
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        return _npy_bytes(value)
    if celltype == "mixed":
        if isinstance(value, (bytes, bytearray)):
            return _npy_bytes_scalar(bytes(value))
        if _is_numpy_array(value):
            return _npy_bytes(value)
        return (mixed_dumps(value) + "\n").encode()
    raise ValueError(f"unknown celltype {celltype!r}; known: {', '.join(CELLTYPES)}")


def deserialize(buffer: bytes, celltype: str):
    """The value upstream Seamless reads from `buffer` for `celltype`."""
    import json

    if celltype in _PLAIN_ALIASES:
        celltype = "plain"
    if celltype in TEXT_CELLTYPES:
        return buffer.decode().rstrip("\n")
    if celltype == "str":
        value = json.loads(buffer)
        return value if isinstance(value, str) else str(value)  # upstream coerces: true -> "True"
    if celltype in ("plain", "int", "float", "bool", "checksum"):
        return json.loads(buffer)
    if celltype in ("bytes", "binary"):
        if celltype == "binary" and buffer.startswith(b"\x93NUMPY"):
            return _npy_load(buffer)
        return bytes(buffer)
    if celltype == "mixed":
        if buffer.startswith(b"\x93NUMPY"):
            scalar = _npy_bytes_scalar_value(buffer)
            return scalar if scalar is not None else _npy_load(buffer)
        if buffer.startswith(b"\x94SEAMLESS-MIXED"):
            raise ValueError("mixed buffers with embedded arrays are not supported")
        return json.loads(buffer)
    raise ValueError(f"unknown celltype {celltype!r}; known: {', '.join(CELLTYPES)}")


def _is_numpy_array(value) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


def _npy_bytes(value) -> bytes:
    try:
        import io

        import numpy as np
    except ImportError:
        raise TypeError("serializing arrays needs numpy, which is not installed") from None
    f = io.BytesIO()
    np.save(f, np.asarray(value), allow_pickle=False)
    return f.getvalue()


_NPY_HEADER = "{'descr': '|S%d', 'fortran_order': False, 'shape': (), }"


def _npy_bytes_scalar(data: bytes) -> bytes:
    """bytes under mixed: a 0-d numpy bytes scalar in .npy format, as numpy writes it
    (built here, so no numpy is needed)."""
    header = _NPY_HEADER % max(len(data), 1)
    total = 10 + len(header) + 1
    header += " " * (-total % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data.ljust(1, b"\0")


def _npy_bytes_scalar_value(buffer: bytes):
    """The bytes in a 0-d |S .npy buffer, or None if it is another array."""
    if buffer[6:8] != b"\x01\x00":
        return None
    size = int.from_bytes(buffer[8:10], "little")
    header = buffer[10:10 + size].decode("latin-1").strip()
    if not (header.startswith("{'descr': '|S") and header.endswith("'shape': (), }")):
        return None
    return buffer[10 + size:].rstrip(b"\0")


def _npy_load(buffer: bytes):
    import io

    import numpy as np

    return np.load(io.BytesIO(buffer), allow_pickle=False)
