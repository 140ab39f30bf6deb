"""Request pacing: at most ``rate_per_s`` requests per second across a run.

The runner depends only on the :class:`RateLimiter` protocol, so a limiter shared
by many workers (e.g. through Redis) can replace the local one unchanged.
"""

from __future__ import annotations

from typing import Protocol

from aiolimiter import AsyncLimiter

from provisioner.errors import ConfigError


class RateLimiter(Protocol):
    """Anything that can make a caller wait for its turn to send a request."""

    async def acquire(self) -> None:
        """Return when one more request may be sent."""


class LocalRateLimiter:
    """A leaky bucket on this event loop (aiolimiter).

    Args:
        rate_per_s: sustained requests per second; must be positive.
        burst: requests that may go back to back after an idle spell. The default
            of 1 spaces requests evenly, the politest reading of "R per second".
    """

    def __init__(self, rate_per_s: float, *, burst: int = 1) -> None:
        if rate_per_s <= 0:
            raise ConfigError(f"rate must be positive, got {rate_per_s}")
        if burst < 1:
            raise ConfigError(f"burst must be at least 1, got {burst}")
        self.rate_per_s = rate_per_s
        self._bucket = AsyncLimiter(burst, burst / rate_per_s)

    async def acquire(self) -> None:
        """Wait until the bucket has room for one request."""
        await self._bucket.acquire()


class Unlimited:
    """A limiter that never waits (``--rate 0``)."""

    async def acquire(self) -> None:
        """Return at once."""


def make_limiter(rate_per_s: float) -> RateLimiter:
    """The local limiter for ``rate_per_s``, or :class:`Unlimited` for 0."""
    return Unlimited() if rate_per_s == 0 else LocalRateLimiter(rate_per_s)
