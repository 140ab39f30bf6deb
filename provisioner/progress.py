"""A progress bar on a terminal, fed by the runner's records; it never drives the run."""

from __future__ import annotations

from types import TracebackType
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from provisioner.results import Result


class ProgressBar:
    """Counts finished specs against the total; a no-op when not on a terminal."""

    def __init__(self, *, total: int, stream: IO[str], enabled: bool) -> None:
        self._enabled = enabled and stream.isatty()
        self._progress = Progress(
            TextColumn("[bold]provisioning"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=True,
            disable=not self._enabled,
        )
        self._task = self._progress.add_task("run", total=total, detail="")
        self._counts: dict[str, int] = {}

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
        """Count one finished spec."""
        self._counts[result.status] = self._counts.get(result.status, 0) + 1
        detail = " ".join(f"{k}={v}" for k, v in sorted(self._counts.items()))
        self._progress.update(self._task, advance=1, detail=detail)
