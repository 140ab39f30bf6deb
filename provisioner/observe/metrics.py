"""What ``run`` and ``worker`` count for Prometheus, and what the hot path calls.

Every request goes through :class:`provisioner.core.attempts.Attempts`, which tells a
:class:`provisioner.observe.meter.Meter` when a request starts, how it ended and when a
retry is scheduled; the drivers tell it each record's status. Without
``--metrics-port`` the meter is ``NO_METER`` (:mod:`provisioner.observe.meter`), and this
module, prometheus-client and the health server are not even imported. With it,
:class:`Metrics` keeps its series in a registry of its own (never the global
one), so several runs in one process do not collide.

The series (see the manual's operations page, "Metrics and health"):

- ``provisioner_requests_total{code}``: requests answered, by HTTP status
  (``201``, ``429``...) or, with no usable answer, by error type (``timeout``,
  ``connection_error``...).
- ``provisioner_request_retries_total``: retries scheduled.
- ``provisioner_requests_in_flight``: requests sent and not yet answered.
- ``provisioner_records_total{status}``: records written, by status.
- ``provisioner_rate_limit_requests_per_second``: the rate the limiter paces at
  now (``+Inf`` unlimited, ``NaN`` not yet known).
- workers only: ``provisioner_queue_lag_messages``,
  ``provisioner_queue_pending_messages`` and
  ``provisioner_queue_dead_letters_messages``, read from Redis at each scrape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric

from provisioner.observe.meter import CANCELLED, NO_METER, Meter, NoMeter


class QueueFigures(Protocol):
    """A snapshot of a worker's queue (``QueueStatus``): what its gauges show."""

    @property
    def length(self) -> int:
        """Entries in the stream."""

    @property
    def pending(self) -> int:
        """Entries delivered to the group and not yet acknowledged."""

    @property
    def dead_letters(self) -> int:
        """Entries in the dead-letter stream."""


@dataclass(slots=True)
class ApiHealth:
    """How the last request to the API ended, for ``/readyz``.

    Attributes:
        failure: the error type of the last request if it got no answer, else ``None``.
        answered_at: monotonic seconds of the last HTTP answer, ``None`` before one.
    """

    failure: str | None = None
    answered_at: float | None = None


class Metrics:
    """The Prometheus series of one run or worker, in a registry of their own.

    Args:
        clock: monotonic seconds (when the API last answered).
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        self.api = ApiHealth()
        self._clock = clock
        reg = self.registry
        self._requests = Counter(
            "provisioner_requests",
            "Requests answered, by HTTP status or, without an answer, error type.",
            ["code"],
            registry=reg,
        )
        self._retries = Counter(
            "provisioner_request_retries", "Retries scheduled.", registry=reg
        )
        self._in_flight = Gauge(
            "provisioner_requests_in_flight",
            "Requests sent and not yet answered.",
            registry=reg,
        )
        self._records = Counter(
            "provisioner_records",
            "Records written, by status.",
            ["status"],
            registry=reg,
        )
        self._rate = Gauge(
            "provisioner_rate_limit_requests_per_second",
            "The rate the limiter paces requests at now (+Inf: unlimited).",
            registry=reg,
        )
        self._queue: dict[str, Gauge] = {}

    def request_started(self) -> None:
        """A request is about to be sent."""
        self._in_flight.inc()

    def request_ended(self, code: int | str) -> None:
        """A request ended with HTTP status ``code``, or the error type ``code``."""
        self._in_flight.dec()
        self._requests.labels(str(code)).inc()
        if isinstance(code, int):
            self.api.failure = None
            self.api.answered_at = self._clock()
        elif code != CANCELLED:
            self.api.failure = code

    def retried(self) -> None:
        """A retry was scheduled."""
        self._retries.inc()

    def recorded(self, status: str) -> None:
        """A record with this status was written."""
        self._records.labels(status).inc()

    def watch_rate(self, rate: Callable[[], float]) -> None:
        """Read the current rate (requests per second; ``+Inf`` unlimited) at every scrape."""
        self._rate.set_function(rate)

    def show_queue(self, status: QueueFigures) -> None:
        """Set the queue gauges from a snapshot (workers only)."""
        values = {
            "lag": ("Messages waiting, not yet delivered to any worker.", _lag(status)),
            "pending": (
                "Messages delivered to the group and not yet acknowledged.",
                status.pending,
            ),
            "dead_letters": (
                "Messages in the dead-letter stream.",
                status.dead_letters,
            ),
        }
        for name, (text, value) in values.items():
            if name not in self._queue:
                self._queue[name] = Gauge(
                    f"provisioner_queue_{name}_messages", text, registry=self.registry
                )
            self._queue[name].set(value)

    def render(self) -> bytes:
        """Every series in the Prometheus text format (without ``_created`` samples)."""
        return generate_latest(_WithoutCreated(self.registry))


class _WithoutCreated(CollectorRegistry):
    """A registry's series less the ``*_created`` timestamps the text format shows as gauges.

    They would read as a status (``provisioner_records_created{status="created"}``),
    and turning them off for the whole process (``disable_created_metrics``)
    would reach beyond this registry.
    """

    def __init__(self, source: CollectorRegistry) -> None:
        super().__init__(auto_describe=False)
        self._source = source

    def collect(self) -> Iterator[Metric]:
        """The source's metrics, each without its ``_created`` sample."""
        for metric in self._source.collect():
            metric.samples = [
                s for s in metric.samples if not s.name.endswith("_created")
            ]
            yield metric


def _lag(status: QueueFigures) -> int:
    """Entries in the stream not yet delivered: the stream less those pending."""
    return max(0, status.length - status.pending)


__all__ = [
    "CANCELLED",
    "NO_METER",
    "ApiHealth",
    "Meter",
    "Metrics",
    "NoMeter",
    "QueueFigures",
]
