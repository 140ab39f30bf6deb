"""What a queue keeps in Redis: trimmed results and dead letters, outcomes that expire.

Against the test Redis (the ``redis`` fixture): the adapter's settles and dead letters
with a retention, then ``provisioner worker`` with the retention flags, end to end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
from redis.asyncio import Redis

from provisioner.errors import ConfigError
from provisioner.queue.streams import (
    JobQueue,
    Message,
    Settlement,
    outcome_keys,
    queue_keys,
)
from provisioner.settings import QueueRetention, Trim, outcome_days
from tests.helpers import Emulator, make_specs, redis_url, run_cli

GROUP = "workers"
DAY_S = 86_400
# Redis trims whole stream nodes (stream-node-max-entries, 100 by default): with
# "MAXLEN ~ N" a stream keeps N to N + 100 entries.
NODE = 100


@pytest.fixture
async def raw(redis: JobQueue) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url())
    yield client
    await client.aclose()


def fields(i: int) -> dict[str, str]:
    spec = {"name": f"team-{i}", "config": {"type": "cloud"}}
    return {"spec": orjson.dumps(spec).decode(), "key": f"key-{i}", "name": f"team-{i}"}


async def delivered(queue: JobQueue, count: int) -> list[Message]:
    await queue.ensure_group(GROUP)
    await queue.add(fields(i) for i in range(count))
    return await queue.read(GROUP, "c1", count=count, block_ms=0)


def success(message: Message) -> Settlement:
    name, key = message.fields["name"], message.fields["key"]
    record = orjson.dumps({"name": name, "status": "created", "id": f"env-{name}"})
    exists = orjson.dumps({"name": name, "status": "exists", "id": f"env-{name}"})
    outcome = orjson.dumps({"id": f"env-{name}", "status": "created"})
    return Settlement(message.id, key, record, exists, outcome)


def test_retention_values_parse_as_documented() -> None:
    assert Trim.parse("10000", "--results-retention") == Trim(count=10_000)
    assert Trim.parse("36h", "--results-retention") == Trim(age_s=36 * 3600)
    assert Trim.parse("all", "--results-retention") == Trim()
    assert (outcome_days("7d"), outcome_days("49h")) == (7, 3)
    for bad in ("0", "-5", "7 days", "1.5.2h"):
        with pytest.raises(ConfigError, match="--results-retention"):
            Trim.parse(bad, "--results-retention")
    with pytest.raises(ConfigError, match="24 h idempotency window"):
        outcome_days("1d")


async def test_the_results_stream_keeps_the_newest_records(
    redis: JobQueue, raw: Redis
) -> None:
    """A count retention trims as records come; the newest are the ones kept."""
    redis.retention = QueueRetention(results=Trim(count=100))
    messages = await delivered(redis, 450)
    for start in range(0, 450, 50):  # several script calls, as a worker makes them
        await redis.settle_many(
            GROUP, [success(m) for m in messages[start : start + 50]]
        )

    results = queue_keys(redis.stream)["results"]
    length = await raw.xlen(results)
    assert 100 <= length <= 100 + NODE
    [(_, newest)] = await raw.xrevrange(results, count=1)
    assert orjson.loads(newest[b"record"])["name"] == "team-449"
    assert await redis.is_drained(GROUP)


async def test_an_age_retention_drops_records_older_than_it(
    redis: JobQueue, raw: Redis
) -> None:
    redis.retention = QueueRetention(results=Trim(age_s=1.0))
    messages = await delivered(redis, 2 * NODE + 1)
    await redis.settle_many(GROUP, [success(m) for m in messages[:-1]])
    await asyncio.sleep(1.2)
    await redis.settle_many(GROUP, [success(messages[-1])])

    assert await raw.xlen(queue_keys(redis.stream)["results"]) < NODE


async def test_dead_letters_are_capped(redis: JobQueue, raw: Redis) -> None:
    redis.retention = QueueRetention(dead_letters=Trim(count=50))
    messages = await delivered(redis, 300)
    for message in messages:
        await redis.dead_letter(
            message.id, GROUP, fields=message.fields, reason="bad", deliveries=1
        )

    assert 50 <= await raw.xlen(queue_keys(redis.stream)["dead"]) <= 50 + NODE
    assert await redis.is_drained(GROUP)


async def test_outcomes_live_in_a_day_bucket_that_expires_after_the_retention(
    redis: JobQueue, raw: Redis
) -> None:
    """Today's bucket holds the compact outcome and expires ``days`` after the day ends:
    always more than the API's 24 h idempotency window."""
    redis.retention = QueueRetention(outcome_days=3)
    [message] = await delivered(redis, 1)
    [written] = await redis.settle_many(GROUP, [success(message)])

    assert written is not None
    today = datetime.now(UTC).date()
    bucket = outcome_keys(redis.stream, 3, today)[1]
    assert bucket.endswith(f":outcomes:{today.isoformat()}")
    assert await raw.hget(bucket, "key-0") == b'{"id":"env-team-0","status":"created"}'
    ttl = await raw.ttl(bucket)
    seconds_left_today = DAY_S - time.time() % DAY_S
    assert 3 * DAY_S < ttl <= 3 * DAY_S + seconds_left_today + 5
    assert (await redis.status(GROUP)).settled == 1


async def test_a_spec_settled_on_an_earlier_day_is_still_known(
    redis: JobQueue, raw: Redis
) -> None:
    """An outcome in yesterday's bucket (or in the single hash of older versions)
    still makes a second delivery ``exists``."""
    days = redis.retention.outcome_days
    buckets = outcome_keys(redis.stream, days, datetime.now(UTC).date())
    await raw.hset(buckets[2], "key-0", b'{"id":"env-team-0","status":"created"}')
    await raw.hset(buckets[-1], "key-1", b'{"id":"env-team-1","status":"created"}')
    first, second, third = await delivered(redis, 3)

    written = await redis.settle_many(
        GROUP, [success(first), success(second), success(third)]
    )

    assert [orjson.loads(w or b"{}")["status"] for w in written] == [
        "exists",
        "exists",
        "created",
    ]
    known = await redis.outcomes(["key-0", "key-1", "key-2", "key-3"])
    assert sorted(known) == ["key-0", "key-1", "key-2"]


async def test_a_batch_settled_twice_publishes_each_record_once(
    redis: JobQueue, raw: Redis
) -> None:
    """A retried call (its reply lost) publishes nothing again."""
    messages = await delivered(redis, 5)
    batch = [success(m) for m in messages]

    first = await redis.settle_many(GROUP, batch)
    again = await redis.settle_many(GROUP, batch)

    assert None not in first
    assert again == [None] * 5
    assert await raw.xlen(queue_keys(redis.stream)["results"]) == 5


async def test_a_worker_keeps_what_its_flags_say(
    redis: JobQueue, raw: Redis, live_emulator: Emulator, write_jobs
) -> None:
    """``provisioner worker`` with the retention flags: the results stream trimmed, the
    outcomes remembered for the days asked, and a second enqueue sends nothing."""
    jobs = write_jobs(make_specs(250))
    common = ["--redis", redis_url(), "--stream", redis.stream]
    worker = [
        "worker", *common, "--api-url", live_emulator.url, "--rate", "0",
        "--exit-when-empty", "--results-retention", "100", "--outcomes-retention", "48h",
        "--log-format", "json",
    ]  # fmt: skip
    for _ in range(2):
        assert run_cli("enqueue", jobs, *common).returncode == 0
        done = run_cli(*worker)
        assert done.returncode == 0, done.stderr[-2000:]

    status = run_cli("queue-status", *common, "--format", "json")
    figures = orjson.loads(status.stdout)
    assert figures["settled"] == 250
    assert 100 <= figures["results"] <= 100 + NODE
    assert (figures["length"], figures["pending"]) == (0, 0)
    counts = live_emulator.creation_counts()
    assert (len(counts), set(counts.values())) == (250, {1})

    bucket = outcome_keys(redis.stream, 2, datetime.now(UTC).date())[1]
    assert 2 * DAY_S < await raw.ttl(bucket) <= 3 * DAY_S + 5
