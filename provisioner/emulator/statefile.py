"""The JSON state file: read at start, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import orjson

STATE_VERSION = 1


def read_state(path: str) -> dict[str, Any] | None:
    """The saved state, None when the file does not exist; ``ValueError`` when unreadable."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"state file {path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ValueError(
            f"state file {path} is not an emulator state (version {STATE_VERSION})"
        )
    return data


def encode_state(store: dict[str, Any], idempotency: list[dict[str, Any]]) -> bytes:
    """The file's bytes for a store snapshot and a ledger snapshot."""
    return orjson.dumps(
        {"version": STATE_VERSION, "store": store, "idempotency": idempotency}
    )


def write_state(path: str, data: bytes) -> None:
    """Replace the file at ``path`` with ``data``, never leaving it half written."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
