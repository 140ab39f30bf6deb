"""Fault injection: gateway errors, rate limits, resets, slow answers, latency, seeds."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from provisioner.emulator import Emulator, EmulatorConfig, FaultPlan
from tests.helpers import CLOUD, TEST_TOKEN, assert_error, create, eventually

BODY = {"name": "a", "config": CLOUD}
DISCONNECTED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


async def test_error_500_is_a_json_api_error_and_commits_nothing(api, emulator):
    """An injected 500 answers the api_error envelope and does not create."""
    emulator.faults.error_500 = 1.0
    answer = await api("POST", "/environments", json=BODY)
    error = assert_error(answer, 500, "api_error")
    assert error["message"] == "Internal server error"
    assert emulator.environments() == []
    assert emulator.stats()["faults"]["error_500"] == 1


async def test_error_502_is_an_html_page(api, emulator):
    """An injected 502 answers an HTML body with ``text/html``."""
    emulator.faults.error_502 = 1.0
    answer = await api("POST", "/environments", json=BODY)
    assert answer.status == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert b"<html>" in answer.body
    assert emulator.environments() == []


@pytest.mark.parametrize(
    ("retry_after_s", "header"), [(1.0, "1"), (2.5, "3"), (0.0, "0"), (None, None)]
)
async def test_error_503_has_no_body_and_the_planned_retry_after(
    api, emulator, retry_after_s, header
):
    """An injected 503 has an empty body and ``Retry-After`` rounded up (or none)."""
    emulator.faults.error_503 = 1.0
    emulator.faults.retry_after_s = retry_after_s
    answer = await api("GET", "/environments")
    assert answer.status == 503
    assert answer.body == b""
    assert answer.headers.get("Retry-After") == header


async def test_the_rate_limit_answers_429_with_the_envelope(api, emulator):
    """Past the bucket's burst a request gets 429 rate_limit_error and ``Retry-After``."""
    emulator.faults.rate_limit_per_s = 0.001
    emulator.faults.rate_limit_burst = 2
    assert [(await api("GET", "/environments")).status for _ in range(2)] == [200, 200]
    answer = await api("POST", "/environments", json=BODY)
    assert_error(answer, 429, "rate_limit_error")
    assert answer.headers["Retry-After"] == "1"
    assert emulator.environments() == []
    assert emulator.stats()["faults"]["rate_limited"] == 1


async def test_the_rate_limit_can_answer_without_a_body(api, emulator):
    """With ``rate_limit_body=False`` the 429 is empty; without retry_after_s no header."""
    emulator.faults.rate_limit_per_s = 0.001
    emulator.faults.rate_limit_body = False
    emulator.faults.retry_after_s = None
    await api("GET", "/environments")
    answer = await api("GET", "/environments")
    assert answer.status == 429
    assert answer.body == b""
    assert "Retry-After" not in answer.headers


async def test_the_rate_limit_refills_over_time(api, emulator):
    """The bucket refills at ``rate_limit_per_s``: a later request passes again."""
    emulator.faults.rate_limit_per_s = 50
    emulator.faults.rate_limit_burst = 1
    statuses = [(await api("GET", "/environments")).status for _ in range(2)]
    assert statuses[0] == 200

    async def passes() -> bool:
        return (await api("GET", "/environments")).status == 200

    await eventually(passes)  # a refused request takes no token from the refill


async def test_reset_before_commit_drops_the_connection_and_commits_nothing(
    api, emulator
):
    """The client sees a disconnect and nothing is created."""
    emulator.faults.reset_before_commit = 1.0
    with pytest.raises(DISCONNECTED):
        await api("POST", "/environments", json=BODY, headers={"Idempotency-Key": "k"})
    assert emulator.environments() == []
    emulator.faults.reset_before_commit = 0.0
    retry = await api(
        "POST", "/environments", json=BODY, headers={"Idempotency-Key": "k"}
    )
    assert retry.status == 201
    assert "Idempotent-Replayed" not in retry.headers
    stats = emulator.stats()
    assert stats["faults"]["reset_before_commit"] == 1
    assert stats["requests"] == 2
    assert stats["by_status"] == {"201": 1}


async def test_reset_after_commit_creates_but_the_client_sees_a_disconnect(
    api, emulator
):
    """The create commits (it is listed) while the client gets no answer."""
    emulator.faults.reset_after_commit = 1.0
    with pytest.raises(DISCONNECTED):
        await api("POST", "/environments", json=BODY, headers={"Idempotency-Key": "k"})
    emulator.faults.reset_after_commit = 0.0
    listed = await api("GET", "/environments")
    assert [env["name"] for env in listed.json()["data"]] == ["a"]
    assert emulator.creation_counts() == {"a": 1}
    retry = await api(
        "POST", "/environments", json=BODY, headers={"Idempotency-Key": "k"}
    )
    assert retry.status == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == listed.json()["data"][0]["id"]
    assert emulator.stats()["faults"]["reset_after_commit"] == 1


async def test_a_slow_answer_is_committed_before_the_wait(api, emulator):
    """During a slow answer the create is stored, so a retry with its key replays it."""
    emulator.faults.slow = 1.0
    emulator.faults.slow_s = 0.5
    headers = {"Idempotency-Key": "k"}
    first = asyncio.create_task(
        api("POST", "/environments", json=BODY, headers=headers)
    )
    await eventually(lambda: emulator.stats()["faults"]["slow"] == 1)
    emulator.faults.slow = 0.0
    retry = await api("POST", "/environments", json=BODY, headers=headers)
    assert retry.status == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert emulator.stats()["in_flight"] == 1
    answer = await first
    assert answer.status == 201
    assert answer.body == retry.body


async def test_latency_keeps_requests_in_flight(api, emulator):
    """Requests waiting in latency count as in flight; max_in_flight keeps the peak."""
    emulator.faults.latency_ms = 100
    statuses = await asyncio.gather(*(api("GET", "/environments") for _ in range(6)))
    assert {answer.status for answer in statuses} == {200}
    stats = emulator.stats()
    assert stats["max_in_flight"] == 6
    assert stats["in_flight"] == 0
    assert stats["faults"]["latency"] == 6


async def test_jitter_alone_counts_as_latency(api, emulator):
    """A plan with only jitter still delays (and counts) every request."""
    emulator.faults.jitter_ms = 1
    await api("GET", "/environments")
    assert emulator.stats()["faults"]["latency"] == 1


async def test_the_rate_limit_applies_before_injected_errors(api, emulator):
    """A rate-limited request gets 429 even when error_500 is certain."""
    emulator.faults.error_500 = 1.0
    emulator.faults.rate_limit_per_s = 0.001
    first = await api("GET", "/environments")
    second = await api("GET", "/environments")
    assert (first.status, second.status) == (500, 429)


async def test_reset_before_commit_applies_before_injected_errors(api, emulator):
    """A certain reset wins over a certain 500: the client sees a disconnect."""
    emulator.faults.error_500 = 1.0
    emulator.faults.reset_before_commit = 1.0
    with pytest.raises(DISCONNECTED):
        await api("GET", "/environments")
    assert emulator.stats()["faults"]["error_500"] == 0


async def test_injected_errors_are_not_stored_for_replay(api, emulator):
    """A key whose request got an injected 500 runs normally on retry."""
    emulator.faults.error_500 = 1.0
    headers = {"Idempotency-Key": "k"}
    assert (
        await api("POST", "/environments", json=BODY, headers=headers)
    ).status == 500
    emulator.faults.error_500 = 0.0
    retry = await api("POST", "/environments", json=BODY, headers=headers)
    assert retry.status == 201
    assert "Idempotent-Replayed" not in retry.headers


async def test_admin_routes_are_never_faulted(api, emulator):
    """With every fault certain, the admin routes still answer at once."""
    emulator.faults.error_500 = 1.0
    emulator.faults.reset_before_commit = 1.0
    emulator.faults.rate_limit_per_s = 0.001
    emulator.faults.latency_ms = 60_000
    for _ in range(3):
        assert (await api("GET", "/_emulator/stats")).status == 200
    assert emulator.stats()["requests"] == 0


async def statuses(api: Any, count: int) -> list[int | str]:
    """The outcome of ``count`` GETs: a status, or "reset"."""
    seen: list[int | str] = []
    for _ in range(count):
        try:
            seen.append((await api("GET", "/environments")).status)
        except DISCONNECTED:
            seen.append("reset")
    return seen


SEEDED: dict[str, Any] = {
    "seed": 7,
    "error_500": 0.2,
    "error_502": 0.1,
    "error_503": 0.2,
    "reset_before_commit": 0.1,
}


async def test_a_seeded_plan_repeats_its_faults(api, emulator):
    """The same seed and request sequence give the same faults, after a reset too."""
    emulator.faults.update(SEEDED)
    first = await statuses(api, 40)
    assert len(set(first)) >= 4
    emulator.reset_stats()
    assert await statuses(api, 40) == first
    assert (await api("PATCH", "/_emulator/faults", json={"seed": 7})).status == 200
    assert await statuses(api, 40) == first
    async with Emulator(
        EmulatorConfig(token=TEST_TOKEN, faults=FaultPlan(**SEEDED))
    ) as other:
        api.emulator = other
        assert await statuses(api, 40) == first
    api.emulator = emulator
    emulator.faults.seed = 8
    assert await statuses(api, 40) != first


async def test_faults_can_be_read_and_changed_at_run_time(api, emulator):
    """GET shows the plan, PATCH merges, PUT replaces; each applies to the next request."""
    assert (await api("GET", "/_emulator/faults")).json() == FaultPlan().to_dict()
    patched = await api(
        "PATCH", "/_emulator/faults", json={"error_503": 1, "latency_ms": 1}
    )
    assert patched.json()["error_503"] == 1.0
    assert emulator.faults.error_503 == 1.0
    assert (await api("GET", "/environments")).status == 503
    replaced = await api("PUT", "/_emulator/faults", json={"slow_s": 2})
    assert replaced.json() == {**FaultPlan().to_dict(), "slow_s": 2.0}
    assert emulator.faults.latency_ms == 0.0
    assert (await api("GET", "/environments")).status == 200


@pytest.mark.parametrize(
    ("sent", "param"),
    [
        ({"error_500": 1.5}, "error_500"),
        ({"slow": -0.1}, "slow"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"jitter_ms": "5"}, "jitter_ms"),
        ({"rate_limit_burst": 0}, "rate_limit_burst"),
        ({"rate_limit_burst": 1.5}, "rate_limit_burst"),
        ({"rate_limit_body": "no"}, "rate_limit_body"),
        ({"seed": "x"}, "seed"),
        ({"retry_after_s": -1}, "retry_after_s"),
        ({"chaos": 1}, "chaos"),
    ],
)
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_bad_fault_plan_is_400_and_changes_nothing(
    api, emulator, sent, param, method
):
    """Probabilities must be 0..1 and numbers non-negative; a bad field is named."""
    answer = await api(method, "/_emulator/faults", json=sent)
    assert_error(answer, 400, "invalid_request_error", param)
    assert emulator.faults == FaultPlan()


def test_an_impossible_plan_fails_at_construction():
    """``FaultPlan(error_500=2)`` raises ValueError naming the field."""
    with pytest.raises(ValueError, match="error_500"):
        FaultPlan(error_500=2)


async def test_stopping_does_not_wait_for_long_faults(api):
    """Leaving the context ends latency and slow waits at once; clients see a disconnect."""
    plan = FaultPlan(latency_ms=60_000)
    async with Emulator(EmulatorConfig(token=TEST_TOKEN, faults=plan)) as emu:
        waiting = asyncio.create_task(api("GET", "/environments", emulator=emu))
        await eventually(lambda: emu.stats()["in_flight"] == 1)
    with pytest.raises(DISCONNECTED):
        await waiting


async def test_a_failed_create_is_not_counted_as_created(api, emulator):
    """Only committed creates count in creations; 500s and 429s do not."""
    await create(api, "ok")
    emulator.faults.error_500 = 1.0
    await api("POST", "/environments", json=BODY)
    stats = emulator.stats()
    assert stats["creations"] == 1
    assert stats["by_status"] == {"201": 1, "500": 1}
