"""Progress, fed by the runner's records; it never drives the run.

On a terminal a rich bar; anywhere else (cron, CI, a container's log) a
``run.progress`` log event every few seconds and one at the end, through the
normal structlog configuration (JSON or console, redacted). Never both:
:func:`progress_mode` picks one, and ``--no-progress`` turns both off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any, Literal

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from provisioner.results import Result

ProgressMode = Literal["bar", "events", "off"]
#: The statuses a run's event counts, each as a field of its own.
_EVENT_STATUSES = ("created", "updated", "exists", "failed", "invalid")

log = structlog.get_logger("provisioner.progress")


def progress_mode(*, enabled: bool, stream: IO[str], log_format: str) -> ProgressMode:
    """The bar on a terminal, log events elsewhere (or when the logs are JSON); never both."""
    if not enabled:
        return "off"
    if stream.isatty() and log_format != "json":
        return "bar"
    return "events"


class ProgressBar:
    """Counts finished specs against the total; a no-op when not on a terminal."""

    def __init__(self, *, total: int, stream: IO[str], enabled: bool) -> None:
        self._enabled = enabled and stream.isatty()
        self._counts: dict[str, int] = {}
        self._progress = Progress(
            TextColumn("[bold]provisioning"),
            BarColumn(),
            MofNCompleteColumn(),
            _CountsColumn(self._counts),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=True,
            disable=not self._enabled,
        )
        self._task = self._progress.add_task("run", total=total)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def advance(self, result: Result) -> None:
        """Count one finished spec (the counts are drawn at the bar's refresh, not here)."""
        self._counts[result.status] = self._counts.get(result.status, 0) + 1
        if self._enabled:
            self._progress.advance(self._task)


class _CountsColumn(ProgressColumn):
    """``created=N exists=N …``, read from the bar's counts when drawn."""

    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__()
        self._counts = counts

    def render(self, task: Task) -> Text:
        return Text(" ".join(f"{k}={v}" for k, v in sorted(self._counts.items())))


class ProgressLog:
    """Logs ``run.progress`` every ``interval_s`` seconds of the loop, and once at the end.

    Counting a record is a dict increment; the event is built only when the
    loop's timer fires, so a run that stalls still reports (its rate falls).

    Args:
        total: records expected (``None`` for a queue, which has no end).
        interval_s: seconds between events.
        retries: reads the run's retries so far.
        clock: monotonic seconds (injected by tests).
        event: the event's name.
    """

    def __init__(
        self,
        *,
        total: int | None,
        interval_s: float,
        retries: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
        event: str = "run.progress",
    ) -> None:
        self._total = total
        self._interval_s = interval_s
        self._retries = retries
        self._clock = clock
        self._event = event
        self._counts: dict[str, int] = {}
        self._done = 0
        self._started_at = self._last_at = clock()
        self._last_done = 0
        self._timer: asyncio.TimerHandle | None = None

    def __enter__(self) -> ProgressLog:
        self._timer = asyncio.get_running_loop().call_later(
            self._interval_s, self._tick
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.report(final=True)

    def advance(self, result: Result) -> None:
        """Count one finished spec (nothing is formatted here)."""
        self.count(result.status)

    def count(self, status: str) -> None:
        """Count one finished spec of ``status`` (a worker knows only the status)."""
        self._counts[status] = self._counts.get(status, 0) + 1
        self._done += 1

    def report(self, *, final: bool = False) -> None:
        """Log the event now; the next one's ``recent_rate_per_s`` starts from here."""
        now = self._clock()
        log.info(self._event, **self.snapshot(now, final=final))
        self._last_at, self._last_done = now, self._done

    def snapshot(self, now: float, *, final: bool = False) -> dict[str, Any]:
        """The event's fields at ``now`` (seconds of ``clock``)."""
        elapsed_s = now - self._started_at
        rate = self._done / elapsed_s if elapsed_s > 0 else 0.0
        since = now - self._last_at
        recent = (self._done - self._last_done) / since if since > 0 else 0.0
        fields: dict[str, Any] = {"done": self._done}
        if self._total is not None:
            fields |= {
                "total": self._total,
                "percent": _percent(self._done, self._total),
            }
        fields |= {status: self._counts.get(status, 0) for status in _EVENT_STATUSES}
        fields |= {
            "retries": self._retries(),
            "rate_per_s": round(rate, 2),
            "recent_rate_per_s": round(recent, 2),
            "elapsed_s": round(elapsed_s, 1),
        }
        if self._total is not None:
            fields["eta_s"] = _eta_s(self._total - self._done, rate)
        return fields | {"final": final}

    def _tick(self) -> None:
        self.report()
        self._timer = asyncio.get_running_loop().call_later(
            self._interval_s, self._tick
        )


def _percent(done: int, total: int) -> float:
    return round(100 * done / total, 1) if total else 100.0


def _eta_s(left: int, rate: float) -> float | None:
    """Seconds to go at the run's average rate; ``None`` before the first record."""
    if left <= 0:
        return 0.0
    return round(left / rate, 1) if rate > 0 else None


def make_progress(
    mode: ProgressMode,
    *,
    total: int,
    stream: IO[str],
    interval_s: float,
    retries: Callable[[], int],
) -> ProgressBar | ProgressLog:
    """The display ``mode`` asks for (``off`` is a bar that draws nothing)."""
    if mode == "events":
        return ProgressLog(total=total, interval_s=interval_s, retries=retries)
    return ProgressBar(total=total, stream=stream, enabled=mode == "bar")
