"""Counters of what the emulator answered and which faults it injected."""

from __future__ import annotations

from collections import Counter
from typing import Any

FAULTS = (
    "latency",
    "error_500",
    "error_502",
    "error_503",
    "rate_limited",
    "reset_before_commit",
    "reset_after_commit",
    "slow",
)


class Stats:
    """API request counters (admin routes are not counted).

    ``requests`` counts every API request, ``by_status`` the answers actually sent
    (a dropped connection has none), ``creations`` committed creates, ``conflicts``
    fresh 409 answers, ``replays`` idempotent replays, ``in_flight`` the requests being
    handled now (latency and slow waits included) and ``max_in_flight`` its high-water mark.
    """

    __slots__ = (
        "by_status",
        "conflicts",
        "creations",
        "faults",
        "in_flight",
        "max_in_flight",
        "replays",
        "requests",
    )

    def __init__(self) -> None:
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero every counter; the high-water mark restarts from the current in-flight."""
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.creations = 0
        self.conflicts = 0
        self.replays = 0
        self.faults: Counter[str] = Counter()
        self.max_in_flight = self.in_flight

    def begin(self) -> None:
        """An API request arrived."""
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def to_dict(self) -> dict[str, Any]:
        """The admin stats JSON."""
        return {
            "requests": self.requests,
            "by_status": {str(s): n for s, n in sorted(self.by_status.items())},
            "creations": self.creations,
            "conflicts": self.conflicts,
            "replays": self.replays,
            "faults": {name: self.faults[name] for name in FAULTS},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }
