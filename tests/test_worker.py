"""The worker at its own boundary: a Worker built directly on the emulator and a real Redis."""

from __future__ import annotations

import orjson

from provisioner.api.client import ApiClient, open_session
from provisioner.core.pipeline import Pipeline
from provisioner.emulator import Emulator
from provisioner.pacing.limiter import SharedRateLimiter
from provisioner.pacing.retry import RetryBudget, RetryPolicy
from provisioner.pacing.stopping import StopController
from provisioner.queue.message import read_message
from provisioner.queue.streams import JobQueue, Message
from provisioner.queue.worker import Worker
from provisioner.redact import Secret
from provisioner.settings import ApiSettings, WorkerSettings
from provisioner.spec import spec_key
from tests.helpers import TEST_TOKEN, make_specs


def message(fields: dict[str, str], deliveries: int = 1) -> Message:
    return Message(id="1-0", fields=fields, deliveries=deliveries)


def test_a_message_carries_its_spec_with_its_source():
    """A well-formed message becomes a Spec with the key of its body and its file:line."""
    body = make_specs(1)[0]
    fields = {
        "spec": orjson.dumps(body).decode(),
        "key": spec_key(body),
        "source": "jobs/a.jsonl",
        "line": "7",
    }
    spec, problem = read_message(message(fields))
    assert problem == ""
    assert spec is not None
    assert (spec.name, spec.key, spec.location) == (
        body["name"],
        spec_key(body),
        "jobs/a.jsonl:7",
    )


def test_a_message_whose_key_was_edited_is_refused():
    """A key that does not match the body is a reason for the dead letters, not a guess."""
    body = make_specs(1)[0]
    spec, problem = read_message(
        message({"spec": orjson.dumps(body).decode(), "key": "other"})
    )
    assert spec is None
    assert "does not match" in problem


async def test_a_worker_drains_its_queue_through_the_shared_limiter(
    redis: JobQueue, emulator: Emulator, fast_policy: RetryPolicy
):
    """Worker + pipeline + Redis limiter in one process: every spec settled once, exit when empty."""
    specs = make_specs(12)
    await redis.add(
        {"spec": orjson.dumps(s).decode(), "key": spec_key(s), "name": s["name"]}
        for s in specs
    )
    stop = StopController(grace_s=5)
    settings = WorkerSettings(
        concurrency=4, rate_per_s=200, exit_when_empty=True, poll_s=0.1
    )
    api = ApiSettings(token=Secret(TEST_TOKEN), base_url=emulator.url)
    async with open_session(concurrency=4, timeout_s=5) as session:
        pipeline = Pipeline(
            client=ApiClient(session, settings=api),
            policy=fast_policy,
            budget=RetryBudget(),
            limiter=SharedRateLimiter(lambda: redis.pace().reserve(rate_per_s=200)),
            stop=stop,
            target=emulator.url,
            replay_is_ours=True,
        )
        worker = Worker(
            queue=redis, pipeline=pipeline, stop=stop, settings=settings,
            group="g", consumer="c1", target=emulator.url,
        )  # fmt: skip
        summary = await worker.run()
    assert summary.created == 12
    assert sorted(emulator.creation_counts().values()) == [1] * 12
    assert await redis.is_drained("g")
