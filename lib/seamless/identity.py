"""Transformation identity: which keys of a transformation dict are hashed, and how.

A transformation dict maps pin names to [celltype, subcelltype, checksum] and carries
dunder keys. The identity buffer keeps the pins and the load-bearing dunders, drops the
orthogonal and derived ones (and every META__ pin), and is serialized as celltype
plain; its SHA-256 is the transformation checksum, byte-identical to upstream's.
"""

from seamless.checksum import calculate_checksum, serialize

LOAD_BEARING = ("__language__", "__output__", "__as__", "__format__", "__schema__")
ORTHOGONAL = ("__meta__", "__env__", "__compilation__", "__record_probe__", "__code_checksum__",
              "__code_text__", "__compilers__", "__languages__")
DERIVED = ("__compiled__", "__header__", "__deps__")
META_PREFIX = "META__"


def identity_dict(transformation: dict) -> dict:
    """The part of a transformation that its checksum covers."""
    kept = {}
    for key, value in transformation.items():
        if key.startswith(META_PREFIX) or key in ORTHOGONAL or key in DERIVED:
            continue
        if key.startswith("__") and key not in LOAD_BEARING:
            raise ValueError(f"Unknown transformation dunder key {key!r}")
        kept[key] = list(value) if isinstance(value, tuple) else value
    return kept


def identity_buffer(transformation: dict) -> bytes:
    return serialize(identity_dict(transformation), "plain")


def transformation_checksum(transformation: dict) -> str:
    return calculate_checksum(identity_buffer(transformation))
