"""What the request path and the drivers report to metrics, and the meter that counts nothing.

:mod:`provisioner.observe.metrics` (prometheus-client) implements :class:`Meter`
for ``--metrics-port``; without the flag every driver gets :data:`NO_METER`, and
neither prometheus-client nor the health server's aiohttp is imported (the command
line imports :mod:`provisioner.observe.health` only for the flag).
"""

from __future__ import annotations

from typing import Protocol

#: The ``code`` of a request the stop cancelled before its answer (not a failure of the API).
CANCELLED = "cancelled"


class Meter(Protocol):
    """What the request path and the drivers report; each call must be cheap."""

    def request_started(self) -> None:
        """A request is about to be sent."""

    def request_ended(self, code: int | str) -> None:
        """A request ended: its HTTP status, or the error type when none came."""

    def retried(self) -> None:
        """A retry was scheduled."""

    def recorded(self, status: str) -> None:
        """A record with this status was written."""


class NoMeter:
    """The meter without ``--metrics-port``: every call does nothing."""

    def request_started(self) -> None:
        """Nothing is counted."""

    def request_ended(self, code: int | str) -> None:
        """Nothing is counted."""

    def retried(self) -> None:
        """Nothing is counted."""

    def recorded(self, status: str) -> None:
        """Nothing is counted."""


NO_METER = NoMeter()


__all__ = ["CANCELLED", "NO_METER", "Meter", "NoMeter"]
