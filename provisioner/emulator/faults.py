"""The fault plan (what can go wrong) and the seeded injector that decides per request.

Every API request draws four numbers from one ``random.Random(seed)`` at arrival, in a
fixed order, whatever the plan says: so the same seed and the same request sequence
give the same faults, even when the plan changes between requests.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PROBABILITIES = (
    "error_500",
    "error_502",
    "error_503",
    "reset_before_commit",
    "reset_after_commit",
    "slow",
)
NON_NEGATIVE = ("latency_ms", "jitter_ms", "rate_limit_per_s", "slow_s")


class FaultPlanError(ValueError):
    """A fault plan field has an impossible value."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(slots=True)
class FaultPlan:
    """What the emulator does wrong, and how often; mutate it to change behaviour at once.

    Probabilities are 0..1 per API request, durations are in the unit their name says.
    Admin routes are never faulted.
    """

    seed: int | None = None
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_500: float = 0.0
    error_502: float = 0.0
    error_503: float = 0.0
    rate_limit_per_s: float = 0.0
    rate_limit_burst: int = 1
    rate_limit_body: bool = True
    retry_after_s: float | None = 1.0
    reset_before_commit: float = 0.0
    reset_after_commit: float = 0.0
    slow: float = 0.0
    slow_s: float = 30.0

    def __post_init__(self) -> None:
        FaultPlan.check(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (the admin route's shape)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @staticmethod
    def check(data: Mapping[str, object]) -> dict[str, Any]:
        """Check ``data`` field by field; return it as plan fields or raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(FaultPlan)}
        checked: dict[str, Any] = {}
        for name, value in data.items():
            if name not in known:
                raise FaultPlanError(name, "unknown fault plan field")
            checked[name] = _check_field(name, value)
        return checked

    def update(self, fields: Mapping[str, Any]) -> None:
        """Set the given (already checked) fields in place."""
        for name, value in fields.items():
            setattr(self, name, value)

    def replace_with(self, fields: Mapping[str, Any]) -> None:
        """Reset every field to its default, then set ``fields`` (already checked)."""
        self.update(FaultPlan().to_dict())
        self.update(fields)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultPlanError(name, f"expected a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise FaultPlanError(name, f"must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_field(name: str, value: object) -> Any:
    if name in PROBABILITIES:
        number = _number(name, value)
        if number > 1:
            raise FaultPlanError(
                name, f"must be a probability between 0 and 1, got {value!r}"
            )
        return number
    if name in NON_NEGATIVE:
        return _number(name, value)
    if name == "retry_after_s":
        return None if value is None else _number(name, value)
    if name == "rate_limit_body":
        if not isinstance(value, bool):
            raise FaultPlanError(name, f"expected true or false, got {value!r}")
        return value
    # seed and rate_limit_burst: integers
    if isinstance(value, bool) or not isinstance(value, int):
        if name == "seed" and value is None:
            return None
        raise FaultPlanError(name, f"expected an integer, got {value!r}")
    if name == "rate_limit_burst" and value < 1:
        raise FaultPlanError(name, f"must be at least 1, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Draw:
    """The faults decided for one request at its arrival."""

    delay_s: float
    reset_before: bool
    error_status: int  # 0 = none, else 500, 502 or 503
    reset_after: bool
    slow: bool


#: Tokens a bucket may lack and still let a request through: loop clocks tick in
#: milliseconds (uvloop), and ``(0.105 - 0.100) * 200`` is 0.9999999999999981, so a
#: request exactly ``1 / rate`` after the last one was refused a third of the time.
TOKEN_EPSILON = 1e-9


class TokenBucket:
    """A token bucket refilled at ``rate_per_s`` up to ``burst``; rate 0 means no limit."""

    __slots__ = ("_stamp", "_tokens")

    def __init__(self) -> None:
        self._tokens: float | None = None
        self._stamp = 0.0

    def take(self, rate_per_s: float, burst: int, now: float) -> bool:
        """Take one token at monotonic time ``now``; False when the bucket is empty."""
        if rate_per_s <= 0:
            self._tokens = None
            return True
        tokens = burst if self._tokens is None else self._tokens
        tokens = min(float(burst), tokens + (now - self._stamp) * rate_per_s)
        self._stamp = now
        if tokens >= 1 - TOKEN_EPSILON:
            self._tokens = tokens - 1
            return True
        self._tokens = tokens
        return False

    @property
    def remaining(self) -> int | None:
        """Whole tokens left after the last take; None before the first."""
        return None if self._tokens is None else math.floor(self._tokens)


class FaultInjector:
    """Draws a ``Draw`` per request from one RNG seeded by ``plan.seed``."""

    __slots__ = ("_bucket", "_rng", "_seed", "plan")

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._bucket = TokenBucket()
        self._seed = plan.seed
        self._rng = random.Random(plan.seed)  # noqa: S311  # faults, not secrets

    def reseed(self) -> None:
        """Restart the random sequence from ``plan.seed`` (and refill the bucket)."""
        self._seed = self.plan.seed
        self._rng = random.Random(self._seed)  # noqa: S311  # faults, not secrets
        self._bucket = TokenBucket()

    def draw(self) -> Draw:
        """Decide this request's faults: always four draws, so sequences stay aligned."""
        plan = self.plan
        if plan.seed != self._seed:
            self.reseed()
        rand = self._rng.random
        jitter_u, before_u, error_u, after_u = rand(), rand(), rand(), rand()
        delay_ms = plan.latency_ms + jitter_u * plan.jitter_ms
        error_status = 0
        if error_u < plan.error_500:
            error_status = 500
        elif error_u < plan.error_500 + plan.error_502:
            error_status = 502
        elif error_u < plan.error_500 + plan.error_502 + plan.error_503:
            error_status = 503
        return Draw(
            delay_s=delay_ms / 1000.0,
            reset_before=before_u < plan.reset_before_commit,
            error_status=error_status,
            reset_after=after_u < plan.reset_after_commit,
            slow=plan.reset_after_commit
            <= after_u
            < plan.reset_after_commit + plan.slow,
        )

    def take_token(self, now: float) -> bool:
        """Apply the plan's rate limit at monotonic time ``now``."""
        plan = self.plan
        return self._bucket.take(plan.rate_limit_per_s, plan.rate_limit_burst, now)

    def rate_headers(self) -> dict[str, str]:
        """``X-RateLimit-Limit``/``-Remaining``/``-Reset`` of the bucket (none when off)."""
        plan = self.plan
        remaining = self._bucket.remaining
        if plan.rate_limit_per_s <= 0 or remaining is None:
            return {}
        return {
            "X-RateLimit-Limit": f"{plan.rate_limit_per_s:g}",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(1 / plan.rate_limit_per_s)),
        }

    def retry_after(self) -> str | None:
        """The ``Retry-After`` header value (whole seconds, rounded up), or None."""
        seconds = self.plan.retry_after_s
        return None if seconds is None else str(math.ceil(seconds))
