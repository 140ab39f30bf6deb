"""Request pacing: at most ``rate_per_s`` requests per second across a run.

The runner depends only on the :class:`RateLimiter` protocol, so a limiter shared
by many workers (e.g. through Redis) can replace the local one unchanged.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from provisioner.errors import ConfigError, QueueError

#: Added to every wait: uvloop's timers have millisecond granularity and may fire
#: up to a millisecond early. Slots are fixed in advance, so this shifts sends
#: later without lowering the rate.
TIMER_SLACK_S = 0.001


class RateLimiter(Protocol):
    """Anything that can make a caller wait for its turn to send a request."""

    async def acquire(self) -> None:
        """Return when one more request may be sent."""

    def feedback(self, *, throttled: bool, retry_after_s: float | None = None) -> None:
        """Hear how a request went (an adaptive limiter learns from it)."""


class _FixedRate:
    """A limiter whose rate the answers do not change."""

    def feedback(self, *, throttled: bool, retry_after_s: float | None = None) -> None:
        """Answers do not change a fixed rate."""


class LocalRateLimiter(_FixedRate):
    """GCRA on this event loop: each caller reserves the next slot of a fixed schedule.

    A caller takes the slot ``1 / rate_per_s`` after the previous one (or now, after
    an idle spell) and sleeps until it, so however many callers wait, they go out
    evenly spaced and the average is the rate itself: a late timer delays one send,
    not the schedule. The same algorithm paces a queue's pool through Redis.
    (A leaky bucket whose waiters re-check on waking, aiolimiter's, reached 0.83
    of ``--rate 200`` with 64 waiters.)

    Args:
        rate_per_s: sustained requests per second; must be positive.
        burst: requests that may go back to back after an idle spell. The default
            of 1 spaces requests evenly, the politest reading of "R per second".
        clock: monotonic seconds; tests inject one.
        sleep: the coroutine that waits; tests inject one that does not.
    """

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ConfigError(f"rate must be positive, got {rate_per_s}")
        if burst < 1:
            raise ConfigError(f"burst must be at least 1, got {burst}")
        self.rate_per_s = rate_per_s
        self._interval_s = 1.0 / rate_per_s
        self._tolerance_s = (burst - 1) * self._interval_s
        self._clock = clock
        self._sleep = sleep
        self._next_s = float("-inf")  # GCRA's theoretical arrival time

    def reserve(self) -> float:
        """Take the next slot; return the seconds until it (0 when it is now)."""
        now = self._clock()
        slot = max(self._next_s, now)
        self._next_s = slot + self._interval_s
        return max(0.0, slot - self._tolerance_s - now)

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        wait_s = self.reserve()
        if wait_s > 0:
            await self._sleep(wait_s + TIMER_SLACK_S)


class Unlimited(_FixedRate):
    """A limiter that never waits (``--rate 0``)."""

    async def acquire(self) -> None:
        """Return at once."""


#: A fixed ``--rate`` (one run's, or a pool's) is paced at this share of itself: the
#: slots are exact, but the network and the event loops delay some sends more than
#: others, and two delays in a row would otherwise put one request too many into a
#: second as the server counts them (measured: 202 in a second at an exact 200/s).
POOL_HEADROOM = 0.98


class SharedRateLimiter(_FixedRate):
    """Paces requests across every worker of a queue: a shared store reserves each slot.

    Args:
        reserve: reserves the next slot and returns the seconds to wait for it
            (the queue's GCRA in Redis); a ``QueueError`` while Redis is away is
            waited out with a backoff.
        is_stopping: when it turns true, stop waiting (the caller drains).
        sleep: the coroutine that waits; tests inject one that does not.
        rate_per_s: the rate ``reserve`` paces at, if known (shown in the metrics).
        clock: monotonic seconds; tests inject one.

    A worker that wakes more than half a slot after its slot (a busy machine, a
    starved process) gives that slot up and reserves the next one, once: sent
    late, it would land next to the following slots of the pool and put a request
    too many into a second as the server counts them.
    """

    def __init__(
        self,
        reserve: Callable[[], Awaitable[float]],
        *,
        is_stopping: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rate_per_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        self._reserve = reserve
        self._is_stopping = is_stopping
        self._sleep = sleep
        self._clock = clock

    async def acquire(self) -> None:
        """Wait for this worker's next slot of the pool's rate."""
        backoff_s = 0.1
        may_retake = self.rate_per_s is not None
        while not self._is_stopping():
            try:
                wait_s = await self._reserve()
            except QueueError as exc:
                if not exc.is_connection:
                    raise
                await self._sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 2.0)
                continue
            if wait_s <= 0:
                return
            due = self._clock() + wait_s
            await self._sleep(wait_s + TIMER_SLACK_S)
            if not (may_retake and self._is_late(due)):
                return
            may_retake = False

    def _is_late(self, due: float) -> bool:
        rate = self.rate_per_s or 0.0
        return rate > 0 and self._clock() - due > 0.5 / rate


def rate_of(limiter: RateLimiter) -> float:
    """Requests per second ``limiter`` paces at now: ``+Inf`` unlimited, ``NaN`` unknown."""
    if isinstance(limiter, Unlimited):
        return math.inf
    # By attribute, so that run does not import the adaptive limiters it does not use:
    # a local adaptive limiter follows its controller, the others say their rate.
    source = getattr(limiter, "controller", limiter)
    rate = getattr(source, "rate_per_s", None)
    return math.nan if rate is None else float(rate)
