"""Sizes as people write them (500MB, 2G, 1.5TiB) and as tools print them."""

# K, M, G, T alone are decimal, as in ccache's max_size
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}


def parse_size(text) -> int:
    """Bytes from "500MB", "2G", "1.5TiB", "100 kB" or a plain number."""
    written = str(text).strip()
    text = written.upper().replace(" ", "")
    number = text.rstrip("KMGTIB")
    unit = text[len(number):]
    if unit not in UNITS:
        raise ValueError(f"unknown size unit in {written!r} (use e.g. 500MB, 2G, 1.5TiB)")
    try:
        value = float(number)
        if not 0 <= value < 1e30:  # also nan, inf
            raise ValueError
        return int(value * UNITS[unit])
    except ValueError:
        raise ValueError(f"{written!r} is not a size (use e.g. 500MB, 2G, 1.5TiB)") from None


def human(size) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.2f} {unit}" if unit != "B" else f"{size} B"
        size /= 1000
    return f"{size} B"
