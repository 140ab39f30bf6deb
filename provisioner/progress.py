"""A progress bar on a terminal, fed by the runner's records; it never drives the run."""

from __future__ import annotations

from types import TracebackType
from typing import IO

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
