"""`--rate auto`: the adaptive controller and its limiter on a controllable clock (no test sleeps)."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import math

import pytest

from provisioner.api.client import ApiClient, open_session
from provisioner.cli.main import main
from provisioner.core.pipeline import Pipeline
from provisioner.emulator import Emulator, FaultPlan
from provisioner.errors import ConfigError
from provisioner.pacing.adaptive import (
    AdaptiveRate,
    AdaptiveRateLimiter,
    AdaptiveTuning,
    PaceState,
    step,
)
from provisioner.pacing.retry import RetryBudget, RetryPolicy
from provisioner.pacing.stopping import StopController
from provisioner.redact import Secret
from provisioner.settings import ApiSettings
from provisioner.spec import Spec, spec_key
from tests.helpers import TEST_TOKEN, FakeTime, make_specs, records


def feed(rate: AdaptiveRate, time: FakeTime, seconds: float, *, every: int = 0) -> int:
    """Answers at the controller's own rate for ``seconds``; every ``every``-th is a throttle."""
    count = 0
    end = time.now + seconds
    while time.now < end:
        time.now += 1 / rate.rate_per_s
        count += 1
        rate.on_answer(throttled=bool(every) and count % every == 0)
    return count


def throttled_at(rate_per_s: float, time: FakeTime, **tuning: float) -> AdaptiveRate:
    """A controller past slow start: at ``rate_per_s``, then cut once by a wall of 429s."""
    rate = AdaptiveRate(
        AdaptiveTuning(start_rate_per_s=rate_per_s, **tuning), clock=time
    )
    rate.state = PaceState(rate_per_s, gap_s=1 / rate_per_s, counted_at=time.now)
    while rate.epoch == 0:
        time.now += 1 / rate_per_s
        rate.on_answer(throttled=True)
    return rate


def test_slow_start_begins_modest_and_doubles_each_ramp_while_answers_keep_up():
    """20/s at first, 40/s after 0.1 s of clean answers, past 200/s within a second."""
    time = FakeTime()
    rate = AdaptiveRate(clock=time)
    assert rate.rate_per_s == 20
    feed(rate, time, 0.11)
    assert rate.rate_per_s == 40
    seen = [rate.rate_per_s]
    while time.now < 101:
        feed(rate, time, 0.1)
        seen.append(rate.rate_per_s)
    assert all(b <= 2 * a for a, b in itertools.pairwise(seen))
    assert seen[-1] > 200


def test_the_rate_never_grows_beyond_twice_what_is_answered():
    """One answer a second (the caller cannot send faster): one doubling on trust, then no more."""
    time = FakeTime()
    rate = AdaptiveRate(clock=time)
    for _ in range(20):
        time.now += 1.0
        rate.on_answer(throttled=False)
    assert rate.rate_per_s == 40


def test_a_few_429s_below_the_tolerance_do_not_cut():
    """One 429 in 50 (2 %, the jitter of a one-token bucket) leaves the rate growing."""
    time = FakeTime()
    rate = AdaptiveRate(clock=time)
    feed(rate, time, 2.0, every=50)
    assert rate.epoch == 0
    assert rate.rate_per_s > 200


def test_a_wall_of_429s_cuts_once_to_beta_of_the_rate_sent():
    """429s in a row at 200/s: one cut to 0.7 x 200; later 429s of the same sends change nothing."""
    time = FakeTime()
    rate = throttled_at(200, time)
    assert rate.epoch == 1
    assert rate.rate_per_s == pytest.approx(140)
    rate.on_answer(throttled=True, epoch=0)  # sent before the cut
    rate.on_answer(throttled=True, epoch=0)
    assert (rate.epoch, rate.rate_per_s) == (1, pytest.approx(140))


def test_a_cut_keeps_the_share_of_clean_answers_but_never_less_than_beta():
    """At 12 % of 429s the cut keeps about 88 % of the rate; at 50 % it keeps 70 %."""
    for every, kept in ((8, 0.875), (2, 0.7)):
        time = FakeTime()
        rate = AdaptiveRate(AdaptiveTuning(start_rate_per_s=100), clock=time)
        rate.state = PaceState(100, gap_s=0.01, counted_at=time.now, w_max=100)
        feed(rate, time, 10.0, every=every)
        assert rate.epoch >= 1
        assert rate.state.kept == pytest.approx(kept, abs=0.03)


def test_a_rate_still_too_high_after_a_cut_is_cut_again_by_its_own_answers():
    """429s to requests sent after the cut (the new epoch) cut again at once: no fixed cooldown."""
    time = FakeTime()
    rate = throttled_at(200, time)
    for _ in range(3):
        time.now += 0.001
        rate.on_answer(throttled=True, epoch=1)
    assert rate.epoch == 2
    assert rate.rate_per_s == pytest.approx(140 * 0.7)


def test_after_a_cut_the_cubic_curve_returns_to_the_old_rate_then_probes_beyond():
    """Back at w_max = 200 after K = cbrt(200 x 0.3 / 0.4) s of clean answers, then C (t - K)^3 above it."""
    time = FakeTime()
    rate = throttled_at(200, time)
    cut_at = time.now
    k = math.cbrt(200 * 0.3 / 0.4)
    feed(rate, time, k)
    time.now = cut_at + k
    rate.on_answer(throttled=False)
    assert rate.rate_per_s == pytest.approx(200)
    feed(rate, time, 1.99)
    time.now = cut_at + k + 2
    rate.on_answer(throttled=False)
    assert rate.rate_per_s == pytest.approx(200 + 0.4 * 8)


def test_rates_stay_within_bounds():
    """Walls of 429s never go below the floor; clean answers never above the ceiling."""
    time = FakeTime()
    rate = AdaptiveRate(
        AdaptiveTuning(start_rate_per_s=1, min_rate_per_s=0.5, max_rate_per_s=50),
        clock=time,
    )
    for epoch in range(10):
        for _ in range(3):
            time.now += 0.5
            rate.on_answer(throttled=True, epoch=epoch)
    assert rate.rate_per_s == 0.5
    feed(rate, time, 120.0)
    assert rate.rate_per_s == 50


def test_step_is_a_pure_function_of_state_time_and_answers():
    """The same state, time and answers give the same next state; no answers change nothing."""
    tuning = AdaptiveTuning()
    state = PaceState.initial(tuning, 10.0)
    assert step(state, tuning, now=11.0) is state
    first = step(state, tuning, now=10.2, clean=3)
    assert first == step(state, tuning, now=10.2, clean=3)
    assert first.rate_per_s == 40


@pytest.mark.parametrize(
    "fields",
    [
        {"start_rate_per_s": 0.1},  # below the floor
        {"beta": 1.0},
        {"tolerance": 1.0},
        {"ramp_s": 0},
    ],
)
def test_impossible_tuning_is_a_config_error(fields):
    """A start below the floor, beta or tolerance of 1, or a zero ramp are refused."""
    with pytest.raises(ConfigError):
        AdaptiveTuning(**fields)


# --- the limiter ----------------------------------------------------------------


def limiter_at(rate_per_s: float, time: FakeTime) -> AdaptiveRateLimiter:
    tuning = AdaptiveTuning(start_rate_per_s=rate_per_s)
    return AdaptiveRateLimiter(
        AdaptiveRate(tuning, clock=time), clock=time, sleep=time.sleep, spin_s=0
    )


async def test_the_limiter_spaces_sends_one_interval_apart():
    """At 10/s: the first send goes at once, each next one 0.1 s after it."""
    time = FakeTime()
    limiter = limiter_at(10, time)
    sends = []
    for _ in range(5):
        await limiter.acquire()
        sends.append(time.now)
    assert [b - a for a, b in itertools.pairwise(sends)] == pytest.approx([0.1] * 4)


async def test_a_late_wake_up_never_brings_the_next_send_early():
    """A sleep that overshoots by 30 ms: the next send still waits a whole interval after it."""
    time = FakeTime()
    limiter = limiter_at(10, time)
    await limiter.acquire()

    async def late(seconds: float) -> None:
        time.now += seconds + 0.03

    limiter._sleep = late
    await limiter.acquire()
    late_send = time.now
    limiter._sleep = time.sleep
    await limiter.acquire()
    assert time.now - late_send == pytest.approx(0.1)


async def test_a_cut_applies_to_a_send_already_waiting():
    """An episode heard while a caller waits at 100/s makes it wait 1/70 s, not 1/100 s."""
    time = FakeTime()
    limiter = limiter_at(100, time)
    await limiter.acquire()
    started = time.now

    async def hear_a_wall_of_429s(seconds: float) -> None:
        if time.now == started:
            for _ in range(3):
                limiter.feedback(throttled=True)
        await time.sleep(min(seconds, 0.001))

    limiter._sleep = hear_a_wall_of_429s
    await limiter.acquire()
    assert limiter.controller.rate_per_s == pytest.approx(70)
    assert time.now - started == pytest.approx(1 / 70, abs=0.001)


async def test_the_last_stretch_of_a_wait_yields_to_the_loop_instead_of_a_timer():
    """With spin_s = 1 ms the timer sleeps to 1 ms before the send; the rest is sleep(0)."""
    time = FakeTime()
    tuning = AdaptiveTuning(start_rate_per_s=10)

    async def sleep(seconds: float) -> None:
        time.sleeps.append(seconds)
        time.now += max(seconds, 0.0002)  # a loop pass takes a little time

    limiter = AdaptiveRateLimiter(
        AdaptiveRate(tuning, clock=time), clock=time, sleep=sleep, spin_s=0.001
    )
    await limiter.acquire()
    await limiter.acquire()
    assert time.sleeps[0] == pytest.approx(0.099)
    assert all(seconds < 0.001 for seconds in time.sleeps[1:])
    assert 0.0 in time.sleeps
    assert 100.1 <= time.now < 100.1 + 0.0002 * 1.01


async def test_answers_to_sends_before_a_cut_do_not_cut_again():
    """Each request's task carries the epoch it was sent in: after a cut, its old 429s are ignored."""
    time = FakeTime()
    limiter = limiter_at(100, time)

    async def send() -> None:
        await limiter.acquire()

    contexts = [contextvars.copy_context() for _ in range(6)]
    for context in contexts:
        await asyncio.get_running_loop().create_task(send(), context=context)
    for context in contexts:  # six 429s to sends of epoch 0
        context.run(limiter.feedback, throttled=True)
    assert limiter.controller.epoch == 1
    assert limiter.controller.rate_per_s == pytest.approx(70)


# --- through the pipeline and the CLI ----------------------------------------------


async def test_a_throttled_request_waits_its_retry_after_and_the_rate_is_cut(
    emulator: Emulator,
):
    """429 with Retry-After: 2 on every request past the first: each retry waits 2 s; the rate drops."""
    emulator.faults.rate_limit_per_s = 0.001
    emulator.faults.retry_after_s = 2
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    time = FakeTime()
    limiter = limiter_at(20, time)
    api = ApiSettings(token=Secret(TEST_TOKEN), base_url=emulator.url)
    async with open_session(concurrency=4, timeout_s=5) as session:
        pipeline = Pipeline(
            client=ApiClient(session, settings=api),
            policy=RetryPolicy(max_attempts=3, sleep=no_sleep),
            budget=RetryBudget(),
            limiter=limiter,
            stop=StopController(grace_s=5),
            target=emulator.url,
        )
        for body in make_specs(3):
            spec = Spec(
                name=body["name"],
                body=body,
                key=spec_key(body),
                source="t",
                line=1,
                index=0,
            )
            await pipeline.provision(spec)
    assert waits
    assert set(waits) == {2.0}
    assert limiter.controller.rate_per_s < 20


@pytest.mark.slow
def test_rate_auto_finds_a_servers_limit(
    make_live_emulator, write_jobs, tmp_path, cli_env
):
    """Against a server that allows 50/s, --rate auto creates every spec with few 429s."""
    emulator = make_live_emulator(
        faults=FaultPlan(rate_limit_per_s=50, rate_limit_burst=1, retry_after_s=1)
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
    assert main([*args, "--results", str(results), "--concurrency", "16"]) == 0
    assert {r["status"] for r in records(results)} == {"created"}
    stats = emulator.stats()
    throttled = stats["by_status"].get("429", 0)
    assert throttled / stats["requests"] < 0.2
