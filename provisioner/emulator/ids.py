"""Environment ids (``env_`` + a UUIDv7 in 32 hex digits) and RFC 3339 timestamps."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RAND_BITS = 74  # 12 bits rand_a + 62 bits rand_b
_RAND_B_MASK = (1 << 62) - 1
_ID_PREFIX = "env_"


def rfc3339(moment: datetime) -> str:
    """``2026-05-18T15:28:07.017808Z``: UTC, microseconds, ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def clock() -> tuple[str, int]:
    """Now, as an RFC 3339 timestamp and as Unix milliseconds (for the id)."""
    micros = time.time_ns() // 1000
    return rfc3339(_EPOCH + timedelta(microseconds=micros)), micros // 1000


def is_env_id(value: str) -> bool:
    """True when ``value`` has the shape ``env_`` + 32 lowercase hex digits."""
    if len(value) != 36 or not value.startswith(_ID_PREFIX):  # noqa: PLR2004  # 4 + 32
        return False
    return all(c in "0123456789abcdef" for c in value[4:])


class IdGenerator:
    """UUIDv7 ids, strictly increasing even within one millisecond or if the clock steps back.

    The 74 random bits act as a counter inside a millisecond: a new millisecond starts at a
    random value below 2**73, and each further id in it adds one.
    """

    __slots__ = ("_last", "_rng")

    def __init__(self) -> None:
        self._last = 0  # (unix_ms << 74) | rand74 of the last id handed out
        self._rng = random.Random()  # noqa: S311  # ids must be unique, not unguessable

    def observe(self, env_id: str) -> None:
        """Make every later id sort after ``env_id`` (one loaded from a state file)."""
        uuid = int(env_id[4:], 16)
        rand_a = (uuid >> 64) & 0xFFF
        value = ((uuid >> 80) << _RAND_BITS) | (rand_a << 62) | (uuid & _RAND_B_MASK)
        self._last = max(self._last, value)

    def next_id(self, unix_ms: int) -> str:
        """The next id for a resource created at ``unix_ms``."""
        if unix_ms > self._last >> _RAND_BITS:
            value = (unix_ms << _RAND_BITS) | self._rng.getrandbits(_RAND_BITS - 1)
        else:
            value = self._last + 1
        self._last = value
        ms, rand = value >> _RAND_BITS, value & ((1 << _RAND_BITS) - 1)
        uuid = (
            (ms << 80)
            | (0x7 << 76)
            | ((rand >> 62) << 64)
            | (0b10 << 62)
            | (rand & _RAND_B_MASK)
        )
        return f"{_ID_PREFIX}{uuid:032x}"
