"""Admin routes (stats, reset) and the ``Emulator`` Python interface."""

from __future__ import annotations

from tests.helpers import CLOUD, TEST_TOKEN, assert_error, create


async def test_stats_count_requests_statuses_creations_conflicts_and_replays(
    api, emulator
):
    """The stats route and ``Emulator.stats()`` count what the API answered."""
    await create(api, "a")
    await api("POST", "/environments", json={"name": "a", "config": CLOUD})
    await api("GET", "/environments")
    for _ in range(2):
        await api(
            "POST",
            "/environments",
            json={"name": "b", "config": CLOUD},
            headers={"Idempotency-Key": "k"},
        )
    stats = (await api("GET", "/_emulator/stats")).json()
    assert stats == emulator.stats()
    assert stats["requests"] == 5
    assert stats["by_status"] == {"200": 1, "201": 3, "409": 1}
    assert stats["creations"] == 2
    assert stats["conflicts"] == 1
    assert stats["replays"] == 1
    assert stats["in_flight"] == 0
    assert stats["max_in_flight"] == 1
    assert set(stats["faults"]) == {
        "latency", "error_500", "error_502", "error_503", "rate_limited",
        "reset_before_commit", "reset_after_commit", "slow",
    }  # fmt: skip


async def test_reset_clears_stats_and_with_state_the_environments(api, emulator):
    """``POST /_emulator/reset`` zeroes stats; ``?state=true`` also drops envs and keys."""
    await api(
        "POST",
        "/environments",
        json={"name": "a", "config": CLOUD},
        headers={"Idempotency-Key": "k"},
    )
    assert (await api("POST", "/_emulator/reset")).status == 200
    assert emulator.stats()["requests"] == 0
    assert len(emulator.environments()) == 1
    assert (await api("POST", "/_emulator/reset?state=true")).json() == {
        "reset": True,
        "state": True,
    }
    assert emulator.environments() == []
    again = await api(
        "POST",
        "/environments",
        json={"name": "a", "config": CLOUD},
        headers={"Idempotency-Key": "k"},
    )
    assert again.status == 201
    assert "Idempotent-Replayed" not in again.headers
    assert_error(
        await api("POST", "/_emulator/reset?state=maybe"),
        400,
        "invalid_request_error",
        "state",
    )


async def test_the_python_interface_reports_environments_and_counts(api, emulator):
    """environments() lists archived ones too; creation_counts() survives deletes."""
    first = await create(api, "a")
    second = await create(api, "b")
    await api("POST", f"/environments/{first['id']}/archive")
    await api("DELETE", f"/environments/{second['id']}")
    envs = emulator.environments()
    assert [env["name"] for env in envs] == ["a"]
    assert envs[0]["archived_at"] is not None
    assert emulator.creation_counts() == {"a": 1, "b": 1}
    emulator.reset_stats()
    assert emulator.stats()["requests"] == 0
    assert emulator.url == f"http://127.0.0.1:{emulator.port}/api/v1/cloud"
    assert emulator.root_url == f"http://127.0.0.1:{emulator.port}"
    assert emulator.token == TEST_TOKEN


async def test_the_environments_snapshot_is_a_copy(api, emulator):
    """Changing what environments() returned does not change the server's state."""
    env = await create(api, "a")
    emulator.environments()[0]["name"] = "changed"
    assert (await api("GET", f"/environments/{env['id']}")).json()["name"] == "a"
