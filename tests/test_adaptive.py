"""`--rate auto`: the adaptive rate, tested on a controllable clock (no test sleeps)."""

from __future__ import annotations

import orjson
import pytest

from provisioner.adaptive import AdaptiveRate, AdaptiveRateLimiter
from provisioner.cli import main
from provisioner.emulator import FaultPlan
from tests.conftest import make_specs


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_starts_modest_and_doubles_each_clean_second():
    """Slow start: 10/s, then 20/s, 40/s while every answer is clean."""
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    assert rate.rate_per_s == 10
    for expected in (20, 40, 80):
        clock.now += 1.0
        rate.on_success()
        assert rate.rate_per_s == expected


def test_a_throttle_cuts_once_then_the_curve_returns_to_the_old_rate():
    """A 429 cuts to 0.7x; CUBIC brings the rate back to where it was throttled after K seconds, then beyond."""
    clock = Clock()
    rate = AdaptiveRate(start_rate_per_s=200, clock=clock)
    rate.on_throttle()
    assert rate.rate_per_s == pytest.approx(140)
    clock.now += 0.1
    rate.on_throttle()  # a request of the same burst: no second cut
    assert rate.rate_per_s == pytest.approx(140)
    k = (200 * 0.3 / 0.4) ** (1 / 3)
    clock.now += k - 0.1
    rate.on_success()
    assert rate.rate_per_s == pytest.approx(200)
    clock.now += 2.0
    rate.on_success()
    assert rate.rate_per_s == pytest.approx(200 + 0.4 * 8)


def test_rates_stay_within_bounds():
    """Repeated throttles never go below the floor; growth never above the ceiling."""
    clock = Clock()
    rate = AdaptiveRate(
        start_rate_per_s=1, min_rate_per_s=0.5, max_rate_per_s=50, clock=clock
    )
    for _ in range(10):
        clock.now += 2
        rate.on_throttle()
    assert rate.rate_per_s == 0.5
    clock.now += 1000
    rate.on_success()
    assert rate.rate_per_s == 50


async def test_the_limiter_spaces_sends_and_slows_after_a_throttle():
    """Sends are 1/rate apart; after a 429 they are 1/(0.7 x the rate that went out) apart."""
    clock = Clock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))
        clock.now += seconds

    limiter = AdaptiveRateLimiter(
        AdaptiveRate(start_rate_per_s=10, clock=clock), clock=clock, sleep=sleep
    )
    for _ in range(11):
        await limiter.acquire()
    assert waits == [0.1] * 10
    limiter.feedback(throttled=True, retry_after_s=2.0)
    assert limiter.controller.rate_per_s == pytest.approx(
        7.0
    )  # 10 went out in the last second
    await limiter.acquire()
    await limiter.acquire()
    assert waits[-1] == pytest.approx(1 / 7.0, rel=1e-3)


def test_growth_is_clamped_to_twice_what_goes_out():
    """Slow start does not run ahead of the sends: a rate nobody uses is not learnt."""
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    rate.on_send()
    for _ in range(5):
        clock.now += 1.0
        rate.on_send()
        rate.on_success()
    assert rate.rate_per_s == 10  # one send a second: the allowed rate stays put


@pytest.mark.slow
def test_rate_auto_finds_a_servers_limit(
    make_live_emulator, write_jobs, tmp_path, cli_env
):
    """Against a server that allows 50/s, --rate auto creates every spec with few 429s."""
    emulator = make_live_emulator(
        faults=FaultPlan(rate_limit_per_s=50, rate_limit_burst=5, retry_after_s=1)
    )
    results = tmp_path / "r.jsonl"
    args = [
        "run",
        str(write_jobs(make_specs(150))),
        "--api-url",
        emulator.url,
        "--rate",
        "auto",
    ]
    assert main([*args, "--results", str(results), "--backoff", "0.2"]) == 0
    records = [orjson.loads(line) for line in results.read_bytes().splitlines()]
    assert {r["status"] for r in records} == {"created"}
    stats = emulator.stats()
    throttled = stats["by_status"].get("429", 0)
    assert throttled / stats["requests"] < 0.25
