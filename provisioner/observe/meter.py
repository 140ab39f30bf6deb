"""What the request path and the drivers report to metrics, and the meter that counts nothing.

:mod:`provisioner.observe.metrics` (prometheus-client) implements :class:`Meter`
for ``--metrics-port`` (and ``run``'s ``--metrics-textfile`` and ``--pushgateway``);
without them every driver gets :data:`NO_METER`, and neither prometheus-client nor
the health server's aiohttp is imported (the command line imports
:mod:`provisioner.observe.health` only for ``--metrics-port``).
"""

from __future__ import annotations

from typing import Protocol

#: The ``code`` of a request the stop cancelled before its answer (not a failure of the API).
CANCELLED = "cancelled"


class Meter(Protocol):
    """What the request path and the drivers report; each call must be cheap."""

    def request_started(self) -> None:
        """A request is about to be sent."""

    def request_ended(self, operation: str, code: int | str, duration_s: float) -> None:
        """A request ended after ``duration_s`` seconds.

        Args:
            operation: what it was (``create``, ``update``, ``get``, ``list``...).
            code: its HTTP status (an ``int``), or the error type (a ``str``)
                when no usable answer came.
            duration_s: seconds from sending it to its end.
        """

    def retried(self) -> None:
        """A retry was scheduled."""

    def recorded(self, status: str) -> None:
        """A record with this status was written."""


class NoMeter:
    """The meter without ``--metrics-port``: every call does nothing."""

    def request_started(self) -> None:
        """Nothing is counted."""

    def request_ended(self, operation: str, code: int | str, duration_s: float) -> None:
        """Nothing is counted."""

    def retried(self) -> None:
        """Nothing is counted."""

    def recorded(self, status: str) -> None:
        """Nothing is counted."""


NO_METER = NoMeter()


__all__ = ["CANCELLED", "NO_METER", "Meter", "NoMeter"]
