"""The idempotency ledger: stored answers keyed by (token scope, method, path, key).

A request that carries a key reserves it at arrival. While it is reserved, another
request with the same key is answered 409 (in progress). Once the application has
answered, the answer is stored for ``ttl_s`` and replayed to a request with the same
body; a different body gets 409.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from provisioner.emulator.errors import conflict

LedgerKey = tuple[str, str, str, str]  # scope, method, path, idempotency key


@dataclass(slots=True)
class Stored:
    """An answer the application produced, kept for replay."""

    fingerprint: str
    status: int
    body: bytes
    expires_at: float  # Unix time


def fingerprint(raw: bytes) -> str:
    """A digest of the body that ignores key order and whitespace when it is JSON."""
    try:
        canonical = orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        canonical = raw
    return hashlib.sha256(canonical).hexdigest()


class Ledger:
    """Reservations and stored answers, expired lazily and by ``sweep``."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.dirty = False
        self._clock = clock
        self._pending: set[LedgerKey] = set()
        self._done: dict[LedgerKey, Stored] = {}

    def reserve(self, key: LedgerKey) -> Reservation:
        """Reserve ``key`` for this request (or learn that another request holds it)."""
        if key in self._pending:
            return Reservation(self, key, is_owner=False)
        self._pending.add(key)
        return Reservation(self, key, is_owner=True)

    def lookup(self, key: LedgerKey) -> Stored | None:
        """The stored, unexpired answer for ``key``."""
        stored = self._done.get(key)
        if stored is not None and stored.expires_at <= self._clock():
            del self._done[key]
            return None
        return stored

    def store(self, key: LedgerKey, digest: str, status: int, body: bytes) -> None:
        """Keep an answer for replay."""
        self._done[key] = Stored(digest, status, body, self._clock() + self.ttl_s)
        self.dirty = True

    def release(self, key: LedgerKey) -> None:
        """End a reservation."""
        self._pending.discard(key)

    def sweep(self) -> None:
        """Drop expired answers."""
        now = self._clock()
        expired = [
            key for key, stored in self._done.items() if stored.expires_at <= now
        ]
        for key in expired:
            del self._done[key]
        if expired:
            self.dirty = True

    def clear(self) -> None:
        """Forget every stored answer (reservations in progress stay)."""
        self._done.clear()
        self.dirty = True

    def snapshot(self) -> list[dict[str, Any]]:
        """The stored answers as JSON-ready data."""
        return [
            {
                "key": list(key),
                "fingerprint": stored.fingerprint,
                "status": stored.status,
                "body": stored.body.decode(),
                "expires_at": stored.expires_at,
            }
            for key, stored in self._done.items()
        ]

    def restore(self, entries: list[dict[str, Any]]) -> None:
        """Load a ``snapshot``; raises ``ValueError`` when it does not fit."""
        try:
            for entry in entries:
                scope, method, path, idem = entry["key"]
                stored = Stored(
                    str(entry["fingerprint"]),
                    int(entry["status"]),
                    str(entry["body"]).encode(),
                    float(entry["expires_at"]),
                )
                self._done[(scope, method, path, idem)] = stored
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unexpected idempotency data: {exc!r}") from exc


class Reservation:
    """One request's hold on an idempotency key."""

    __slots__ = ("_ledger", "digest", "is_owner", "key")

    def __init__(self, ledger: Ledger, key: LedgerKey, *, is_owner: bool) -> None:
        self._ledger = ledger
        self.key = key
        self.is_owner = is_owner
        self.digest = ""

    def check(self, raw: bytes) -> Stored | None:
        """The answer to replay, None to go ahead, or 409 (in progress / other body)."""
        if not self.is_owner:
            raise conflict(
                "A request with this Idempotency-Key is still in progress; retry later"
            )
        self.digest = fingerprint(raw)
        stored = self._ledger.lookup(self.key)
        if stored is not None and stored.fingerprint != self.digest:
            raise conflict("Idempotency key reused with a different request body")
        return stored

    def store(self, status: int, body: bytes) -> None:
        """Keep the application's answer and end the reservation."""
        if self.is_owner:
            self._ledger.store(self.key, self.digest, status, body)
            self.release()

    def release(self) -> None:
        """End the reservation (again is harmless)."""
        if self.is_owner:
            self._ledger.release(self.key)
            self.is_owner = False
