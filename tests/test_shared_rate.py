"""A pool's adaptive rate, learnt together through a real Redis (the queue's Lua script)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable

import orjson
import pytest

from provisioner.cli.flags import build_parser, resolve_env
from provisioner.emulator import FaultPlan
from provisioner.pacing.adaptive import (
    AdaptiveTuning,
    PoolFeedback,
    Reservation,
    SharedAdaptiveRateLimiter,
)
from provisioner.queue.streams import JobQueue
from provisioner.settings import RedisSettings
from tests.helpers import (
    FakeTime,
    make_specs,
    redis_args,
    redis_url,
    run_cli,
    spawn_cli,
)

#: A slow start that doubles at the next clean answer, whatever Redis's clock says.
EAGER = AdaptiveTuning(ramp_s=1e-6)


@pytest.fixture
async def second_client(redis: JobQueue) -> AsyncIterator[JobQueue]:
    """Another client on the same queue, as another worker would have."""
    queue = JobQueue.connect(RedisSettings(url=redis_url(), stream=redis.stream))
    yield queue
    await queue.close()


def worker_limiter(
    queue: JobQueue, tuning: AdaptiveTuning = EAGER
) -> SharedAdaptiveRateLimiter:
    def reserve(heard: PoolFeedback) -> Awaitable[Reservation]:
        return queue.pace().reserve_adaptive(heard, tuning=tuning)

    time = FakeTime()
    return SharedAdaptiveRateLimiter(reserve, clock=time, sleep=time.sleep, spin_s=0)


async def send(limiter: SharedAdaptiveRateLimiter) -> contextvars.Context:
    """One request's acquire in a task of its own; its context carries the send's epoch."""
    context = contextvars.copy_context()
    await asyncio.get_running_loop().create_task(limiter.acquire(), context=context)
    return context


async def answers(
    limiter: SharedAdaptiveRateLimiter, count: int, *, throttled: bool
) -> None:
    """``count`` sends, each answered clean or throttled."""
    for _ in range(count):
        context = await send(limiter)
        context.run(limiter.feedback, throttled=throttled)


async def test_a_throttle_seen_by_one_worker_lowers_the_rate_the_other_paces_at(
    redis: JobQueue, second_client: JobQueue
):
    """Worker A meets a wall of 429s; worker B's next slot is at 0.7 of the pool's old rate."""
    a, b = worker_limiter(redis), worker_limiter(second_client)
    await answers(b, 1, throttled=False)
    before = b.rate_per_s
    assert before == 20
    await answers(a, 3, throttled=True)
    await send(a)  # the reservation that reports them
    await send(b)
    assert b.rate_per_s == pytest.approx(before * 0.7)
    assert (await redis.status("g")).pool_rate_per_s == pytest.approx(14)


async def test_the_pool_cuts_once_for_throttles_of_the_same_sends(
    redis: JobQueue, second_client: JobQueue
):
    """Both workers report 429s to requests of the same epoch: one cut, not two."""
    a, b = worker_limiter(redis), worker_limiter(second_client)
    a_sends = [await send(a) for _ in range(3)]
    b_sends = [await send(b) for _ in range(3)]
    for context in a_sends + b_sends:
        context.run(a.feedback if context in a_sends else b.feedback, throttled=True)
    await send(a)
    await send(b)
    assert a.rate_per_s == pytest.approx(14)
    assert b.rate_per_s == pytest.approx(14)


async def test_clean_answers_raise_the_pools_rate(
    redis: JobQueue, second_client: JobQueue
):
    """Clean answers reported by worker A grow the rate worker B paces at."""
    a, b = worker_limiter(redis), worker_limiter(second_client)
    await answers(b, 1, throttled=False)
    assert b.rate_per_s == 20
    await answers(a, 3, throttled=False)
    await send(a)
    await send(b)
    assert b.rate_per_s is not None
    assert b.rate_per_s > 20


async def test_after_a_cut_clean_answers_climb_the_cubic_curve(redis: JobQueue):
    """Past slow start, every clean answer moves the pool's rate up the curve from the cut."""
    a = worker_limiter(redis)
    await answers(a, 3, throttled=True)
    await send(a)
    cut = a.rate_per_s
    assert cut == pytest.approx(14)
    await answers(a, 5, throttled=False)
    await send(a)
    assert a.rate_per_s is not None
    assert a.rate_per_s > cut


async def test_the_pool_is_paced_as_one_schedule(
    redis: JobQueue, second_client: JobQueue
):
    """Two workers' slots interleave: each new reservation waits one interval more at 20/s."""
    time_a, time_b = FakeTime(), FakeTime()
    slow = AdaptiveTuning(ramp_s=60)

    def limiter(queue: JobQueue, time: FakeTime) -> SharedAdaptiveRateLimiter:
        return SharedAdaptiveRateLimiter(
            lambda heard: queue.pace().reserve_adaptive(heard, tuning=slow),
            clock=time,
            sleep=time.sleep,
            spin_s=0,
        )

    a, b = limiter(redis, time_a), limiter(second_client, time_b)
    for _ in range(2):
        await a.acquire()
        await b.acquire()
    # Redis's clock moves meanwhile (tens of milliseconds on a loaded machine), the
    # slots do not: each wait is its slot less the time already gone, never more.
    for waits, slots in ((time_b.sleeps, [0.05, 0.15]), (time_a.sleeps, [0.1])):
        assert len(waits) == len(slots)
        assert all(
            slot - 0.04 <= wait <= slot + 0.005
            for wait, slot in zip(waits, slots, strict=True)
        )


def test_a_worker_without_rate_learns_it_with_its_pool():
    """`worker` defaults to --rate auto; `run` keeps its fixed 20/s; 0 and a number still pin it."""
    parser = build_parser()
    for argv, expected in (
        (["worker"], "auto"),
        (["worker", "--rate", "0"], 0.0),
        (["worker", "--rate", "50"], 50.0),
        (["run", "jobs/x.jsonl"], 20.0),
    ):
        args = parser.parse_args(argv)
        resolve_env(args, {})
        assert args.rate == expected, argv
    args = parser.parse_args(["worker"])
    resolve_env(args, {"PROVISIONER_RATE": "30"})
    assert args.rate == 30.0


@pytest.mark.slow
async def test_workers_with_the_default_rate_converge_under_a_servers_limit(
    redis: JobQueue, make_live_emulator, write_jobs
):
    """Two workers, no --rate, a server allowing 40/s: all created, few 429s, the pool's rate learnt."""
    emulator = make_live_emulator(
        faults=FaultPlan(rate_limit_per_s=40, rate_limit_burst=1, retry_after_s=1)
    )
    total = 120
    jobs = write_jobs(make_specs(total))
    assert run_cli("enqueue", jobs, *redis_args(redis)).returncode == 0
    args = [
        "worker", *redis_args(redis), "--api-url", emulator.url, "--concurrency", "8",
        "--exit-when-empty", "--claim-idle", "5", "--log-format", "json",
    ]  # fmt: skip
    workers = [spawn_cli(*args, "--consumer", f"w{n}") for n in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
    records = await redis.results()
    assert len(records) == total
    assert {r["status"] for r in records} == {"created"}
    assert sorted(emulator.creation_counts().values()) == [1] * total
    stats = emulator.stats()
    assert stats["by_status"].get("429", 0) / stats["requests"] < 0.2
    status = orjson.loads(
        run_cli("queue-status", *redis_args(redis), "--format", "json").stdout
    )
    assert 10 < status["pool_rate_per_s"] < 80
    assert "pool rate (adaptive)" in run_cli("queue-status", *redis_args(redis)).stdout
