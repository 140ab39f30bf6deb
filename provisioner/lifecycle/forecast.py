"""The forecast of a plan: how many requests ``run --update`` would send, and how long they take.

Requests, counted from the plan (and the result log, if one is given: a spec it
settles is skipped, as ``run`` resumes):

* ``create``: one ``POST`` per spec to create;
* ``name_check``: one ``POST`` per spec whose name exists (``update``,
  ``unchanged``, ``conflict``): ``run`` sends its create, the API answers 409;
* ``update``: one update per drifted spec;
* ``list_page``: the pages of one walk of the list (the walk the plan read),
  when some name is checked: ``run`` finds the existing environments there.

Time, with ``C`` the concurrency, ``L`` the latency of one request and ``R``
the rate: the writes go at ``X = min(R, C / L)`` a second (``R`` when ``L`` is
unknown, ``C / L`` when the rate is unlimited), the pages one after the other,
each taking ``max(L, 1 / R)``. Retries are not foreseen. ``--rate auto`` gives a
range: from its start rate (the slowest, unless the server throttles below it)
to ``C / L`` (the fastest, known only with a latency).

The latency and the rate a previous run reached come from a result log's
records (:func:`previous_run`). Everything here is pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from provisioner.pacing.adaptive import AdaptiveTuning

_MIN_RECORDS = 2


@dataclass(slots=True)
class RequestCounts:
    """Requests ``run --update`` would send, by kind, and the specs it would skip."""

    create: int = 0
    name_check: int = 0
    update: int = 0
    list_page: int = 0
    skipped: int = 0

    def add(self, action: str, *, settled: bool) -> None:
        """Count one planned spec (``settled``: the result log has it done)."""
        if settled:
            self.skipped += 1
        elif action == "create":
            self.create += 1
        else:
            self.name_check += 1
            self.update += action == "update"

    @property
    def writes(self) -> int:
        """Requests that can go in parallel: creates, name checks and updates."""
        return self.create + self.name_check + self.update

    @property
    def total(self) -> int:
        """Every request."""
        return self.writes + self.list_page


@dataclass(frozen=True, slots=True)
class PreviousRun:
    """What a result log says about the last run that sent requests.

    ``rate_per_s``: its requests (the records' ``attempts``) over its span, from
    the first ``started_at`` to the last ``finished_at`` (``None``: too few).
    ``latency_ms``: the shortest duration of its one-request records (a
    record's duration includes its wait for the rate limiter; the quickest one
    waited least).
    """

    records: int
    rate_per_s: float | None
    latency_ms: float | None


def previous_run(records: Iterable[Mapping[str, Any]]) -> PreviousRun | None:
    """The last run of these records (one API's) that sent requests, or ``None``."""
    sent = [r for r in records if isinstance(r.get("attempts"), int) and r["attempts"]]
    if not sent:
        return None
    run_id = sent[-1].get("run_id")
    mine = [r for r in sent if r.get("run_id") == run_id]
    return PreviousRun(len(mine), _rate(mine), _latency(mine))


def _rate(records: list[Mapping[str, Any]]) -> float | None:
    starts = [_time(r.get("started_at")) for r in records]
    ends = [_time(r.get("finished_at")) for r in records]
    first = min((t for t in starts if t is not None), default=None)
    last = max((t for t in ends if t is not None), default=None)
    if len(records) < _MIN_RECORDS or first is None or last is None:
        return None
    span_s = (last - first).total_seconds()
    if span_s <= 0:
        return None
    return sum(int(r["attempts"]) for r in records) / span_s


def _latency(records: list[Mapping[str, Any]]) -> float | None:
    durations = [
        float(r["duration_ms"])
        for r in records
        if r["attempts"] == 1 and isinstance(r.get("duration_ms"), int | float)
    ]
    return min(durations, default=None)


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Forecast:
    """How long ``requests`` take (seconds; ``None``: unknown).

    ``seconds`` at the fixed rate (a lower bound when the latency is unknown:
    ``is_lower_bound``); with ``--rate auto``, ``seconds_min`` to ``seconds_max``;
    ``seconds_at_previous_rate`` at the rate the previous run reached.
    """

    requests: RequestCounts
    concurrency: int
    rate_per_s: float
    is_adaptive: bool
    latency_ms: float | None
    previous: PreviousRun | None
    seconds: float | None
    is_lower_bound: bool
    seconds_min: float | None
    seconds_max: float | None
    seconds_at_previous_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        """The forecast as ``plan --format json`` writes it."""
        requests = self.requests
        return {
            "requests": {
                "create": requests.create,
                "name_check": requests.name_check,
                "update": requests.update,
                "list_page": requests.list_page,
                "total": requests.total,
            },
            "skipped": requests.skipped,
            "rate": "auto" if self.is_adaptive else self.rate_per_s,
            "concurrency": self.concurrency,
            "latency_ms": _round(self.latency_ms),
            "previous_rate_per_s": _round(
                None if self.previous is None else self.previous.rate_per_s
            ),
            "seconds": _round(self.seconds),
            "is_lower_bound": self.is_lower_bound,
            "seconds_min": _round(self.seconds_min),
            "seconds_max": _round(self.seconds_max),
            "seconds_at_previous_rate": _round(self.seconds_at_previous_rate),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def duration_s(
    requests: RequestCounts,
    *,
    rate_per_s: float,
    concurrency: int,
    latency_s: float | None,
) -> float | None:
    """Seconds for ``requests`` at ``rate_per_s`` (0: unlimited), ``None`` if unknown.

    With no latency, only the rate bounds it (the caller says it is a lower bound).
    """
    if latency_s is None and rate_per_s <= 0:
        return None
    per_s = [rate_per_s] if rate_per_s > 0 else []
    if latency_s is not None and latency_s > 0:
        per_s.append(concurrency / latency_s)
    writes_s = requests.writes / min(per_s) if per_s else 0.0
    page_s = max(latency_s or 0.0, 1 / rate_per_s if rate_per_s > 0 else 0.0)
    return writes_s + requests.list_page * page_s


def forecast(
    requests: RequestCounts,
    *,
    rate_per_s: float,
    is_adaptive: bool,
    concurrency: int,
    previous: PreviousRun | None,
    tuning: AdaptiveTuning | None = None,
) -> Forecast:
    """The forecast of ``requests`` at this pacing, with what the previous run says."""
    latency_ms = previous.latency_ms if previous else None
    latency_s = None if latency_ms is None else latency_ms / 1000

    def at(rate: float) -> float | None:
        return duration_s(
            requests, rate_per_s=rate, concurrency=concurrency, latency_s=latency_s
        )

    seconds = seconds_min = seconds_max = None
    if is_adaptive:
        tuning = tuning or AdaptiveTuning()
        seconds_max = at(tuning.start_rate_per_s)
        if latency_s is not None:
            seconds_min = at(tuning.max_rate_per_s)
    else:
        seconds = at(rate_per_s)
    reached = previous.rate_per_s if previous else None
    return Forecast(
        requests=requests,
        concurrency=concurrency,
        rate_per_s=rate_per_s,
        is_adaptive=is_adaptive,
        latency_ms=latency_ms,
        previous=previous,
        seconds=seconds,
        is_lower_bound=seconds is not None and latency_s is None,
        seconds_min=seconds_min,
        seconds_max=seconds_max,
        seconds_at_previous_rate=None if reached is None else at(reached),
    )


def render_forecast(fc: Forecast, *, results: str | None) -> list[str]:
    """The forecast's lines in the text plan."""
    r = fc.requests
    lines = [
        f"Forecast (run --update): {r.total} requests: {r.create} creates, "
        f"{r.name_check} name checks (creates answered 409), {r.update} updates, "
        f"{r.list_page} list pages"
        + (
            f"; {r.skipped} specs settled in {results} are skipped."
            if r.skipped
            else "."
        )
    ]
    where = f"the last run of {results}" if results else ""
    latency = (
        f"{fc.latency_ms:.1f} ms latency ({where})"
        if fc.latency_ms is not None
        else "latency unknown ("
        + (f"no earlier run in {results}" if results else "no --results")
        + ")"
    )
    if fc.is_adaptive:
        lines.append(
            f"At --rate auto with --concurrency {fc.concurrency} and {latency}: "
            + _range(fc.seconds_min, fc.seconds_max)
        )
    else:
        rate = "unlimited" if fc.rate_per_s <= 0 else f"{fc.rate_per_s:g}/s"
        lines.append(
            f"At --rate {rate} with --concurrency {fc.concurrency} and {latency}: "
            + _about(fc.seconds, lower=fc.is_lower_bound)
        )
    if fc.previous and fc.previous.rate_per_s is not None:
        lines.append(
            f"{where[0].upper() + where[1:]} reached {fc.previous.rate_per_s:.1f} "
            f"requests/s: {_about(fc.seconds_at_previous_rate, lower=False)[:-1]} "
            "at that rate."
        )
    return lines


def _about(seconds: float | None, *, lower: bool) -> str:
    if seconds is None:
        return "time unknown (no rate limit and no latency to bound it)."
    return f"at least {_span(seconds)}." if lower else f"about {_span(seconds)}."


def _range(fastest: float | None, slowest: float | None) -> str:
    slow = "?" if slowest is None else _span(slowest)
    if fastest is None:
        return (
            f"at most {slow} (at its start rate; longer if the server throttles "
            "below it), less as it finds a higher limit."
        )
    return (
        f"between {_span(fastest)} and {slow} (at its start rate; longer if the "
        "server throttles below it)."
    )


def _span(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:  # noqa: PLR2004 - a minute
        return f"{seconds:.1f} s"
    minutes = math.floor(seconds / 60)
    return f"{minutes} min {seconds - 60 * minutes:.0f} s"


__all__ = [
    "Forecast",
    "PreviousRun",
    "RequestCounts",
    "duration_s",
    "forecast",
    "previous_run",
    "render_forecast",
]
