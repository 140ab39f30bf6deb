"""What one run did: counts, why it stopped, and how that reads to a person.

The runner fills a :class:`Summary`; the command line prints :func:`describe`'s
lines and writes :meth:`Summary.to_dict` with ``--summary``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from provisioner.core.salvage import Salvage
from provisioner.pacing.stopping import StopReason
from provisioner.results import Result, Status

_COUNTED = (
    "created",
    "updated",
    "exists",
    "failed",
    "invalid",
    "skipped",
    "interrupted",
)


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Summary:
    """Counts for one run; ``wall_s`` is filled when the run ends.

    ``failed`` includes ``failed_before``: specs an earlier run left failed and
    this one did not retry (``--no-retry-failed``). Of the ``exists`` records,
    ``drifted`` differ from their spec where ``--update`` would change them (it
    was not given), and ``archived`` are archived (no run can change them).
    ``salvage`` holds the specs that did not finish, by error type (``--salvage``).
    """

    created: int = 0
    updated: int = 0
    exists: int = 0
    failed: int = 0
    invalid: int = 0
    skipped: int = 0
    interrupted: int = 0
    failed_before: int = 0
    drifted: int = 0
    archived: int = 0
    requests: int = 0
    retries: int = 0
    wall_s: float = 0.0
    stop: StopReason | None = field(default=None)
    salvage: Salvage | None = field(default=None)

    def count(self, status: Status) -> None:
        """Add one final record of ``status``."""
        setattr(self, status, getattr(self, status) + 1)

    def record(self, result: Result) -> None:
        """Add one final record: its status, and whether it drifted or is archived."""
        self.count(result.status)
        if result.status == "exists":
            if result.archived:
                self.archived += 1
            elif result.drift:
                self.drifted += 1

    @property
    def stopped_by(self) -> str | None:
        """Why the run stopped early, as a sentence, or ``None``."""
        return None if self.stop is None else self.stop.text

    @property
    def settled(self) -> int:
        """Specs with a final outcome in this run (records written, or skipped)."""
        return (
            self.created
            + self.updated
            + self.exists
            + self.failed
            + self.invalid
            + self.skipped
        )

    @property
    def creates_per_s(self) -> float:
        """Environments created per second of wall time."""
        return self.created / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def counts(self) -> dict[str, int]:
        """Each outcome and its count: ``created``, ``updated``, ``exists``,
        ``failed``, ``invalid``, ``skipped`` (settled by an earlier run) and
        ``interrupted`` (stopped in flight)."""
        return {name: getattr(self, name) for name in _COUNTED}

    def to_dict(self) -> dict[str, Any]:
        """The summary as written by ``--summary``."""
        return {
            "counts": self.counts,
            "failed_before": self.failed_before,
            "drifted": self.drifted,
            "archived": self.archived,
            "requests": self.requests,
            "retries": self.retries,
            "wall_s": round(self.wall_s, 3),
            "creates_per_s": round(self.creates_per_s, 2),
            "stopped_by": self.stopped_by,
            **self._salvage_dict(),
        }

    def _salvage_dict(self) -> dict[str, Any]:
        if self.salvage is None:
            return {}
        return {"salvage": self.salvage.to_dict(invalid=self.invalid)}


def describe(summary: Summary, *, total: int, resumable: bool = True) -> list[str]:
    """The summary lines printed at the end of a run (``resumable``: a log to resume from)."""
    failed = f"{summary.failed} failed"
    if summary.failed_before:
        failed += f" ({summary.failed_before} left failed by an earlier run)"
    lines = [
        f"{total} specs: {summary.created} created, {summary.updated} updated, "
        f"{summary.exists} exists, "
        f"{failed}, {summary.invalid} invalid, {summary.skipped} skipped (already done) "
        f"in {summary.wall_s:.1f} s ({summary.creates_per_s:.1f} creates/s; "
        f"{summary.requests} requests, {summary.retries} retries)"
    ]
    lines += _existing_notes(summary)
    if summary.stop is not None:
        not_started = total - summary.settled - summary.interrupted
        advice = "; run the same command again to resume" if resumable else ""
        lines.append(
            f"stopped ({summary.stop.text}): {summary.interrupted} in flight or unrecorded "
            f"and {not_started} not started{advice}"
        )
    if summary.salvage is not None:
        lines += summary.salvage.describe(invalid=summary.invalid)
    return lines


def _existing_notes(summary: Summary) -> list[str]:
    """What the ``exists`` records left as they were ask of the user."""
    notes = []
    if summary.drifted:
        notes.append(
            f"{summary.drifted} {_exist(summary.drifted)} with another description, "
            "config or metadata (see drift in the result log); "
            "run --update updates them in place"
        )
    if summary.archived:
        notes.append(
            f"{summary.archived} {_exist(summary.archived)} archived: an archived "
            "environment keeps its name, so run can neither create nor update it"
        )
    return notes


def _exist(count: int) -> str:
    return "exists" if count == 1 else "exist"


__all__ = ["Summary", "describe", "utcnow"]
