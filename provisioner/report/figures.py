"""What result logs say, in figures: records in, one :class:`Report` out.

Pure: no printing, no HTML. Memory stays flat per record, so a log of a
million lines is never held whole: counters, one 8-byte float per latency
(sorted once, for exact percentiles), per-second buckets, a heap of the
slowest records and the first :data:`FAILURE_ROWS` failures.
"""

from __future__ import annotations

import heapq
import math
import os
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from provisioner.errors import ResultLogError
from provisioner.results import STATUSES, iter_records

#: Rows of the failures table kept (the count of all failures is exact).
FAILURE_ROWS = 1_000
#: The path that reads stdin, as it does for job files.
STDIN = "-"
#: Error types listed; each has its count and the first record's source.
TOP_ERRORS = 10
#: Slowest records listed.
TOP_SLOWEST = 10
#: Distinct error types counted one by one; any more count as ``OTHER_ERRORS``.
MAX_ERROR_TYPES = 1_000
OTHER_ERRORS = "(other types)"
#: Bins of the time charts and of the latency histogram, at most.
TIME_BINS = 120
LATENCY_BINS = 24


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """One error type: how often, and the first record that had it."""

    type: str
    count: int
    source: str
    message: str


@dataclass(frozen=True, slots=True)
class Row:
    """One record as the report lists it (slowest records, failures)."""

    name: str
    status: str
    duration_ms: float
    attempts: int
    source: str
    http_status: int | None = None
    error_type: str = ""
    message: str = ""
    finished_at: str = ""


@dataclass(frozen=True, slots=True)
class Latency:
    """Milliseconds from first attempt to final answer, of records that sent a request."""

    count: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Attempts:
    """Create (and update) requests: in all, specs that needed more than one, the most."""

    total: int = 0
    retried_specs: int = 0
    retries: int = 0
    max_per_spec: int = 0


@dataclass(frozen=True, slots=True)
class TimeBin:
    """Records finished in ``[start_s, start_s + width_s)`` after the first start."""

    start_s: float
    width_s: float
    good: int
    errors: int


@dataclass(frozen=True, slots=True)
class LatencyBin:
    """Records whose latency is in ``[low_ms, high_ms)`` (the last bin: and above)."""

    low_ms: float
    high_ms: float
    count: int


@dataclass(frozen=True, slots=True)
class Report:
    """Every figure of ``provisioner report``."""

    files: tuple[str, ...]
    records: int
    counts: dict[str, int]
    errors: tuple[ErrorKind, ...]
    error_total: int
    attempts: Attempts
    latency: Latency
    wall_s: float
    creates_per_s: float
    slowest: tuple[Row, ...]
    failures: tuple[Row, ...] = ()
    timeline: tuple[TimeBin, ...] = ()
    histogram: tuple[LatencyBin, ...] = ()
    started_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The report as ``--format json`` prints it (no chart data, no failure rows)."""
        return {
            "files": list(self.files),
            "records": self.records,
            "counts": self.counts,
            "errors": [asdict(kind) for kind in self.errors],
            "error_total": self.error_total,
            "attempts": asdict(self.attempts),
            "latency": asdict(self.latency),
            "wall_s": round(self.wall_s, 3),
            "creates_per_s": round(self.creates_per_s, 2),
            "slowest": [_slow_dict(row) for row in self.slowest],
        }


def _slow_dict(row: Row) -> dict[str, Any]:
    keys = ("name", "status", "duration_ms", "attempts", "source")
    return {key: getattr(row, key) for key in keys}


def read_report(paths: Sequence[str], *, stdin: BinaryIO | None = None) -> Report:
    """The report of the result logs at ``paths``, read one record at a time.

    A path of ``-`` reads ``stdin`` (once: it may be given once).

    Raises:
        ResultLogError: a log is missing, unreadable, or holds a line that is not a record.
    """
    if list(paths).count(STDIN) > 1:
        raise ResultLogError("- (stdin) can be read only once: give it once")
    builder = ReportBuilder()
    for path in paths:
        stream = stdin if path == STDIN else None
        if path == STDIN and stream is None:
            raise ResultLogError("cannot read result log -: stdin is not available")
        if stream is None and not os.path.exists(path):
            raise ResultLogError(f"cannot read result log {path}: no such file")
        builder.start_file()
        for _, record in iter_records(path, stream=stream):
            builder.add(record)
    return builder.finish(paths)


@dataclass(slots=True)
class _Errors:
    """Counts by error type, with the first source and message of each."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, kind: str, source: str, message: str) -> None:
        if kind not in self.counts and len(self.counts) >= MAX_ERROR_TYPES:
            kind = OTHER_ERRORS
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.first.setdefault(kind, (source, message))

    def top(self) -> tuple[ErrorKind, ...]:
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return tuple(
            ErrorKind(kind, count, *self.first[kind])
            for kind, count in ranked[:TOP_ERRORS]
        )


@dataclass(slots=True)
class ReportBuilder:
    """Accumulates records (in any order, from several logs) into a :class:`Report`."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    errors: _Errors = field(default_factory=_Errors)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    attempts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    seconds: dict[int, list[int]] = field(default_factory=dict)
    spans: list[list[float]] = field(default_factory=list)
    slowest: list[tuple[float, int, Row]] = field(default_factory=list)
    failures: list[Row] = field(default_factory=list)
    records: int = 0

    def start_file(self) -> None:
        """The records that follow come from the next log (its own time span)."""
        self.spans.append([math.inf, -math.inf])

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one result record."""
        if not self.spans:
            self.start_file()
        self.records += 1
        status = str(record["status"])
        self.counts[status] = self.counts.get(status, 0) + 1
        attempts = _int(record.get("attempts"))
        self._count_attempts(attempts)
        row = _row(record, status, attempts)
        if attempts > 0:
            self.latencies.append(row.duration_ms)
            item = (row.duration_ms, self.records, row)
            if len(self.slowest) < TOP_SLOWEST:
                heapq.heappush(self.slowest, item)
            else:
                heapq.heappushpop(self.slowest, item)
        if row.error_type:
            self.errors.add(row.error_type, row.source, row.message)
            if len(self.failures) < FAILURE_ROWS:
                self.failures.append(row)
        self._note_times(record, is_error=bool(row.error_type))

    def _count_attempts(self, attempts: int) -> None:
        total, retried, retries, most = self.attempts
        self.attempts = [
            total + attempts,
            retried + (attempts > 1),
            retries + max(attempts - 1, 0),
            max(most, attempts),
        ]

    def _note_times(self, record: Mapping[str, Any], *, is_error: bool) -> None:
        started = _epoch(record.get("started_at"))
        finished = _epoch(record.get("finished_at"))
        span = self.spans[-1]
        if started is not None:
            span[0] = min(span[0], started)
        if finished is None:
            return
        span[1] = max(span[1], finished)
        bucket = self.seconds.setdefault(int(finished), [0, 0])
        bucket[is_error] += 1
        if started is None:
            span[0] = min(span[0], finished)

    def finish(self, files: Iterable[str] = ()) -> Report:
        """The report of every record added."""
        self.latencies = array("d", sorted(self.latencies))
        wall_s = _union_s(self.spans)
        created = self.counts.get("created", 0)
        total, retried, retries, most = self.attempts
        return Report(
            files=tuple(files),
            records=self.records,
            counts=self.counts,
            errors=self.errors.top(),
            error_total=sum(self.errors.counts.values()),
            attempts=Attempts(total, retried, retries, most),
            latency=_latency(self.latencies),
            wall_s=wall_s,
            creates_per_s=created / wall_s if wall_s > 0 else 0.0,
            slowest=tuple(row for *_, row in sorted(self.slowest, reverse=True)),
            failures=tuple(self.failures),
            timeline=self._timeline(),
            histogram=_histogram(self.latencies),
            started_at=self._first_start(),
        )

    def _first_start(self) -> str:
        first = min((span[0] for span in self.spans), default=math.inf)
        if math.isinf(first):
            return ""
        return datetime.fromtimestamp(first, tz=UTC).isoformat(timespec="seconds")

    def _timeline(self) -> tuple[TimeBin, ...]:
        starts = [span[0] for span in self.spans if not math.isinf(span[0])]
        if not self.seconds or not starts:
            return ()
        origin = int(min(starts))
        last = max(self.seconds)
        width = max(1, math.ceil((last - origin + 1) / TIME_BINS))
        bins = [[0, 0] for _ in range((last - origin) // width + 1)]
        for second, (good, errors) in self.seconds.items():
            slot = bins[max(second - origin, 0) // width]
            slot[0] += good
            slot[1] += errors
        return tuple(
            TimeBin(at * width, width, good, errors)
            for at, (good, errors) in enumerate(bins)
        )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _row(record: Mapping[str, Any], status: str, attempts: int) -> Row:
    error = record.get("error")
    error = error if isinstance(error, dict) else {}
    duration = record.get("duration_ms")
    http_status = record.get("http_status")
    return Row(
        name=_text(record.get("name")),
        status=status,
        duration_ms=float(duration)
        if isinstance(duration, int | float) and math.isfinite(duration)
        else 0.0,
        attempts=attempts,
        source=_text(record.get("source")),
        http_status=http_status if isinstance(http_status, int) else None,
        error_type=_text(error.get("type")) or ("unknown" if error else ""),
        message=_text(error.get("message")),
        finished_at=_text(record.get("finished_at")),
    )


def _epoch(value: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 time, or ``None`` when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def _union_s(spans: Iterable[list[float]]) -> float:
    """Seconds covered by the logs' time spans (overlaps counted once)."""
    total = 0.0
    reach = -math.inf
    for start, end in sorted(s for s in spans if s[0] <= s[1]):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def percentile(ordered: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..100) of sorted values; 0 when empty."""
    if not ordered:
        return 0.0
    rank = max(math.ceil(share / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def _latency(ordered: Sequence[float]) -> Latency:
    if not ordered:
        return Latency()
    return Latency(
        count=len(ordered),
        p50_ms=percentile(ordered, 50),
        p95_ms=percentile(ordered, 95),
        p99_ms=percentile(ordered, 99),
        max_ms=ordered[-1],
        mean_ms=round(math.fsum(ordered) / len(ordered), 3),
    )


def _histogram(ordered: Sequence[float]) -> tuple[LatencyBin, ...]:
    """Equal bins up to the p99 (or the max, when close), the last one open-ended."""
    if not ordered:
        return ()
    top = percentile(ordered, 99)
    if ordered[-1] <= 2 * top:
        top = ordered[-1]
    width = top / LATENCY_BINS if top > 0 else 1.0
    counts = [0] * LATENCY_BINS
    for value in ordered:
        counts[min(max(int(value / width), 0), LATENCY_BINS - 1)] += 1
    return tuple(
        LatencyBin(at * width, (at + 1) * width, count)
        for at, count in enumerate(counts)
    )


__all__ = [
    "FAILURE_ROWS",
    "Attempts",
    "ErrorKind",
    "Latency",
    "LatencyBin",
    "Report",
    "ReportBuilder",
    "Row",
    "TimeBin",
    "percentile",
    "read_report",
]
