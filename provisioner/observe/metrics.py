"""What ``run`` and ``worker`` count for Prometheus, and what the hot path calls.

Every request goes through :class:`provisioner.core.attempts.Attempts`, which tells a
:class:`provisioner.observe.meter.Meter` when a request starts, how it ended and when a
retry is scheduled; the drivers tell it each record's status. Without
``--metrics-port``, ``--metrics-textfile`` or ``--pushgateway`` the meter is ``NO_METER``
(:mod:`provisioner.observe.meter`), and this module, prometheus-client and the health
server are not even imported. With one,
:class:`Metrics` keeps its series in a registry of its own (never the global
one), so several runs in one process do not collide.

The series (see the manual's operations page, "Metrics and health"):

- ``provisioner_request_duration_seconds{operation,outcome}``: a histogram of
  request durations, by operation (``create``, ``update``, ``get``, ``list``)
  and outcome class (``2xx``, ``4xx``, ``5xx``...,
  ``error`` when no usable answer came, ``cancelled`` when a stop cut it short);
  its ``_count`` counts every request.
- ``provisioner_requests_total{operation,code}``: requests answered, by HTTP status.
- ``provisioner_request_errors_total{operation,error_type}``: requests with no
  usable answer, by error type (``timeout``, ``connection_error``...).
- ``provisioner_request_retries_total``: retries scheduled.
- ``provisioner_requests_in_flight``: requests sent and not yet answered.
- ``provisioner_records_total{status}``: records written, by status.
- ``provisioner_rate_limit_requests_per_second``: the rate the limiter paces at
  now; no sample while unlimited or not yet known.
- ``provisioner_build_info{version}``: always 1.
- workers only: ``provisioner_queue_lag_messages``,
  ``provisioner_queue_pending_messages`` and
  ``provisioner_queue_dead_letters_messages``, read from Redis at each scrape.

``/metrics`` adds the default ``process_*`` and ``python_*`` series
(:meth:`Metrics.render`); :meth:`Metrics.run_series` is the ``provisioner_*`` ones
alone, for a textfile or a Pushgateway (:mod:`provisioner.observe.lastrun`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from provisioner.observe.meter import CANCELLED, NO_METER, Meter, NoMeter
from provisioner.settings import VERSION

#: Histogram buckets in seconds, for API latencies from 5 ms to 30 s.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: The outcome class of a request that got no usable answer.
ERROR = "error"
_RATE = "provisioner_rate_limit_requests_per_second"


def outcome_class(code: int | str) -> str:
    """``201`` -> ``2xx``; an error type -> ``error``; a stop's cut -> ``cancelled``."""
    if isinstance(code, int):
        return f"{code // 100}xx"
    return CANCELLED if code == CANCELLED else ERROR


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
        self._rate = _RateCollector()
        reg = self.registry
        self._durations = Histogram(
            "provisioner_request_duration_seconds",
            "Seconds from sending a request to its end, by operation and outcome class.",
            ["operation", "outcome"],
            buckets=DURATION_BUCKETS_S,
            registry=reg,
        )
        self._requests = Counter(
            "provisioner_requests",
            "Requests answered, by operation and HTTP status.",
            ["operation", "code"],
            registry=reg,
        )
        self._errors = Counter(
            "provisioner_request_errors",
            "Requests that got no usable answer, by operation and error type.",
            ["operation", "error_type"],
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
        reg.register(self._rate)
        Gauge(
            "provisioner_build_info",
            "Always 1: the version of provisioner as a label.",
            ["version"],
            registry=reg,
        ).labels(VERSION).set(1)
        self._queue: dict[str, Gauge] = {}
        self._runtime = _runtime_registry()

    def request_started(self) -> None:
        """A request is about to be sent."""
        self._in_flight.inc()

    def request_ended(self, operation: str, code: int | str, duration_s: float) -> None:
        """A request ended with HTTP status ``code``, or the error type ``code``."""
        self._in_flight.dec()
        self._durations.labels(operation, outcome_class(code)).observe(duration_s)
        if isinstance(code, int):
            self._requests.labels(operation, str(code)).inc()
            self.api.failure = None
            self.api.answered_at = self._clock()
            return
        self._errors.labels(operation, code).inc()
        if code != CANCELLED:
            self.api.failure = code

    def retried(self) -> None:
        """A retry was scheduled."""
        self._retries.inc()

    def recorded(self, status: str) -> None:
        """A record with this status was written."""
        self._records.labels(status).inc()

    def watch_rate(self, rate: Callable[[], float]) -> None:
        """Read the current rate (requests per second) at every scrape.

        ``+Inf`` (unlimited) and ``NaN`` (not yet known) show as no sample.
        """
        self._rate.read = rate

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

    def run_series(self) -> Collector:
        """The ``provisioner_*`` series alone (no process or Python ones, no ``_created``)."""
        return _WithoutCreated([self.registry])

    def render(self) -> bytes:
        """Every series in the Prometheus text format, ``process_*`` and ``python_*`` too."""
        return generate_latest(_WithoutCreated([self.registry, self._runtime]))


class _RateCollector(Collector):
    """The limiter's rate as a gauge, read at each scrape; no sample unless finite."""

    def __init__(self) -> None:
        self.read: Callable[[], float] = lambda: math.nan

    def collect(self) -> Iterator[Metric]:
        """The gauge, with its one sample when the rate is a finite number."""
        family = GaugeMetricFamily(
            _RATE, "The rate the limiter paces requests at now (none: unlimited)."
        )
        rate = self.read()
        if math.isfinite(rate):
            family.add_metric([], rate)
        yield family


def _runtime_registry() -> CollectorRegistry:
    """The default ``process_*`` and ``python_*`` collectors, in a registry of their own."""
    runtime = CollectorRegistry()
    ProcessCollector(registry=runtime)
    PlatformCollector(registry=runtime)
    GCCollector(registry=runtime)
    return runtime


class _WithoutCreated(CollectorRegistry):
    """Registries' series less the ``*_created`` timestamps the text format shows as gauges.

    They would read as a status (``provisioner_records_created{status="created"}``),
    and turning them off for the whole process (``disable_created_metrics``)
    would reach beyond this registry.
    """

    def __init__(self, sources: Iterable[CollectorRegistry]) -> None:
        super().__init__(auto_describe=False)
        self._sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        """The sources' metrics, each without its ``_created`` sample."""
        for source in self._sources:
            for metric in source.collect():
                metric.samples = [
                    s for s in metric.samples if not s.name.endswith("_created")
                ]
                yield metric


def _lag(status: QueueFigures) -> int:
    """Entries in the stream not yet delivered: the stream less those pending."""
    return max(0, status.length - status.pending)


__all__ = [
    "CANCELLED",
    "DURATION_BUCKETS_S",
    "ERROR",
    "NO_METER",
    "ApiHealth",
    "Meter",
    "Metrics",
    "NoMeter",
    "QueueFigures",
    "outcome_class",
]
