"""Queue mode end to end: `enqueue`, `worker` processes and `queue-status` on a real Redis and emulator."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import datetime
from typing import Any

import orjson
import pytest

from provisioner.emulator import Emulator, FaultPlan
from provisioner.queue.streams import JobQueue
from tests.helpers import (
    eventually,
    finish,
    make_specs,
    read_until,
    redis_args,
    run_cli,
    start_worker,
    wait_for_results,
)


def assert_created_once(emulator: Emulator, count: int) -> None:
    counts = emulator.creation_counts()
    assert len(counts) == count
    assert set(counts.values()) == {1}


def test_enqueue_refuses_an_invalid_job_and_queues_nothing(redis: JobQueue, write_jobs):
    """One invalid spec: every error is listed, exit 2, and the stream stays empty."""
    specs: list[Any] = make_specs(3)
    specs[1]["config"] = "cloud"
    result = run_cli("enqueue", write_jobs(specs), *redis_args(redis))
    assert result.returncode == 2
    assert "config: expected an object" in result.stderr
    assert "nothing was queued" in result.stderr


async def test_a_worker_creates_every_queued_spec_and_drains_the_queue(
    redis: JobQueue, live_emulator: Emulator, write_jobs
):
    """enqueue + one worker with --exit-when-empty: every spec created once, results complete, nothing pending."""
    queued = run_cli("enqueue", write_jobs(make_specs(60)), *redis_args(redis))
    assert queued.returncode == 0, queued.stderr
    assert "queued 60 specs" in queued.stdout

    code, err = finish(start_worker(redis, live_emulator, "--exit-when-empty"))

    assert code == 0, err
    assert_created_once(live_emulator, 60)
    results = await redis.results()
    assert sorted(r["status"] for r in results) == ["created"] * 60
    status = await redis.status("provisioner")
    assert (status.length, status.pending, status.dead_letters) == (0, 0, 0)


async def test_enqueueing_a_job_twice_creates_nothing_twice(
    redis: JobQueue, live_emulator: Emulator, write_jobs
):
    """The second copy of each spec is recorded `exists` with the same id; the API saw one create each."""
    jobs = write_jobs(make_specs(20))
    assert run_cli("enqueue", jobs, *redis_args(redis)).returncode == 0
    assert run_cli("enqueue", jobs, *redis_args(redis)).returncode == 0

    code, err = finish(start_worker(redis, live_emulator, "--exit-when-empty"))

    assert code == 0, err
    assert_created_once(live_emulator, 20)
    results = await redis.results()
    assert Counter(r["status"] for r in results) == {"created": 20, "exists": 20}
    ids: dict[str, set[str]] = {}
    for record in results:
        ids.setdefault(record["name"], set()).add(record["id"])
    assert all(len(found) == 1 for found in ids.values())


async def test_an_invalid_message_goes_to_the_dead_letters_with_its_reason(
    redis: JobQueue, live_emulator: Emulator
):
    """A message written by another producer with a broken spec is dead-lettered, not retried forever."""
    await redis.add(
        [{"spec": '{"name": "x", "config": "cloud"}', "key": "k"}, {"nonsense": "1"}]
    )

    code, _ = finish(start_worker(redis, live_emulator, "--exit-when-empty"))

    assert code == 1
    reasons = sorted(d["reason"] for d in await redis.dead_letters())
    assert reasons[0].startswith("invalid spec: config: expected an object")
    assert reasons[1].startswith("not a spec")
    assert (await redis.status("provisioner")).pending == 0
    assert live_emulator.creation_counts() == {}


async def test_a_message_delivered_too_often_is_dead_lettered(
    redis: JobQueue, live_emulator: Emulator, write_jobs
):
    """A message that keeps coming back (its workers die) ends in the dead letters after --max-deliveries."""
    assert (
        run_cli("enqueue", write_jobs(make_specs(1)), *redis_args(redis)).returncode
        == 0
    )
    await redis.ensure_group("provisioner")
    await redis.read("provisioner", "ghost-1", count=1, block_ms=100)
    await redis.claim("provisioner", "ghost-2", min_idle_ms=0, count=1)

    code, _ = finish(
        start_worker(redis, live_emulator, "--exit-when-empty", "--max-deliveries", "2")
    )

    assert code == 1
    (dead,) = await redis.dead_letters()
    assert "delivered 3 times" in dead["reason"]
    assert live_emulator.creation_counts() == {}


def test_queue_status_shows_length_pending_results_and_dead_letters(
    redis: JobQueue, write_jobs
):
    """queue-status prints the counts as text, and as JSON with --format json."""
    assert (
        run_cli("enqueue", write_jobs(make_specs(7)), *redis_args(redis)).returncode
        == 0
    )
    text = run_cli("queue-status", *redis_args(redis))
    as_json = run_cli("queue-status", *redis_args(redis), "--format", "json")
    assert text.returncode == 0
    assert "waiting or in progress  7" in text.stdout
    data = orjson.loads(as_json.stdout)
    assert (data["length"], data["pending"], data["dead_letters"]) == (7, 0, 0)


def test_a_worker_with_nothing_to_do_exits_at_once(
    redis: JobQueue, live_emulator: Emulator
):
    """--exit-when-empty on an empty queue: exit 0 without waiting."""
    code, err = finish(
        start_worker(redis, live_emulator, "--exit-when-empty"), timeout=30
    )
    assert code == 0, err


@pytest.mark.slow
async def test_a_pool_survives_a_killed_worker_and_a_late_joiner(
    redis: JobQueue, make_live_emulator, write_jobs
):
    """3 workers, one SIGKILLed mid-run, a 4th added: 3,000 specs each created once, every message settled."""
    emulator = make_live_emulator(faults=FaultPlan(latency_ms=20, jitter_ms=20, seed=3))
    total = 3000
    assert (
        run_cli("enqueue", write_jobs(make_specs(total)), *redis_args(redis)).returncode
        == 0
    )
    flags = ["--exit-when-empty", "--concurrency", "8"]
    workers = [start_worker(redis, emulator, *flags, name=f"w{i}") for i in range(3)]
    await wait_for_results(redis, 500)
    workers[0].send_signal(signal.SIGKILL)
    assert finish(workers[0])[0] == -signal.SIGKILL
    workers.append(start_worker(redis, emulator, *flags, name="w3"))

    codes = [finish(w)[0] for w in workers[1:]]

    assert codes == [0, 0, 0]
    assert_created_once(emulator, total)
    results = await redis.results()
    assert Counter(r["status"] for r in results) == {"created": total}
    assert len({r["spec_key"] for r in results}) == total
    status = await redis.status("provisioner")
    assert (status.length, status.pending, status.dead_letters, status.settled) == (
        0,
        0,
        0,
        total,
    )


@pytest.mark.slow
async def test_the_shared_rate_limit_holds_for_the_pool_and_is_reached(
    redis: JobQueue, make_live_emulator, write_jobs
):
    """3 workers sharing --rate 40: the API never sees more than 40 creates in any second, and at least 0.85 of it."""
    rate, total = 40, 240
    emulator = make_live_emulator(faults=FaultPlan(latency_ms=30))
    assert (
        run_cli("enqueue", write_jobs(make_specs(total)), *redis_args(redis)).returncode
        == 0
    )
    flags = ["--exit-when-empty", "--concurrency", "8", "--rate", str(rate)]
    workers = [start_worker(redis, emulator, *flags, name=f"r{i}") for i in range(3)]
    procs = [finish(w) for w in workers]
    assert [code for code, _ in procs] == [0, 0, 0]

    assert_created_once(emulator, total)
    times = sorted(_created_at(env) for env in emulator.environments())
    most_in_a_second = max(
        sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times)
    )
    achieved = (total - 1) / (times[-1] - times[0])
    figures = f"at most {most_in_a_second} in any second, {achieved:.1f}/s overall"
    assert most_in_a_second <= rate + 1, figures  # the burst of one
    assert achieved >= 0.85 * rate, figures


def _created_at(env: dict[str, Any]) -> float:
    return datetime.fromisoformat(env["created_at"].replace("Z", "+00:00")).timestamp()


async def test_sigterm_drains_a_worker_and_leaves_nothing_half_done(
    redis: JobQueue, make_live_emulator, write_jobs
):
    """A worker without --exit-when-empty runs until SIGTERM, then finishes what it started: exit 0, nothing pending."""
    emulator = make_live_emulator(faults=FaultPlan(latency_ms=50))
    assert (
        run_cli("enqueue", write_jobs(make_specs(200)), *redis_args(redis)).returncode
        == 0
    )
    worker = start_worker(redis, emulator, "--concurrency", "4")
    await wait_for_results(redis, 20)
    worker.send_signal(signal.SIGTERM)

    code, err = finish(worker)

    assert code == 0, err
    status = await redis.status("provisioner")
    assert status.pending == 0
    assert status.results + status.length == 200
    assert len(emulator.creation_counts()) == status.results


async def test_a_second_signal_leaves_unfinished_specs_pending_for_the_pool(
    redis: JobQueue, make_live_emulator, write_jobs
):
    """Two SIGTERMs: the worker exits 130 at once; its specs stay pending and another worker finishes them, each once."""
    emulator = make_live_emulator(faults=FaultPlan(latency_ms=1500))
    assert (
        run_cli("enqueue", write_jobs(make_specs(10)), *redis_args(redis)).returncode
        == 0
    )
    worker = start_worker(redis, emulator, "--concurrency", "4")
    await eventually(lambda: emulator.stats()["in_flight"] >= 4, interval_s=0.025)
    worker.send_signal(signal.SIGTERM)
    draining = read_until(worker.stderr, "run.draining")  # the first one is handled
    worker.send_signal(signal.SIGTERM)
    code, err = finish(worker)
    assert code == 130, draining + err
    assert (await redis.status("provisioner")).pending == 4

    # The killed worker's requests are still running on the server (their keys are
    # "in progress"): the second worker's retries wait them out with a real backoff.
    emulator.faults.latency_ms = 0
    second, err = finish(
        start_worker(redis, emulator, "--exit-when-empty", "--backoff", "0.5")
    )

    assert second == 0, err
    assert_created_once(emulator, 10)
    assert (await redis.status("provisioner")).results == 10
