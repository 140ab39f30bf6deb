"""The local rate limiter (``--rate N`` on ``run``): GCRA slots on a controllable clock."""

from __future__ import annotations

import asyncio

import pytest

from provisioner.errors import ConfigError
from provisioner.pacing.limiter import (
    TIMER_SLACK_S,
    LocalRateLimiter,
    SharedRateLimiter,
)
from tests.helpers import FakeTime


async def send_all(
    limiter: LocalRateLimiter, time: FakeTime, count: int
) -> list[float]:
    """``count`` callers acquire one after another: when each may send."""
    sends = []
    for _ in range(count):
        await limiter.acquire()
        sends.append(time.now)
    return sends


def test_callers_get_evenly_spaced_slots_from_the_first_one() -> None:
    """Ten callers at once: the first goes now, the others every 1/rate after it."""
    time = FakeTime()
    limiter = LocalRateLimiter(200, clock=time, sleep=time.sleep)
    waits = [limiter.reserve() for _ in range(10)]
    assert waits == pytest.approx([i / 200 for i in range(10)])


async def test_a_late_wake_up_does_not_lower_the_rate() -> None:
    """Sleeping a little longer than asked (timer slack) keeps the average at the rate."""
    time = FakeTime()
    limiter = LocalRateLimiter(200, clock=time, sleep=time.sleep)
    sends = await send_all(limiter, time, 2001)
    span = sends[-1] - sends[0]
    assert 2000 / span == pytest.approx(200, rel=0.01)


async def test_no_second_holds_more_than_the_rate_and_the_burst() -> None:
    """In any one-second window at most rate + burst sends, after an idle spell too."""
    time = FakeTime()
    limiter = LocalRateLimiter(50, burst=3, clock=time, sleep=time.sleep)
    sends = await send_all(limiter, time, 120)
    time.now += 30  # idle: the bucket refills to the burst, not beyond
    sends += await send_all(limiter, time, 120)
    busiest = max(
        sum(1 for t in sends[i:] if t - start < 1.0) for i, start in enumerate(sends)
    )
    assert busiest <= 50 + 3


def test_after_an_idle_spell_the_burst_goes_at_once_then_the_rate() -> None:
    """burst=3: three slots are free at once, the fourth waits one interval."""
    time = FakeTime()
    limiter = LocalRateLimiter(10, burst=3, clock=time, sleep=time.sleep)
    waits = [limiter.reserve() for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2])


async def test_a_wait_adds_the_timer_slack_and_a_free_slot_does_not_sleep() -> None:
    """The sleep asked for is the slot's distance plus TIMER_SLACK_S; none when free."""
    asked: list[float] = []
    time = FakeTime()

    async def record(seconds: float) -> None:
        asked.append(seconds)

    limiter = LocalRateLimiter(100, clock=time, sleep=record)
    await limiter.acquire()
    await limiter.acquire()
    assert asked == pytest.approx([0.01 + TIMER_SLACK_S])


async def test_many_waiting_tasks_go_out_in_slot_order_on_a_real_loop() -> None:
    """64 tasks on a real event loop (fast rate): every one goes, spaced by the schedule."""
    limiter = LocalRateLimiter(20_000)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(loop.time())

    await asyncio.gather(*(one() for _ in range(64)))
    assert len(times) == 64
    assert times == sorted(times)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (10, 0)])
def test_a_rate_must_be_positive_and_the_burst_at_least_one(
    rate: float, burst: int
) -> None:
    """A zero or negative rate, or a burst below one, is a ConfigError."""
    with pytest.raises(ConfigError):
        LocalRateLimiter(rate, burst=burst)


async def test_a_pool_worker_that_wakes_late_takes_a_new_slot_once() -> None:
    """A shared-limit worker woken past half a slot after its slot reserves the next one."""
    time = FakeTime()
    reservations: list[float] = []

    async def reserve() -> float:
        reservations.append(time.now)
        return 0.025

    async def late_sleep(seconds: float) -> None:
        time.now += seconds + 0.05  # the process was starved for 50 ms

    limiter = SharedRateLimiter(reserve, sleep=late_sleep, rate_per_s=40, clock=time)
    await limiter.acquire()
    assert len(reservations) == 2  # the missed slot given up, the next one kept


async def test_a_pool_worker_on_time_keeps_its_slot() -> None:
    """Woken on time (or just after), a worker sends in the slot it reserved."""
    time = FakeTime()
    reservations: list[float] = []

    async def reserve() -> float:
        reservations.append(time.now)
        return 0.025

    limiter = SharedRateLimiter(reserve, sleep=time.sleep, rate_per_s=40, clock=time)
    await limiter.acquire()
    assert len(reservations) == 1
