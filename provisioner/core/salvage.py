"""What a run did not finish, to resubmit: which specs, and why, grouped by error type.

The runner hands every spec that ended neither ``created``, ``exists`` nor
``updated`` to a :class:`Salvage`: failed (the record's error type), interrupted
in flight, not started because the run stopped, and left failed by an earlier
run (``--no-retry-failed``). Invalid specs are not salvaged: retrying cannot
fix them, their file must be edited (the errors name the line). The salvage
writes each spec to its target (a :class:`SalvageTarget`, the salvage file) and
counts them by error type for the summary.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from provisioner.results import SUCCESS, Result
from provisioner.spec import Spec

#: The error types of specs that got no record of their own in this run.
INTERRUPTED = "interrupted"
NOT_STARTED = "not_started"
FAILED_BEFORE = "failed_before"


class SalvageTarget(Protocol):
    """Where salvaged specs go (:class:`provisioner.files.salvage.SalvageFile`)."""

    def write(self, spec: Spec, *, error_type: str) -> None:
        """Add one spec that did not finish, and why."""


def error_type_of(result: Result) -> str | None:
    """Why ``result``'s spec should be tried again, or ``None`` when it should not.

    ``created``, ``exists`` and ``updated`` are finished; ``invalid`` needs an edit,
    not a retry. A failure is salvaged under its error type.
    """
    if result.status in SUCCESS or result.status == "invalid":
        return None
    return result.error.type if result.error is not None else "failed"


class Salvage:
    """The specs of one run that did not finish, written to ``target`` and counted.

    Args:
        target: receives each spec and its error type.
        path: where the salvage is published (for the summary).
    """

    def __init__(self, target: SalvageTarget, *, path: str) -> None:
        self._target = target
        self.path = path
        self.by_error_type: Counter[str] = Counter()

    def add(self, spec: Spec, *, error_type: str) -> None:
        """Salvage ``spec`` under ``error_type``."""
        self._target.write(spec, error_type=error_type)
        self.by_error_type[error_type] += 1

    @property
    def total(self) -> int:
        """Specs salvaged."""
        return self.by_error_type.total()

    def grouped(self) -> dict[str, int]:
        """Error type -> specs, most first (then by name)."""
        return dict(sorted(self.by_error_type.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self, *, invalid: int = 0) -> dict[str, Any]:
        """The ``salvage`` field of ``--summary``."""
        return {
            "path": self.path,
            "specs": self.total,
            "by_error_type": self.grouped(),
            "invalid_left_out": invalid,
        }

    def describe(self, *, invalid: int = 0) -> list[str]:
        """The summary lines: how many, where, and why, grouped by error type."""
        on_stdout = self.path == "-"
        if not self.total:
            where = "nothing on stdout" if on_stdout else f"{self.path} is empty"
            lines = [f"salvage: every spec finished; {where}"]
        else:
            groups = ", ".join(f"{n} {kind}" for kind, n in self.grouped().items())
            retry = (
                "written to stdout"
                if on_stdout
                else f"retry exactly those with: provisioner run {self.path}"
            )
            lines = [f"salvage: {self.total} specs did not finish ({groups}); {retry}"]
        if invalid:
            lines.append(
                f"salvage: {invalid} invalid specs are not in it "
                "(fix them where the errors say, then run their file again)"
            )
        return lines


__all__ = [
    "FAILED_BEFORE",
    "INTERRUPTED",
    "NOT_STARTED",
    "Salvage",
    "SalvageTarget",
    "error_type_of",
]
