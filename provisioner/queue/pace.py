"""A worker pool's shared pace in Redis: one GCRA schedule, or the pool's adaptive rate.

Every worker of a stream reserves its send slots here (``provisioner:{<stream>}:rate``),
so the pool sends as one client would; with ``--rate auto`` the pool's rate itself
is learnt here (``provisioner:{<stream>}:pace``). One atomic Lua step per
reservation, on Redis's clock. :class:`PoolPace` is what
:func:`provisioner.pacing.choice.make_pool_limiter` calls its ``store``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import TypeAlias

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.typing import EncodableT

from provisioner.pacing.adaptive import (
    ANSWERED_GAPS,
    AdaptiveTuning,
    PoolFeedback,
    Reservation,
)
from provisioner.queue.scripts import ADAPT_LUA, RESERVE_LUA

#: Either redis-py client: one server, or a Redis Cluster (the queue's keys share a slot).
RedisClient: TypeAlias = redis.asyncio.Redis | RedisCluster

#: A pool's learnt rate is forgotten after this long without a reservation.
PACE_TTL_S = 600


class PoolPace:
    """Reserves the pool's send slots; every method may raise ``QueueError``.

    Args:
        client: the queue's redis-py client.
        keys: the queue's keys by role (``rate`` and ``pace`` are used).
        errors: the queue's translation of Redis errors into ``QueueError``.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        keys: Mapping[str, str],
        errors: Callable[[str], contextlib.AbstractContextManager[None]],
    ) -> None:
        self._keys = keys
        self._errors = errors
        self._reserve = client.register_script(RESERVE_LUA)
        self._adapt = client.register_script(ADAPT_LUA)

    async def reserve(self, *, rate_per_s: float, burst: int = 1) -> float:
        """Reserve the next send slot of the queue's shared rate; return the wait in s.

        Every caller on the stream shares one schedule (GCRA on Redis's clock):
        after sleeping the returned seconds, callers together send at most
        ``rate_per_s`` per second, evenly spaced, plus ``burst`` after an idle spell.
        """
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        interval_us = 1_000_000 / rate_per_s
        with self._errors("reserve a send slot"):
            wait_us = await self._reserve(
                keys=[self._keys["rate"]], args=[repr(interval_us), str(burst)]
            )
        return int(wait_us) / 1_000_000

    async def reserve_adaptive(
        self, heard: PoolFeedback, *, tuning: AdaptiveTuning
    ) -> Reservation:
        """Tell the pool's adaptive rate what was heard, then reserve a slot at that rate.

        One atomic step on Redis's clock (``ADAPT_LUA``): the answers of the
        pool's current epoch move its rate (:func:`provisioner.pacing.adaptive.step`),
        then the next slot of the pool's schedule is reserved at the new rate.
        """
        t = tuning
        args: list[EncodableT] = [
            *(repr(float(value)) for value in (
                t.start_rate_per_s, t.min_rate_per_s, t.max_rate_per_s, t.beta,
                t.scale, t.ramp_s, t.tolerance, t.window_s,
            )),
            ANSWERED_GAPS, PACE_TTL_S * 1000, heard.epoch, heard.clean, heard.throttled,
        ]  # fmt: skip
        with self._errors("reserve a send slot"):
            wait_us, epoch, rate = await self._adapt(
                keys=[self._keys["rate"], self._keys["pace"]], args=args
            )
        return Reservation(
            wait_s=int(wait_us) / 1_000_000, epoch=int(epoch), rate_per_s=float(rate)
        )


__all__ = ["PACE_TTL_S", "PoolPace", "RedisClient"]
