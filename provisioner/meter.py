"""What the request path and the drivers report to metrics, and the meter that counts nothing.

:mod:`provisioner.metrics` (prometheus-client) implements :class:`Meter` for
``--metrics-port``; without the flag every driver gets :data:`NO_METER`, and
neither prometheus-client nor the health server's aiohttp is imported.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from provisioner.ratelimit import RateLimiter
    from provisioner.settings import MetricsSettings
    from provisioner.stream import JobQueue

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


def exporter(
    settings: MetricsSettings | None,
    *,
    limiter: RateLimiter,
    queue: JobQueue | None = None,
    group: str = "",
) -> contextlib.AbstractAsyncContextManager[Meter]:
    """:data:`NO_METER` without ``settings``; with them, the served endpoints'
    meter (:func:`provisioner.health.exporter`, imported only then)."""
    if settings is None:
        return _nothing_served()
    from provisioner.health import exporter as serving  # noqa: PLC0415 - only --metrics-port

    return serving(settings, limiter=limiter, queue=queue, group=group)


@contextlib.asynccontextmanager
async def _nothing_served() -> AsyncIterator[Meter]:
    yield NO_METER


__all__ = ["CANCELLED", "NO_METER", "Meter", "NoMeter", "exporter"]
