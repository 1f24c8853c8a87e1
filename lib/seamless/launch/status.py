"""The status-file handshake between a launcher and the service it starts.

The launcher writes a JSON object to the status file *after* spawning the service.
The service waits for it (up to 20 s), keeps every field, and rewrites it atomically
with "port" and "status": "running" once it listens, or "status": "failed" if it
cannot start. Status files are mode 0600.
"""

import json
import os
import time

from seamless.files import atomic_write

WAIT_SECONDS = 20.0


class StatusFileError(Exception):
    pass


def wait_for_status_file(path, timeout=WAIT_SECONDS) -> dict:
    """Wait for the launcher's JSON object; return it."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise StatusFileError(f"status file {path} did not appear within {timeout:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    for _ in range(50):  # the launcher may still be writing it non-atomically
        try:
            with open(path) as f:
                data = json.load(f)
            break
        except json.JSONDecodeError:
            time.sleep(0.1)
    else:
        raise StatusFileError(f"status file {path} does not contain JSON")
    if not isinstance(data, dict):
        raise StatusFileError(f"status file {path} must contain a JSON object")
    return data


def write_status(path, base: dict, **fields) -> dict:
    data = {**base, **fields}
    atomic_write(path, json.dumps(data, indent=2) + "\n", mode=0o600)
    return data


def write_final_status(path, base: dict, **fields):
    """The exiting service's last word, unless the file now belongs to a newer copy."""
    try:
        with open(path) as f:
            current = json.load(f)
        if isinstance(current, dict) and current.get("pid") not in (None, os.getpid()):
            return None
    except (OSError, ValueError):
        pass
    return write_status(path, base, **fields)
