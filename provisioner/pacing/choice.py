"""Which rate limiter a run or a queue's worker pool gets, from its rate settings.

``--rate 0`` is :class:`~provisioner.pacing.limiter.Unlimited`, ``--rate auto`` an
adaptive limiter, any other rate a fixed schedule at :data:`POOL_HEADROOM` of it.
A pool's limiter reserves its slots in a shared store (the queue's Redis), so every
worker of the stream is paced, or learns its rate, as one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from provisioner.pacing.adaptive import (
    AdaptiveRateLimiter,
    AdaptiveTuning,
    PoolFeedback,
    Reservation,
    SharedAdaptiveRateLimiter,
)
from provisioner.pacing.limiter import (
    POOL_HEADROOM,
    LocalRateLimiter,
    RateLimiter,
    SharedRateLimiter,
    Unlimited,
)


class PoolStore(Protocol):
    """Where a worker pool reserves its send slots (the queue's ``JobQueue``)."""

    async def reserve(self, *, rate_per_s: float, burst: int = 1) -> float:
        """Reserve the next slot of a fixed shared rate; the seconds to wait for it."""

    async def reserve_adaptive(
        self, heard: PoolFeedback, *, tuning: AdaptiveTuning
    ) -> Reservation:
        """Report what was heard, then reserve a slot at the pool's learnt rate."""


def make_limiter(rate_per_s: float, *, adaptive: bool = False) -> RateLimiter:
    """The limiter of one process: adaptive (``--rate auto``), unlimited for 0, else fixed."""
    if adaptive:
        return AdaptiveRateLimiter()
    if rate_per_s == 0:
        return Unlimited()
    return LocalRateLimiter(rate_per_s * POOL_HEADROOM)


def make_pool_limiter(
    store: PoolStore,
    rate_per_s: float,
    *,
    adaptive: bool,
    is_stopping: Callable[[], bool],
) -> RateLimiter:
    """One rate for every worker of a stream, reserved in ``store`` (learnt together, with auto)."""
    if adaptive:
        tuning = AdaptiveTuning()
        return SharedAdaptiveRateLimiter(
            lambda heard: store.reserve_adaptive(heard, tuning=tuning),
            is_stopping=is_stopping,
        )
    if rate_per_s == 0:
        return Unlimited()
    rate = rate_per_s * POOL_HEADROOM
    return SharedRateLimiter(
        lambda: store.reserve(rate_per_s=rate),
        is_stopping=is_stopping,
        rate_per_s=rate,
    )


__all__ = ["PoolStore", "make_limiter", "make_pool_limiter"]
