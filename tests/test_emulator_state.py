"""The state file: environments, references, counts and stored answers survive restarts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from provisioner.emulator import Emulator, EmulatorConfig
from tests.helpers import CLOUD, TEST_TOKEN, assert_error, create, eventually


def config(path: Path, token: str = TEST_TOKEN) -> EmulatorConfig:
    return EmulatorConfig(token=token, state_path=str(path))


async def test_state_survives_a_restart(api, tmp_path):
    """A restarted emulator serves the same environments, references and replays."""
    path = tmp_path / "state.json"
    async with Emulator(config(path)) as first:
        api.emulator = first
        kept = await create(api, "kept")
        archived = await create(api, "archived")
        await api("POST", f"/environments/{archived['id']}/archive")
        refs = f"/_emulator/environments/{kept['id']}/references"
        await api("POST", refs, json={"count": 1})
        headers = {"Idempotency-Key": "k"}
        created = await api(
            "POST",
            "/environments",
            json={"name": "keyed", "config": CLOUD},
            headers=headers,
        )
        before = first.environments()
    async with Emulator(config(path)) as second:
        api.emulator = second
        assert second.environments() == before
        assert second.creation_counts() == {"kept": 1, "archived": 1, "keyed": 1}
        assert (await api("GET", f"/environments/{kept['id']}")).json() == kept
        assert_error(
            await api("DELETE", f"/environments/{kept['id']}"), 409, "conflict_error"
        )
        again = await api(
            "POST",
            "/environments",
            json={"name": "keyed", "config": CLOUD},
            headers=headers,
        )
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.body == created.body
        dup = await api(
            "POST", "/environments", json={"name": "archived", "config": CLOUD}
        )
        assert dup.status == 409
        newest = await create(api, "new")
        assert newest["id"] > max(env["id"] for env in before)


async def test_state_is_scoped_per_token(api, tmp_path):
    """Another token does not see (or collide with) the first token's environments."""
    path = tmp_path / "state.json"
    async with Emulator(config(path)) as first:
        api.emulator = first
        await create(api, "shared-name")
    async with Emulator(config(path, token="pt-other")) as other:
        api.emulator = other
        listed = await api("GET", "/environments", token="pt-other")
        assert listed.json()["data"] == []
        answer = await api(
            "POST",
            "/environments",
            json={"name": "shared-name", "config": CLOUD},
            token="pt-other",
        )
        assert answer.status == 201
    assert b"pt-other" not in path.read_bytes()
    assert TEST_TOKEN.encode() not in path.read_bytes()


async def test_state_is_saved_while_running(api, tmp_path):
    """Within about a second of a change the file holds it, written without leftovers."""
    path = tmp_path / "state.json"
    async with Emulator(config(path)) as emu:
        api.emulator = emu
        env = await create(api, "a")

        def saved() -> bool:
            return path.exists() and env["id"].encode() in path.read_bytes()

        await eventually(saved, timeout_s=5)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
        data = orjson.loads(path.read_bytes())
        assert data["version"] == 1


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"version": 99}'])
async def test_an_unreadable_state_file_fails_to_start(tmp_path, content):
    """A state file that is not an emulator state stops the start with ValueError."""
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="state file"):
        async with Emulator(config(path)):
            pass


async def test_a_missing_state_file_starts_empty(tmp_path):
    """A state path that does not exist yet starts empty and is written on stop."""
    path = tmp_path / "new.json"
    async with Emulator(config(path)) as emu:
        assert emu.environments() == []
    assert orjson.loads(path.read_bytes())["store"]["scopes"] == {}


async def test_a_state_file_that_cannot_be_written_fails_the_stop(api, tmp_path):
    """When the state file cannot be written, leaving the context raises the OSError."""
    emu = Emulator(config(tmp_path / "missing-dir" / "state.json"))
    await emu.__aenter__()
    api.emulator = emu
    await create(api, "a")
    with pytest.raises(OSError, match="missing-dir"):
        await emu.__aexit__(None, None, None)


async def test_a_state_file_from_before_status_gets_status_from_archived_at(
    api, tmp_path
):
    """Environments saved without ``status`` load as ``ready``, or ``archived`` if archived."""
    path = tmp_path / "state.json"
    async with Emulator(config(path)) as first:
        api.emulator = first
        ready = await create(api, "ready")
        archived = await create(api, "archived")
        await api("POST", f"/environments/{archived['id']}/archive")
    data = orjson.loads(path.read_bytes())
    for saved in data["store"]["scopes"].values():
        for env in saved["environments"]:
            del env["status"]
    path.write_bytes(orjson.dumps(data))
    async with Emulator(config(path)) as second:
        api.emulator = second
        statuses = {
            env_id: (await api("GET", f"/environments/{env_id}")).json()["status"]
            for env_id in (ready["id"], archived["id"])
        }
    assert statuses == {ready["id"]: "ready", archived["id"]: "archived"}
