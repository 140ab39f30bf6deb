"""Idempotency-Key: replay, different-body and in-progress conflicts, scope, TTL."""

from __future__ import annotations

import asyncio

from tests.helpers import CLOUD, Answer, assert_error, create, eventually


async def test_the_same_key_and_body_replays_the_first_answer(api, emulator):
    """A repeated Idempotency-Key with the same JSON replays status and body exactly."""
    headers = {"Idempotency-Key": "k1"}
    first = await api(
        "POST", "/environments", json={"name": "a", "config": CLOUD}, headers=headers
    )
    reordered = b'{ "config": {"type": "cloud"}, "name": "a" }'
    again = await api("POST", "/environments", data=reordered, headers=headers)
    assert first.status == again.status == 201
    assert again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert emulator.creation_counts() == {"a": 1}
    assert emulator.stats()["replays"] == 1


async def test_the_same_key_with_another_body_is_409(api):
    """Reusing a key with a different body is 409 conflict_error without a param."""
    headers = {"Idempotency-Key": "k1"}
    await api(
        "POST", "/environments", json={"name": "a", "config": CLOUD}, headers=headers
    )
    answer = await api(
        "POST", "/environments", json={"name": "b", "config": CLOUD}, headers=headers
    )
    error = assert_error(answer, 409, "conflict_error")
    assert error["message"] == "Idempotency key reused with a different request body"


async def test_x_idempotency_key_is_accepted_too(api, emulator):
    """``X-Idempotency-Key`` works like ``Idempotency-Key``."""
    headers = {"X-Idempotency-Key": "k1"}
    for _ in range(2):
        answer = await api(
            "POST",
            "/environments",
            json={"name": "a", "config": CLOUD},
            headers=headers,
        )
        assert answer.status == 201
    assert emulator.creation_counts() == {"a": 1}


async def test_error_answers_are_replayed_too(api):
    """A stored 400 or name-conflict 409 is replayed, with its original request id."""
    bad = {"name": "", "config": CLOUD}
    first = await api(
        "POST", "/environments", json=bad, headers={"Idempotency-Key": "k1"}
    )
    again = await api(
        "POST", "/environments", json=bad, headers={"Idempotency-Key": "k1"}
    )
    assert first.status == again.status == 400
    assert again.body == first.body
    await create(api, "taken")
    dup = {"name": "taken", "config": CLOUD}
    first = await api(
        "POST", "/environments", json=dup, headers={"Idempotency-Key": "k2"}
    )
    again = await api(
        "POST", "/environments", json=dup, headers={"Idempotency-Key": "k2"}
    )
    assert first.status == again.status == 409
    assert again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_keys_are_scoped_by_method_and_path_but_not_prefix(api):
    """The same key on another path is independent; both prefixes share one path."""
    headers = {"Idempotency-Key": "shared"}
    env = await create(api, "a")
    archive = await api("POST", f"/environments/{env['id']}/archive", headers=headers)
    assert archive.status == 200
    created = await api(
        "POST", "/environments", json={"name": "b", "config": CLOUD}, headers=headers
    )
    assert created.status == 201
    again = await api(
        "POST", "/v1/environments", json={"name": "b", "config": CLOUD}, headers=headers
    )
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_a_replayed_delete_answers_200_again(api):
    """A delete retried with its key replays 200 instead of 404."""
    env = await create(api, "a")
    headers = {"Idempotency-Key": "del-1"}
    first = await api("DELETE", f"/environments/{env['id']}", headers=headers)
    again = await api("DELETE", f"/environments/{env['id']}", headers=headers)
    assert first.status == again.status == 200
    assert again.body == first.body


async def test_idempotency_off_ignores_keys(make_emulator, api):
    """With ``idempotency=False`` a repeated key runs again (here: a name conflict)."""
    emu = await make_emulator(idempotency=False)
    headers = {"Idempotency-Key": "k1"}
    body = {"name": "a", "config": CLOUD}
    assert (
        await api("POST", "/environments", json=body, headers=headers, emulator=emu)
    ).status == 201
    again = await api("POST", "/environments", json=body, headers=headers, emulator=emu)
    assert again.status == 409
    assert "Idempotent-Replayed" not in again.headers


async def test_stored_answers_expire_after_the_ttl(make_emulator, api):
    """After ``idempotency_ttl_s`` a key is forgotten and the request runs again."""
    emu = await make_emulator(idempotency_ttl_s=0.05)
    headers = {"Idempotency-Key": "k1"}
    body = {"name": "a", "config": CLOUD}
    await api("POST", "/environments", json=body, headers=headers, emulator=emu)

    async def not_replayed() -> Answer | None:
        answer = await api(
            "POST", "/environments", json=body, headers=headers, emulator=emu
        )
        return None if "Idempotent-Replayed" in answer.headers else answer

    again = await eventually(not_replayed)
    assert again.status == 409
    assert "Idempotent-Replayed" not in again.headers


async def test_a_key_still_in_progress_is_409(api, emulator):
    """A second request with a key whose first request is still running is 409."""
    emulator.faults.latency_ms = 300
    headers = {"Idempotency-Key": "slow-key"}
    body = {"name": "a", "config": CLOUD}
    first = asyncio.create_task(
        api("POST", "/environments", json=body, headers=headers)
    )
    await eventually(lambda: emulator.stats()["in_flight"] == 1)
    second = await api("POST", "/environments", json=body, headers=headers)
    error = assert_error(second, 409, "conflict_error")
    assert (
        error["message"]
        == "A request with this Idempotency-Key is still in progress; retry later"
    )
    assert (await first).status == 201
    emulator.faults.latency_ms = 0
    third = await api("POST", "/environments", json=body, headers=headers)
    assert third.headers["Idempotent-Replayed"] == "true"


async def test_an_unauthorised_request_does_not_use_up_a_key(api):
    """A 401 is not stored: the same key then works with the right token."""
    headers = {"Idempotency-Key": "k1"}
    body = {"name": "a", "config": CLOUD}
    assert (
        await api("POST", "/environments", json=body, headers=headers, token="pt-bad")
    ).status == 401
    answer = await api("POST", "/environments", json=body, headers=headers)
    assert answer.status == 201
    assert "Idempotent-Replayed" not in answer.headers
