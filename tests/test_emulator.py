"""The emulator's endpoints, auth, envelope, request ids and idempotency, over real HTTP."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from provisioner.api.client import ApiClient, Created, open_session
from provisioner.emulator import Emulator, EmulatorConfig, FaultPlan
from provisioner.emulator.ids import IdGenerator
from provisioner.redact import Secret
from provisioner.settings import ApiSettings
from tests.helpers import CLOUD, TEST_TOKEN, assert_error, create

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
AUTH_ERROR = {"type": "authentication_error", "message": "Invalid API key or token."}


def test_the_package_exports_the_public_interface():
    """``provisioner.emulator`` exports exactly Emulator, EmulatorConfig and FaultPlan."""
    import provisioner.emulator as package

    assert sorted(package.__all__) == ["Emulator", "EmulatorConfig", "FaultPlan"]
    assert EmulatorConfig().faults == FaultPlan()


def test_an_unknown_config_echo_is_refused():
    """``EmulatorConfig(config_echo=...)`` takes only ``as-sent`` or ``normalized``."""
    assert EmulatorConfig().config_echo == "as-sent"
    with pytest.raises(ValueError, match="config_echo"):
        EmulatorConfig(config_echo="normalised")  # type: ignore[arg-type]


SEED_CONFIG = {
    "type": "cloud",
    "networking": {"type": "limited"},
    "packages": {"apt": ["curl"]},
}


async def test_create_answers_201_with_the_seeds_fields_and_config_as_sent(api):
    """A create answers 201 with the seed's fields, ``status: ready``, and its config as sent."""
    answer = await api(
        "POST", "/environments", json={"name": "doc-test-env", "config": SEED_CONFIG}
    )
    assert answer.status == 201
    env = answer.json()
    assert list(env) == [
        "id", "type", "name", "description", "status", "config", "metadata",
        "archived_at", "created_at", "updated_at",
    ]  # fmt: skip
    assert env["type"] == "environment"
    assert env["name"] == "doc-test-env"
    assert env["description"] == ""
    assert env["status"] == "ready"
    assert env["metadata"] == {}
    assert env["archived_at"] is None
    assert env["config"] == SEED_CONFIG
    assert STAMP.fullmatch(env["created_at"])
    assert env["updated_at"] == env["created_at"]
    assert uuid.UUID(answer.headers["request-id"]).version == 4


async def test_normalized_echo_fills_in_every_config_field(make_emulator, api):
    """With ``config_echo="normalized"`` a minimal config is echoed with every sub-field."""
    emu = await make_emulator(config_echo="normalized")
    answer = await api(
        "POST", "/environments", json={"name": "alpha", "config": CLOUD}, emulator=emu
    )
    assert answer.status == 201
    env = answer.json()
    assert env["status"] == "ready"
    assert env["config"] == {
        "type": "cloud",
        "networking": {"type": "unrestricted"},
        "packages": {
            "type": "packages",
            "apt": [],
            "cargo": [],
            "gem": [],
            "go": [],
            "npm": [],
            "pip": [],
        },
    }


async def test_ids_are_uuid7_and_strictly_increasing(api):
    """Ids are ``env_`` + 32 hex digits of a UUIDv7, increasing even within a millisecond."""
    envs = await asyncio.gather(*(create(api, f"env-{i}") for i in range(60)))
    ids = sorted(env["id"] for env in envs)
    assert len(set(ids)) == 60
    by_creation = [env["id"] for env in sorted(envs, key=lambda e: e["created_at"])]
    assert by_creation == sorted(by_creation)
    for env_id in ids:
        assert re.fullmatch(r"env_[0-9a-f]{32}", env_id)
        parsed = uuid.UUID(env_id[4:])
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
    unix_ms = int(ids[0][4:16], 16)
    created = datetime.fromisoformat(envs[0]["created_at"])
    assert abs(unix_ms / 1000 - created.timestamp()) < 5


def test_ids_keep_increasing_within_a_millisecond_and_when_the_clock_steps_back():
    """Many ids in one millisecond, then an earlier clock, still sort in issue order."""
    generator = IdGenerator()
    issued = [generator.next_id(1_800_000_000_000) for _ in range(2000)]
    issued.append(generator.next_id(1_700_000_000_000))
    assert issued == sorted(issued)
    assert len(set(issued)) == len(issued)
    assert {uuid.UUID(env_id[4:]).version for env_id in issued} == {7}
    restarted = IdGenerator()
    restarted.observe(issued[-1])
    assert restarted.next_id(1_000) > issued[-1]


async def test_timestamps_are_utc_with_microseconds(api):
    """created_at is the current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    env = await create(api, "alpha")
    created = datetime.fromisoformat(env["created_at"])
    assert created.tzinfo is not None
    assert abs((datetime.now(UTC) - created).total_seconds()) < 5


async def test_both_prefixes_serve_the_same_environments(api):
    """``/v1/environments`` and ``/api/v1/cloud/environments`` are the same collection."""
    env = await create(api, "alpha")
    short = await api("GET", f"/v1/environments/{env['id']}")
    assert short.status == 200
    assert short.json() == env
    listed = await api("GET", "/v1/environments")
    assert [e["id"] for e in listed.json()["data"]] == [env["id"]]


async def test_get_returns_the_environment_or_404(api):
    """GET by id returns the stored environment; an unknown id is 404 not_found_error."""
    env = await create(api, "alpha")
    assert (await api("GET", f"/environments/{env['id']}")).json() == env
    missing = "env_" + "0" * 32
    error = assert_error(
        await api("GET", f"/environments/{missing}"), 404, "not_found_error"
    )
    assert missing in error["message"]


@pytest.mark.parametrize("echo", ["as-sent", "normalized"])
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_update_changes_fields_and_replaces_config(
    make_emulator, api, method, echo
):
    """POST and PUT on an id update name, description and config (config is replaced)."""
    emu = await make_emulator(config_echo=echo)
    sent = {"type": "cloud", "packages": {"pip": ["x"]}}
    answer = await api(
        "POST", "/environments", json={"name": "alpha", "config": sent}, emulator=emu
    )
    env = answer.json()
    update = {
        "name": "beta",
        "description": "new",
        "config": {"type": "cloud", "networking": {"type": "limited"}},
    }
    path = f"/environments/{env['id']}"
    answer = await api(method, path, json=update, emulator=emu)
    assert answer.status == 200
    updated = answer.json()
    assert updated["name"] == "beta"
    assert updated["description"] == "new"
    assert updated["config"]["networking"]["type"] == "limited"
    assert updated["config"].get("packages", {}).get("pip", []) == []
    assert updated["status"] == "ready"
    assert updated["created_at"] == env["created_at"]
    assert updated["updated_at"] > env["updated_at"]
    assert (await api("GET", path, emulator=emu)).json() == updated


async def test_update_treats_metadata_as_a_patch(api):
    """A metadata string sets a key, null deletes it, and ``metadata: null`` clears all."""
    env = await create(api, "alpha", metadata={"a": "1", "b": "2"})
    path = f"/environments/{env['id']}"
    patched = await api("POST", path, json={"metadata": {"b": None, "c": "3"}})
    assert patched.json()["metadata"] == {"a": "1", "c": "3"}
    assert (await api("POST", path, json={})).json()["metadata"] == {"a": "1", "c": "3"}
    cleared = await api("POST", path, json={"metadata": None})
    assert cleared.json()["metadata"] == {}


async def test_update_past_16_metadata_keys_is_400(api):
    """A patch that would leave more than 16 metadata keys is rejected as a whole."""
    env = await create(api, "alpha", metadata={f"k{i}": "v" for i in range(16)})
    answer = await api(
        "POST", f"/environments/{env['id']}", json={"metadata": {"k99": "v"}}
    )
    assert_error(answer, 400, "invalid_request_error", "metadata")
    assert (await api("GET", f"/environments/{env['id']}")).json() == env


async def test_update_rename_to_a_taken_name_is_409(api):
    """Renaming onto another environment's name is a name conflict."""
    first = await create(api, "alpha")
    second = await create(api, "beta")
    answer = await api("POST", f"/environments/{second['id']}", json={"name": "alpha"})
    error = assert_error(answer, 409, "conflict_error", "name")
    assert first["id"] in error["message"]
    same = await api("POST", f"/environments/{first['id']}", json={"name": "alpha"})
    assert same.status == 200


async def test_update_of_an_unknown_or_archived_environment_fails(api):
    """Updating an unknown id is 404 and updating an archived environment is 409."""
    missing = await api("POST", "/environments/env_" + "0" * 32, json={"name": "x"})
    assert_error(missing, 404, "not_found_error")
    env = await create(api, "alpha")
    await api("POST", f"/environments/{env['id']}/archive")
    archived = await api("POST", f"/environments/{env['id']}", json={"name": "x"})
    assert_error(archived, 409, "conflict_error")


async def test_archive_sets_archived_at_and_a_second_archive_is_409(api):
    """Archive answers 200 with archived_at set and status archived; again is 409."""
    env = await create(api, "alpha")
    answer = await api("POST", f"/environments/{env['id']}/archive")
    assert answer.status == 200
    archived = answer.json()
    assert STAMP.fullmatch(archived["archived_at"])
    assert archived["updated_at"] == archived["archived_at"]
    assert archived["status"] == "archived"
    again = assert_error(
        await api("POST", f"/environments/{env['id']}/archive"), 409, "conflict_error"
    )
    assert "already archived" in again["message"]
    fetched = await api("GET", f"/environments/{env['id']}")
    assert fetched.json()["archived_at"] == archived["archived_at"]


async def test_delete_answers_environment_deleted_then_404(api, emulator):
    """Delete answers ``{"id", "type": "environment_deleted"}`` and the id is gone."""
    env = await create(api, "alpha")
    answer = await api("DELETE", f"/environments/{env['id']}")
    assert answer.status == 200
    assert answer.json() == {"id": env["id"], "type": "environment_deleted"}
    assert_error(await api("GET", f"/environments/{env['id']}"), 404, "not_found_error")
    assert_error(
        await api("DELETE", f"/environments/{env['id']}"), 404, "not_found_error"
    )
    assert emulator.environments() == []
    assert emulator.creation_counts() == {"alpha": 1}


async def test_delete_of_a_referenced_environment_is_409_until_released(api):
    """While sessions reference an environment, delete is 409; at 0 references it works."""
    env = await create(api, "alpha")
    refs = f"/_emulator/environments/{env['id']}/references"
    assert (await api("POST", refs, json={"count": 2})).json() == {
        "id": env["id"],
        "references": 2,
    }
    error = assert_error(
        await api("DELETE", f"/environments/{env['id']}"), 409, "conflict_error"
    )
    assert "referenced by 2" in error["message"]
    await api("POST", refs, json={"count": 0})
    assert (await api("DELETE", f"/environments/{env['id']}")).status == 200


async def test_references_route_checks_its_input(api):
    """The references route needs a known id and an integer count >= 0."""
    env = await create(api, "alpha")
    refs = f"/_emulator/environments/{env['id']}/references"
    assert_error(
        await api("POST", refs, json={"count": -1}),
        400,
        "invalid_request_error",
        "count",
    )
    assert_error(
        await api("POST", refs, json={}), 400, "invalid_request_error", "count"
    )
    unknown = "/_emulator/environments/env_" + "0" * 32 + "/references"
    assert_error(await api("POST", unknown, json={"count": 1}), 404, "not_found_error")


async def test_a_duplicate_name_is_409_naming_the_existing_environment(api):
    """A second create with a taken name is 409 conflict_error with param name."""
    env = await create(api, "alpha")
    answer = await api("POST", "/environments", json={"name": "alpha", "config": CLOUD})
    error = assert_error(answer, 409, "conflict_error", "name")
    assert (
        error["message"]
        == f"An environment with name 'alpha' already exists ({env['id']})"
    )


async def test_name_uniqueness_counts_archived_but_not_deleted_and_is_case_sensitive(
    api,
):
    """Archived names stay taken, deleted names are free again, and case matters."""
    archived = await create(api, "alpha")
    await api("POST", f"/environments/{archived['id']}/archive")
    again = await api("POST", "/environments", json={"name": "alpha", "config": CLOUD})
    assert again.status == 409
    assert (
        await api("POST", "/environments", json={"name": "ALPHA", "config": CLOUD})
    ).status == 201
    deleted = await create(api, "beta")
    await api("DELETE", f"/environments/{deleted['id']}")
    assert (
        await api("POST", "/environments", json={"name": "beta", "config": CLOUD})
    ).status == 201


async def test_unique_names_off_allows_duplicates(make_emulator, api):
    """With ``unique_names=False`` two environments may share a name."""
    emu = await make_emulator(unique_names=False)
    for _ in range(2):
        answer = await api(
            "POST", "/environments", json={"name": "a", "config": CLOUD}, emulator=emu
        )
        assert answer.status == 201
    assert emu.creation_counts() == {"a": 2}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Token {TEST_TOKEN}"},
        {"Authorization": TEST_TOKEN},
        {"Authorization": "Bearer pt-wrong"},
        {"x-api-key": TEST_TOKEN},
    ],
    ids=["missing", "empty", "blank", "scheme", "bare", "wrong", "x-api-key"],
)
@pytest.mark.parametrize("path", ["/environments", "/_emulator/stats"])
async def test_a_missing_malformed_or_wrong_token_is_401(api, headers, path):
    """Without the right bearer token every API and admin route answers 401."""
    answer = await api("GET", path, headers=headers, token=None)
    assert_error(answer, 401, "authentication_error")
    assert answer.json()["error"] == AUTH_ERROR


async def test_the_bearer_scheme_is_case_insensitive(api):
    """``bearer <token>`` is accepted like ``Bearer <token>``."""
    answer = await api(
        "GET", "/environments", headers={"Authorization": f"bearer {TEST_TOKEN}"}
    )
    assert answer.status == 200


async def test_a_forbidden_token_is_403(make_emulator, api):
    """A token listed in ``forbidden_tokens`` gets 403 permission_error."""
    emu = await make_emulator(forbidden_tokens=frozenset({"pt-readonly"}))
    answer = await api("GET", "/environments", token="pt-readonly", emulator=emu)
    assert_error(answer, 403, "permission_error")


async def test_a_made_up_token_is_exposed_and_accepted(api):
    """Without a configured token the emulator makes one up (``pt-emu-`` + 24 hex)."""
    async with Emulator() as emu:
        assert re.fullmatch(r"pt-emu-[0-9a-f]{24}", emu.token)
        answer = await api("GET", "/environments", token=emu.token, emulator=emu)
        assert answer.status == 200


async def test_the_callers_request_id_is_echoed(api):
    """``x-request-id`` comes back in the ``request-id`` header and the error body."""
    headers = {"x-request-id": "req-123"}
    ok = await api("GET", "/environments", headers=headers)
    assert ok.headers["request-id"] == "req-123"
    error = await api("GET", "/environments/env_" + "0" * 32, headers=headers)
    assert error.headers["request-id"] == "req-123"
    assert error.json()["request_id"] == "req-123"


async def test_unknown_routes_and_methods_answer_in_the_envelope(api):
    """An unknown path is 404 not_found_error; a wrong method is 405 with ``Allow``."""
    assert_error(await api("GET", "/nothing"), 404, "not_found_error")
    answer = await api("PATCH", "/environments")
    assert_error(answer, 405, "invalid_request_error")
    assert answer.headers["Allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got array"),
        (b'"name"', "must be a JSON object, got string"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_400(api, data, fragment):
    """Create needs a JSON object body; anything else is 400 invalid_request_error."""
    answer = await api("POST", "/environments", data=data)
    error = assert_error(answer, 400, "invalid_request_error")
    assert fragment in error["message"]


async def test_content_type_is_not_required(api):
    """A JSON body without ``Content-Type`` is accepted."""
    answer = await api(
        "POST", "/environments", data=b'{"name": "a", "config": {"type": "cloud"}}'
    )
    assert answer.status == 201


async def test_a_body_over_the_limit_is_400_not_413(make_emulator, api):
    """A body larger than ``max_body_bytes`` is 400 invalid_request_error, sized or chunked."""
    emu = await make_emulator(max_body_bytes=1024)
    big = {"name": "a", "config": CLOUD, "description": "x" * 2000}
    answer = await api("POST", "/environments", json=big, emulator=emu)
    assert (
        "larger than the limit of 1024 bytes"
        in assert_error(answer, 400, "invalid_request_error")["message"]
    )

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "a", "description": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'", "config": {"type": "cloud"}}'

    async with api.session.post(
        emu.url + "/environments",
        data=chunks(),
        headers={"Authorization": f"Bearer {TEST_TOKEN}"},
    ) as response:
        assert response.status == 400
    small = {"name": "a", "config": CLOUD, "description": "x" * 900}
    assert (await api("POST", "/environments", json=small, emulator=emu)).status == 201


async def test_the_client_reads_the_status_of_a_created_environment(emulator):
    """``Created.status`` is the answer's ``status``: ``ready`` for a new environment."""
    settings = ApiSettings(token=Secret(TEST_TOKEN), base_url=emulator.url, timeout_s=5)
    async with open_session(concurrency=1, timeout_s=5) as session:
        client = ApiClient(session, settings=settings)
        created = await client.create(
            {"name": "alpha", "config": CLOUD}, idempotency_key="k-1"
        )
    assert created.status == "ready"


@pytest.mark.parametrize(
    ("environment", "status"),
    [
        ({"id": "env_1", "status": "archived"}, "archived"),
        ({"id": "env_1", "archived_at": None}, "ready"),
        ({"id": "env_1", "archived_at": "2026-05-18T15:28:07.017808Z"}, "archived"),
        ({"id": "env_1", "status": 3}, "ready"),
    ],
)
def test_a_status_the_server_omits_is_derived_from_archived_at(environment, status):
    """Without a string ``status`` (the newest docs omit it) ``archived_at`` decides."""
    created = Created(
        environment=environment, http_status=201, request_id=None, is_replay=False
    )
    assert created.status == status
