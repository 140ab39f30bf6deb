"""The per-spec pipeline, built directly against a real emulator: one spec in, one record out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from provisioner.api.client import ApiClient, open_session
from provisioner.core.pipeline import Pipeline
from provisioner.emulator import Emulator
from provisioner.pacing.limiter import Unlimited
from provisioner.pacing.retry import RetryBudget, RetryPolicy
from provisioner.pacing.stopping import StopController, StopKind
from provisioner.redact import Secret
from provisioner.settings import ApiSettings
from provisioner.spec import Spec, spec_key
from tests.helpers import TEST_TOKEN


def spec(name: str) -> Spec:
    body = {"name": name, "config": {"type": "cloud"}, "metadata": {"team": name}}
    return Spec(name, body, spec_key(body), "jobs.jsonl", 1, 0)


@pytest.fixture
async def pipeline(
    emulator: Emulator, fast_policy: RetryPolicy
) -> AsyncIterator[Pipeline]:
    settings = ApiSettings(token=Secret(TEST_TOKEN), base_url=emulator.url)
    async with open_session(concurrency=4, timeout_s=5) as session:
        yield Pipeline(
            client=ApiClient(session, settings=settings),
            policy=fast_policy,
            budget=RetryBudget(),
            limiter=Unlimited(),
            stop=StopController(grace_s=1),
            target=emulator.url,
        )


async def test_a_new_spec_is_created_and_recorded(
    pipeline: Pipeline, emulator: Emulator
):
    """provision() creates the environment and returns its record, id as the server gave it."""
    result = await pipeline.provision(spec("team-a"))
    assert result is not None
    assert result.status == "created"
    assert result.id == emulator.environments()[0]["id"]
    assert (result.attempts, result.target) == (1, emulator.url)


async def test_an_existing_name_is_exists_with_its_id(
    pipeline: Pipeline, emulator: Emulator
):
    """A spec whose name another job created is `exists`, with that environment's id."""
    first = await pipeline.provision(spec("team-b"))
    other = spec("team-b")
    other = Spec(
        other.name, {**other.body, "description": "x"}, "another-key", "j", 2, 1
    )
    second = await pipeline.provision(other)
    assert first is not None
    assert second is not None
    assert (second.status, second.id) == ("exists", first.id)


async def test_a_lost_answer_is_created_once(pipeline: Pipeline, emulator: Emulator):
    """Resets after the commit: the retries are answered by the key, one environment in all."""
    emulator.faults.seed = 1
    emulator.faults.reset_after_commit = 0.5
    result = await pipeline.provision(spec("team-c"))
    assert emulator.stats()["faults"]["reset_after_commit"] >= 1
    assert result is not None
    assert result.status == "created"
    assert emulator.creation_counts() == {"team-c": 1}


async def test_a_401_stops_the_run(emulator: Emulator, fast_policy: RetryPolicy):
    """A refused token is a failed record and stops everything else."""
    stop = StopController(grace_s=1)
    settings = ApiSettings(token=Secret("pt-wrong"), base_url=emulator.url)
    async with open_session(concurrency=1, timeout_s=5) as session:
        pipeline = Pipeline(
            client=ApiClient(session, settings=settings),
            policy=fast_policy,
            budget=RetryBudget(),
            limiter=Unlimited(),
            stop=stop,
            target=emulator.url,
        )
        result = await pipeline.provision(spec("team-d"))
        stop.close()
    assert result is not None
    assert result.status == "failed"
    assert stop.reason is not None
    assert stop.reason.kind is StopKind.AUTH


async def _against(url: str, policy: RetryPolicy, budget: RetryBudget, name: str):
    settings = ApiSettings(token=Secret(TEST_TOKEN), base_url=url)
    async with open_session(concurrency=1, timeout_s=5) as session:
        pipeline = Pipeline(
            client=ApiClient(session, settings=settings),
            policy=policy,
            budget=budget,
            limiter=Unlimited(),
            stop=StopController(grace_s=1),
            target=url,
        )
        return await pipeline.provision(spec(name))


def _answers(*statuses: int):
    """A handler: POSTs get these statuses in turn (409: key still being processed)."""
    from aiohttp import web

    sent = iter(statuses)

    async def handler(request: web.Request) -> web.StreamResponse:
        status = next(sent, 201)
        if status == 201:
            body = {"id": "env_" + "b" * 32, "name": "team-k", "status": "ready"}
            return web.json_response(body, status=201)
        message = {
            409: "A request with this Idempotency-Key is still being processed; retry later",
            503: "unavailable",
        }[status]
        error = {"type": "conflict_error" if status == 409 else "api_error"}
        return web.json_response(
            {"error": {**error, "message": message}}, status=status
        )

    return handler


async def test_a_key_still_being_processed_is_waited_for_at_no_budget_cost(
    serve, fast_policy
):
    """Three 409 "still being processed" answers, then 201: created, though the budget is empty."""
    server = await serve(_answers(409, 409, 409))
    result = await _against(server.url, fast_policy, RetryBudget(capacity=0), "team-k")
    assert result is not None
    assert (result.status, result.attempts) == ("created", 4)


async def test_an_empty_budget_does_not_retry_a_failure(serve, fast_policy):
    """The contrast: a 503 with no budget left fails after its first attempt."""
    server = await serve(_answers(503))
    result = await _against(server.url, fast_policy, RetryBudget(capacity=0), "team-k")
    assert result is not None
    assert (result.status, result.attempts) == ("failed", 1)
