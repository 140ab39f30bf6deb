"""The Redis Streams adapter against a real Redis (the ``redis`` fixture)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from provisioner.errors import QueueError
from provisioner.queue.streams import JobQueue, Message, QueueStatus, queue_keys
from provisioner.redact import Secret
from provisioner.settings import RedisSettings
from tests.helpers import redis_url

GROUP = "workers"


@pytest.fixture
async def raw(redis: JobQueue) -> AsyncIterator[Redis]:
    """A plain redis-py client on the test Redis, to look behind the adapter's back."""
    client = Redis.from_url(redis_url())
    try:
        yield client
    finally:
        await client.aclose()


def entry(name: str, *, key: str | None = None) -> dict[str, str]:
    """The fields of one queued spec."""
    spec = {"name": name, "config": {"type": "cloud"}}
    return {
        "spec": orjson.dumps(spec).decode(),
        "key": key or f"key-{name}",
        "source": "jobs.jsonl",
        "name": name,
        "enqueued_at": "2026-11-29T12:00:00.000Z",
    }


def record(name: str, status: str, **fields: Any) -> bytes:
    """A result record as the worker would write it."""
    return orjson.dumps(
        {"name": name, "status": status, "spec_key": f"key-{name}", **fields}
    )


async def queued(queue: JobQueue, *names: str, key: str | None = None) -> list[Message]:
    """Queue ``names``, create the group and read them all as consumer ``c1``."""
    await queue.ensure_group(GROUP)
    await queue.add(entry(name, key=key) for name in names)
    return await queue.read(GROUP, "c1", count=100, block_ms=0)


async def settle_success(
    queue: JobQueue, message: Message, status: str = "created"
) -> bytes:
    """Settle ``message`` as a success; return what the results stream got."""
    name = message.fields["name"]
    return await queue.settle(
        message.id,
        GROUP,
        spec_key=message.fields["key"],
        record=record(name, status, id="env-1"),
        exists_record=record(name, "exists", id="env-1"),
    )


def test_queue_keys_share_one_hash_tag() -> None:
    """Every key of a queue carries the stream's hash tag, so scripts stay in one slot."""
    keys = queue_keys("jobs")
    assert keys == {
        "specs": "provisioner:{jobs}:specs",
        "results": "provisioner:{jobs}:results",
        "dead": "provisioner:{jobs}:dead",
        "outcomes": "provisioner:{jobs}:outcomes",
        "rate": "provisioner:{jobs}:rate",
        "pace": "provisioner:{jobs}:pace",
        "failures": "provisioner:{jobs}:failures",
    }


async def test_added_spec_round_trips_to_the_results_stream(
    redis: JobQueue, raw: Redis
) -> None:
    """A queued spec is delivered once, and settling it empties the queue into one result."""
    keys = queue_keys(redis.stream)
    [message] = await queued(redis, "team-1")
    assert message.fields == entry("team-1")
    assert message.deliveries == 1
    assert await redis.read(GROUP, "c1", count=10, block_ms=0) == []

    written = await settle_success(redis, message)

    assert orjson.loads(written)["status"] == "created"
    assert await raw.xlen(keys["specs"]) == 0
    assert (await raw.xpending(keys["specs"], GROUP))["pending"] == 0
    assert await redis.results() == [orjson.loads(written)]
    # the outcome remembers only what a later delivery needs: the id, the status
    assert await redis.outcome("key-team-1") == {"id": "env-1", "status": "created"}
    assert await redis.is_drained(GROUP)


async def test_add_sends_every_entry_in_batches(redis: JobQueue, raw: Redis) -> None:
    """Adding more entries than one batch holds queues them all, in order."""
    count = await redis.add((entry(f"team-{i}") for i in range(1203)), batch=500)

    assert count == 1203
    entries = await raw.xrange(queue_keys(redis.stream)["specs"]) or []
    assert [fields and fields[b"name"] for _, fields in entries] == [
        f"team-{i}".encode() for i in range(1203)
    ]


async def test_second_settle_of_a_spec_key_writes_the_exists_record(
    redis: JobQueue,
) -> None:
    """Two deliveries of one spec settle as one ``created`` and one ``exists``, never two created."""
    first, second = await queued(redis, "team-1", "team-1", key="key-team-1")

    assert orjson.loads(await settle_success(redis, first))["status"] == "created"
    assert orjson.loads(await settle_success(redis, second))["status"] == "exists"

    assert [r["status"] for r in await redis.results()] == ["created", "exists"]
    outcome = await redis.outcome("key-team-1")
    assert outcome is not None
    assert outcome["status"] == "created"
    assert await redis.is_drained(GROUP)


async def test_failure_record_does_not_enter_the_outcomes(redis: JobQueue) -> None:
    """A failed spec is published and acknowledged, but a later success is still ``created``."""
    failed, retried = await queued(redis, "team-1", "team-1", key="key-team-1")
    failure = record("team-1", "failed", error={"type": "http_500"})

    written = await redis.settle(
        failed.id, GROUP, spec_key="key-team-1", record=failure, exists_record=None
    )

    assert written == failure
    assert await redis.outcome("key-team-1") is None
    assert orjson.loads(await settle_success(redis, retried))["status"] == "created"
    assert [r["status"] for r in await redis.results()] == ["failed", "created"]


async def test_settle_survives_a_flushed_script_cache(
    redis: JobQueue, raw: Redis
) -> None:
    """After Redis forgets its scripts (as after a restart), settling still works."""
    [message] = await queued(redis, "team-1")
    await raw.script_flush()

    assert orjson.loads(await settle_success(redis, message))["status"] == "created"


async def test_claim_takes_a_stalled_message_with_its_delivery_count(
    redis: JobQueue, raw: Redis
) -> None:
    """A message left pending by another consumer is claimed once idle long enough."""
    [message] = await queued(redis, "team-1")

    assert await redis.claim(GROUP, "c2", min_idle_ms=60_000, count=10) == []
    [claimed] = await redis.claim(GROUP, "c2", min_idle_ms=0, count=10)

    assert (claimed.id, claimed.fields) == (message.id, message.fields)
    assert claimed.deliveries == 2
    pending = await raw.xpending(queue_keys(redis.stream)["specs"], GROUP)
    assert pending["consumers"] == [{"name": b"c2", "pending": 1}]


async def test_claim_skips_entries_deleted_meanwhile(
    redis: JobQueue, raw: Redis
) -> None:
    """A pending entry deleted from the stream is acknowledged, not handed out."""
    specs = queue_keys(redis.stream)["specs"]
    deleted, kept = await queued(redis, "team-1", "team-2")
    await raw.xdel(specs, deleted.id)

    claimed = await redis.claim(GROUP, "c2", min_idle_ms=0, count=10)

    assert [m.id for m in claimed] == [kept.id]
    assert (await raw.xpending(specs, GROUP))["pending"] == 1


async def test_dead_letter_moves_the_fields_and_the_reason(
    redis: JobQueue, raw: Redis
) -> None:
    """A dead-lettered message leaves the queue and keeps its fields, reason and count."""
    [message] = await queued(redis, "team-1")

    await redis.dead_letter(
        message.id,
        GROUP,
        fields=message.fields,
        reason="too many deliveries",
        deliveries=5,
    )

    [letter] = await redis.dead_letters()
    assert {k: letter[k] for k in message.fields} == message.fields
    assert letter["message_id"] == message.id
    assert letter["reason"] == "too many deliveries"
    assert letter["deliveries"] == "5"
    assert letter["dead_at"].endswith("Z")
    assert await raw.xlen(queue_keys(redis.stream)["specs"]) == 0
    assert await redis.is_drained(GROUP)


async def test_reserve_spaces_concurrent_callers_at_the_shared_rate(
    redis: JobQueue, raw: Redis
) -> None:
    """50 reservations at 100/s from 5 tasks fill 50 slots 10 ms apart on Redis's clock."""
    interval_us = 10_000

    async def redis_now_us() -> int:
        seconds, micros = await raw.time()
        return seconds * 1_000_000 + micros

    async def reserve_ten() -> list[float]:
        return [await redis.pace().reserve(rate_per_s=100) for _ in range(10)]

    before = await redis_now_us()
    waits = [
        w for ws in await asyncio.gather(*(reserve_ten() for _ in range(5))) for w in ws
    ]
    after = await redis_now_us()
    state = await raw.get(queue_keys(redis.stream)["rate"])
    assert state is not None
    next_free = int(state)

    assert min(waits) == 0
    # The first reservation starts the schedule at a Redis time between before and after.
    assert before + 50 * interval_us <= next_free <= after + 50 * interval_us
    # Reservation k (in Redis's order) waits k slots minus the time since the first.
    slots_s = sum(k * interval_us for k in range(50)) / 1e6
    elapsed_s = (after - before) / 1e6
    assert slots_s - 49 * elapsed_s - 0.001 <= sum(waits) <= slots_s + 0.001
    assert max(waits) <= 49 * interval_us / 1e6


async def test_reserve_lets_a_burst_through_then_waits(redis: JobQueue) -> None:
    """With a burst of 5, five calls go at once and the sixth waits for its slot."""
    waits = [await redis.pace().reserve(rate_per_s=1, burst=5) for _ in range(6)]

    assert waits[:5] == [0, 0, 0, 0, 0]
    assert 0 < waits[5] <= 1


async def test_reserve_refuses_an_impossible_rate(redis: JobQueue) -> None:
    """A rate of zero cannot be scheduled and is refused before any call."""
    with pytest.raises(ValueError, match="rate_per_s"):
        await redis.pace().reserve(rate_per_s=0)


async def test_empty_queue_is_drained_with_a_zero_status(redis: JobQueue) -> None:
    """A queue that was never created reads as drained, with zeros everywhere."""
    assert await redis.is_drained(GROUP)
    status = await redis.status(GROUP)
    assert status == QueueStatus(
        stream=redis.stream,
        length=0,
        pending=0,
        consumers=(),
        results=0,
        dead_letters=0,
        settled=0,
    )
    await redis.ensure_group(GROUP)
    assert (await redis.status(GROUP)).to_dict()["consumers"] == []


async def test_busy_queue_is_not_drained_and_status_counts_it(redis: JobQueue) -> None:
    """A queue with queued, in-flight, settled and dead specs reports each count."""
    await redis.ensure_group(GROUP)
    await redis.add(
        [entry("team-1"), entry("team-2"), entry("team-3"), entry("team-4")]
    )
    done, dead = await redis.read(GROUP, "c1", count=2, block_ms=0)
    await redis.read(GROUP, "c2", count=1, block_ms=0)
    await settle_success(redis, done)
    await redis.dead_letter(
        dead.id, GROUP, fields=dead.fields, reason="bad", deliveries=1
    )

    assert not await redis.is_drained(GROUP)
    status = (await redis.status(GROUP)).to_dict()
    consumers = status.pop("consumers")
    assert status == {
        "stream": redis.stream,
        "length": 2,
        "pending": 1,
        "results": 1,
        "dead_letters": 1,
        "settled": 1,
        "pool_rate_per_s": None,
        "failures": {"failed": 0, "finished": 1},
    }
    assert [(c["name"], c["pending"]) for c in consumers] == [("c1", 0), ("c2", 1)]
    assert all(c["idle_s"] >= 0 for c in consumers)


async def test_read_recovers_a_vanished_group(redis: JobQueue, raw: Redis) -> None:
    """After the group is destroyed, read creates it again and the specs are delivered anew."""
    first = await queued(redis, "team-1", "team-2")
    await raw.xgroup_destroy(queue_keys(redis.stream)["specs"], GROUP)

    assert await redis.read(GROUP, "c1", count=10, block_ms=0) == []
    again = await redis.read(GROUP, "c1", count=10, block_ms=0)

    assert [m.id for m in again] == [m.id for m in first]


async def test_claim_recovers_a_vanished_group(redis: JobQueue, raw: Redis) -> None:
    """Claiming from a destroyed group creates it again instead of failing."""
    await queued(redis, "team-1")
    await raw.xgroup_destroy(queue_keys(redis.stream)["specs"], GROUP)

    assert await redis.claim(GROUP, "c2", min_idle_ms=0, count=10) == []
    assert len(await redis.read(GROUP, "c1", count=10, block_ms=0)) == 1


async def test_refused_command_is_a_queue_error(redis: JobQueue, raw: Redis) -> None:
    """A key of the wrong type is a refusal that waiting will not fix."""
    await raw.set(queue_keys(redis.stream)["specs"], "not a stream")

    with pytest.raises(QueueError, match="WRONGTYPE") as caught:
        await redis.add([entry("team-1")])

    assert caught.value.is_connection is False


async def test_unreachable_redis_is_a_connection_error_without_the_password() -> None:
    """Redis that cannot be reached raises a connection QueueError that hides the password."""
    queue = JobQueue.connect(
        RedisSettings(url="redis://user:secretpw@127.0.0.1:1/0", stream="s"), retries=1
    )
    try:
        with pytest.raises(QueueError) as caught:
            await queue.ping()
    finally:
        await queue.close()

    assert caught.value.is_connection is True
    assert "secretpw" not in str(caught.value)
    assert "redis://user:***@127.0.0.1:1/0" in str(caught.value)


@pytest.mark.parametrize(
    "url", ["redis://user:urlpw@127.0.0.1:1/0", "redis://127.0.0.1:1/0"]
)
async def test_password_file_secret_never_shows_in_errors(url: str) -> None:
    """Neither a password given apart from the URL nor the URL's own shows in errors."""
    queue = JobQueue.connect(
        RedisSettings(url=url, password=Secret("filepw")), retries=0
    )
    try:
        with pytest.raises(QueueError) as caught:
            await queue.ping()
    finally:
        await queue.close()

    assert caught.value.is_connection is True
    assert "filepw" not in str(caught.value)
    assert "urlpw" not in str(caught.value)


async def test_wrong_password_is_a_refusal_without_the_password(
    redis: JobQueue,
) -> None:
    """A password Redis rejects is not worth waiting for, and its text stays hidden."""
    scheme, _, rest = redis_url().partition("://")
    host = rest.rpartition("@")[2]
    queue = JobQueue.connect(
        RedisSettings(url=f"{scheme}://provisioner-nobody:secretpw@{host}"), retries=0
    )
    try:
        with pytest.raises(QueueError) as caught:
            await queue.ping()
    finally:
        await queue.close()

    assert caught.value.is_connection is False
    assert "secretpw" not in str(caught.value)


async def test_hand_built_client_errors_name_the_host_not_the_password() -> None:
    """A queue on a client built elsewhere names host, port and db in errors, never the password."""
    client = Redis.from_url(
        "redis://user:secretpw@127.0.0.1:1/3", retry=Retry(NoBackoff(), 0)
    )
    queue = JobQueue(client, stream="s")
    try:
        with pytest.raises(QueueError) as caught:
            await queue.ping()
    finally:
        await queue.close()

    assert "Redis at 127.0.0.1:1/3:" in str(caught.value)
    assert caught.value.is_connection is True
    assert "secretpw" not in str(caught.value)


def test_malformed_url_is_a_queue_error_without_the_password() -> None:
    """A URL redis-py cannot parse is refused with the password masked."""
    settings = RedisSettings(url="redis://user:secretpw@127.0.0.1:port/0")

    with pytest.raises(QueueError, match="malformed") as caught:
        JobQueue.connect(settings)

    assert caught.value.is_connection is False
    assert "secretpw" not in str(caught.value)
