"""``--rate auto``: find an unknown rate limit instead of hammering it.

:class:`AdaptiveRate` is the controller, pure arithmetic on an injected clock: it
starts at a modest rate, doubles it every second while the answers are clean
(slow start, never beyond twice what really goes out), and on a 429 or 503 cuts
it to ``beta`` of the rate that really went out (once per burst of such answers),
then follows the CUBIC curve of the AWS SDKs' adaptive retry mode: back to the
throttled rate within ``K`` seconds, then probing beyond it, slowly at first.
A throttled request's own retry waits out the server's ``Retry-After``.

:class:`AdaptiveRateLimiter` paces requests at the controller's rate; the
pipeline reports each answer to it through :meth:`feedback`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from provisioner.errors import ConfigError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class AdaptiveRate:
    """The send rate learnt from the answers (slow start, then CUBIC).

    Args:
        start_rate_per_s: the rate before anything is known.
        min_rate_per_s: never slower than this.
        max_rate_per_s: never faster than this.
        beta: the share of the rate kept after a throttle (0.7 as in the AWS SDKs).
        scale: CUBIC's C: how fast the curve grows away from the last throttle.
        cooldown_s: throttles this soon after a cut are the same episode (the
            requests that were already in flight): one cut per episode.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        start_rate_per_s: float = 10.0,
        min_rate_per_s: float = 0.5,
        max_rate_per_s: float = 10_000.0,
        beta: float = 0.7,
        scale: float = 0.4,
        cooldown_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 0 < min_rate_per_s <= start_rate_per_s <= max_rate_per_s:
            raise ConfigError("adaptive rate: need 0 < min <= start <= max")
        if not 0 < beta < 1:
            raise ConfigError(
                f"adaptive rate: beta must be between 0 and 1, got {beta}"
            )
        self._min, self._max = min_rate_per_s, max_rate_per_s
        self._beta, self._scale, self._cooldown_s = beta, scale, cooldown_s
        self._clock = clock
        self._rate = start_rate_per_s
        self._since = clock()  # slow start: when the rate was last doubled
        self._last_max: float | None = None  # the rate of the last throttle
        self._last_throttle = float("-inf")
        # The rate requests really go out at (concurrency and latency may keep it
        # under the allowed rate): the sends of the last second.
        self._sends: deque[float] = deque()

    @property
    def measured_rate_per_s(self) -> float:
        """Requests that went out in the last second."""
        self._forget(self._clock())
        return float(len(self._sends))

    def on_send(self) -> None:
        """One request went out (for the measured rate)."""
        now = self._clock()
        self._sends.append(now)
        self._forget(now)

    def _forget(self, now: float) -> None:
        while self._sends and self._sends[0] <= now - 1.0:
            self._sends.popleft()

    @property
    def rate_per_s(self) -> float:
        """Requests per second to send now."""
        return self._rate

    def on_success(self) -> None:
        """A clean answer: grow (doubling per second, or along the CUBIC curve)."""
        now = self._clock()
        if self._last_max is None:
            elapsed = now - self._since
            if elapsed >= 1.0:
                self._grow_to(self._rate * 2.0 ** int(elapsed))
                self._since = now
            return
        k = (self._last_max * (1 - self._beta) / self._scale) ** (1 / 3)
        t = now - self._last_throttle
        self._grow_to(self._scale * (t - k) ** 3 + self._last_max)

    def _grow_to(self, rate: float) -> None:
        # Never more than twice what really goes out: a rate nobody uses is no
        # knowledge, and a throttle would have to cut it down many times.
        measured = self.measured_rate_per_s
        if measured > 0:
            rate = min(rate, max(self._rate, 2 * measured))
        self._rate = self._clamp(rate)

    def on_throttle(self) -> None:
        """A 429 or 503: cut the rate to ``beta`` of what really went out.

        Once per episode: the throttles that follow within ``cooldown_s`` answer
        requests that were already in flight, and change nothing.
        """
        now = self._clock()
        if now - self._last_throttle < self._cooldown_s:
            return  # the same episode: the requests that were already in flight
        used = self._rate
        measured = self.measured_rate_per_s
        if measured > 0:
            used = min(used, measured)
        self._last_max = used
        self._last_throttle = now
        self._rate = self._clamp(used * self._beta)

    def _clamp(self, rate: float) -> float:
        return min(self._max, max(self._min, rate))


class AdaptiveRateLimiter:
    """Paces requests at an :class:`AdaptiveRate` and feeds it every answer.

    Args:
        controller: the rate to follow.
        clock: monotonic seconds (the controller's).
        sleep: the coroutine that waits; tests inject one that does not.
    """

    def __init__(
        self,
        controller: AdaptiveRate | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.controller = controller or AdaptiveRate(clock=clock)
        self._clock = clock
        self._sleep = sleep
        self._last_send = float("-inf")
        self._turn = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for the next slot at the current rate.

        Callers go one at a time, each waiting ``1/rate`` after the send before
        it at the rate of the moment: a change of rate applies to the very next
        send, not after a queue of slots reserved at the old rate.
        """
        async with self._turn:
            now = self._clock()
            slot = max(now, self._last_send + 1.0 / self.controller.rate_per_s)
            if slot > now:
                await self._sleep(slot - now)
            self._last_send = slot
            self.controller.on_send()

    def feedback(self, *, throttled: bool, retry_after_s: float | None = None) -> None:
        """One answer: throttled (429, 503) or not.

        ``Retry-After`` is honoured by the throttled request's own retry (the
        retry policy waits it out); the other requests go on at the cut rate.
        """
        if throttled:
            self.controller.on_throttle()
        else:
            self.controller.on_success()


__all__ = ["AdaptiveRate", "AdaptiveRateLimiter"]
