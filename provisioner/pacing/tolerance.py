"""Failure tolerance (``--max-failures``): stop sending once too many specs failed for good.

A failure counts only when retrying can never fix it: a 4xx answer other than 408,
429 and a 409 "still in progress" (see ``core/outcome.py``), such as a field the
server refuses in a shared default. 5xx answers, resets and throttling do not
count: they pass, and the retry budget handles an outage. Past the limit the run
drains as on a signal (no new spec starts, specs in flight finish) with the stop
kind :attr:`~provisioner.pacing.stopping.StopKind.FAILURES`.

A limit is a count (``3``: the fourth counted failure stops; ``0`` stops at the
first, as Pulumi does) or a percentage of the specs finished so far (``5%``),
judged only once :data:`MIN_SAMPLE` specs have finished, so that one early failure
cannot stop a large job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from provisioner.errors import ConfigError
from provisioner.pacing.stopping import StopKind, StopReason

#: A percentage is judged once this many specs have finished (this run's, or the pool's).
MIN_SAMPLE = 10


@dataclass(frozen=True, slots=True)
class MaxFailures:
    """How many counted failures a run (or a queue's pool) tolerates.

    Exactly one of ``count`` (failures tolerated; the next one stops) and
    ``percent`` (of the specs finished, 0 to 100) is set.
    """

    count: int | None = None
    percent: float | None = None

    def __post_init__(self) -> None:
        if (self.count is None) == (self.percent is None):
            raise ConfigError("--max-failures: give a count or a percentage")
        if self.count is not None and self.count < 0:
            raise ConfigError(f"--max-failures must be 0 or more, got {self.count}")
        if self.percent is not None and not 0 <= self.percent <= 100:  # noqa: PLR2004 - a percentage
            raise ConfigError(
                f"--max-failures must be a percentage from 0% to 100%, got {self}"
            )

    @classmethod
    def parse(cls, text: str, flag: str = "--max-failures") -> MaxFailures:
        """``3`` (failures) or ``5%``/``2.5%`` (of the specs finished)."""
        value = text.strip()
        try:
            if value.endswith("%"):
                percent = float(value.removesuffix("%").strip())
                if math.isfinite(percent):
                    return cls(percent=percent)
            elif value.isdigit():
                return cls(count=int(value))
        except (ValueError, ConfigError):
            pass
        raise ConfigError(
            f"{flag}: expected a number of failures (3) or a percentage of the specs "
            f"finished (5%), got {text!r}"
        )

    def is_exceeded(self, *, failed: int, finished: int) -> bool:
        """Whether ``failed`` counted failures out of ``finished`` specs is past the limit."""
        if self.count is not None:
            return failed > self.count
        if finished < MIN_SAMPLE or self.percent is None:
            return False
        return failed * 100 > self.percent * finished

    def reason(self, *, failed: int, finished: int) -> StopReason:
        """The stop once :meth:`is_exceeded`: the counts and the limit in one sentence."""
        text = (
            f"too many failures: {failed} of {finished} finished specs failed in a way "
            f"retrying cannot fix (--max-failures {self})"
        )
        return StopReason(StopKind.FAILURES, text)

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{self.percent:g}%"


__all__ = ["MIN_SAMPLE", "MaxFailures"]
