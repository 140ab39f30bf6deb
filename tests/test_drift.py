"""Drift: where an environment differs from its spec, and the update that converges it.

Pure cases with plain values, then over real HTTP: an environment created from a
spec shows no drift under either of the emulator's config echoes, and the
update built from a drift makes it match.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from provisioner.api.client import ApiClient, open_session
from provisioner.core.drift import drift, normal_config, update_body, update_key
from provisioner.emulator import Emulator
from provisioner.redact import Secret
from provisioner.settings import ApiSettings
from provisioner.spec import spec_key, validate_body
from tests.helpers import CLOUD, TEST_TOKEN, MakeEmulator

ENV_ID = "env_" + "0" * 31 + "1"
LIMITED = {"type": "limited", "allowed_hosts": ["a.example"]}


def env(**fields: Any) -> dict[str, Any]:
    """An environment as a server answers it (the newest docs' normal form)."""
    return {
        "id": ENV_ID,
        "name": "team-a",
        "description": "",
        "config": normal_config(CLOUD),
        "metadata": {},
        "updated_at": "2026-11-29T12:00:00.000000Z",
        **fields,
    }


@pytest.mark.parametrize(
    ("spec", "found"),
    [
        ({"config": CLOUD}, env()),
        ({"config": CLOUD, "description": None, "metadata": None}, env()),
        ({"config": CLOUD}, env(description=None, metadata=None)),
        ({"config": {**CLOUD, "networking": None, "packages": None}}, env()),
        (
            {"config": {**CLOUD, "networking": {"type": "unrestricted"}}},
            env(config=CLOUD),
        ),
        (
            {
                "config": {
                    **CLOUD,
                    "networking": {
                        "type": "limited",
                        "allowed_hosts": ["PyPI.org", "github.com", "pypi.org"],
                        "allow_mcp_servers": None,
                    },
                }
            },
            env(
                config=normal_config(
                    {
                        **CLOUD,
                        "networking": {
                            "type": "limited",
                            "allowed_hosts": ["github.com", "pypi.org"],
                            "allow_package_managers": False,
                            "allow_mcp_servers": False,
                        },
                    }
                )
            ),
        ),
        (
            {"config": {**CLOUD, "packages": {"pip": ["httpx"], "apt": None}}},
            env(config=normal_config({**CLOUD, "packages": {"pip": ["httpx"]}})),
        ),
        (
            {"config": {"type": "self_hosted", "networking": None}},
            env(config={"type": "self_hosted"}),
        ),
        (
            {"config": {**CLOUD, "setup_script": None}, "metadata": {"a": "1"}},
            env(metadata={"a": "1"}),
        ),
    ],
)
def test_an_equal_environment_in_another_spelling_shows_no_drift(spec, found):
    """Defaults filled in, nulls, host case, order and duplicates are not drift."""
    assert drift(spec, found) == []


@pytest.mark.parametrize(
    ("spec", "found", "paths"),
    [
        ({"config": CLOUD, "description": "new"}, env(), ["description"]),
        ({"config": CLOUD}, env(description="old"), ["description"]),
        ({"config": CLOUD, "metadata": {"team": "b"}}, env(), ["metadata.team"]),
        ({"config": CLOUD}, env(metadata={"team": "a"}), ["metadata.team"]),
        (
            {"config": CLOUD, "metadata": {"team": "b", "tier": "1"}},
            env(metadata={"team": "a", "tier": "1"}),
            ["metadata.team"],
        ),
        (
            {"config": {**CLOUD, "networking": {**LIMITED, "allow_mcp_servers": True}}},
            env(config=normal_config({**CLOUD, "networking": LIMITED})),
            ["config.networking.allow_mcp_servers"],
        ),
        (
            {"config": {**CLOUD, "packages": {"pip": ["httpx"]}}},
            env(),
            ["config.packages.pip"],
        ),
        (
            {"config": {**CLOUD, "setup_script": "make"}},
            env(),
            ["config.setup_script"],
        ),
        (
            {"config": {"type": "self_hosted"}},
            env(),
            ["config.networking", "config.packages", "config.type"],
        ),
    ],
)
def test_each_differing_field_is_named_by_its_dotted_path(spec, found, paths):
    """Every field that differs is named, in sorted order, down to the leaf."""
    assert drift(spec, found) == paths


def test_odd_answers_are_compared_without_crashing():
    """A server's odd shapes (a string networking, non-objects, nulls) are drift or not, never an error."""
    spec = {"config": CLOUD, "metadata": {"team": "a"}}
    shorthand = env(
        config={**CLOUD, "networking": "unrestricted"}, metadata={"team": "a"}
    )
    assert drift(spec, shorthand) == []
    assert drift(spec, env(config="cloud", metadata={"team": "a"})) == ["config"]
    odd = {**CLOUD, "networking": ["x"], "packages": "none"}
    assert drift(spec, env(config=odd, metadata={"team": "a"})) == [
        "config.networking",
        "config.packages",
    ]
    assert (
        drift({"config": {"type": "gpu", "size": None}}, env(config={"type": "gpu"}))
        == []
    )
    assert drift(spec, env(metadata=["team"])) == ["metadata"]
    assert update_body(spec, env(metadata=["team"])) == {"metadata": {"team": "a"}}


def test_networking_paths_name_each_changed_sub_field():
    """A networking change names its type and each sub-field that differs."""
    spec = {
        "config": {
            **CLOUD,
            "networking": {"type": "limited", "allowed_hosts": ["a.example"]},
        }
    }
    assert drift(spec, env()) == [
        "config.networking.allow_mcp_servers",
        "config.networking.allow_package_managers",
        "config.networking.allowed_hosts",
        "config.networking.type",
    ]


def test_the_update_holds_only_the_drifted_fields():
    """A metadata-only drift sends only a metadata patch."""
    spec = {"config": CLOUD, "description": "", "metadata": {"team": "b"}}
    assert update_body(spec, env(metadata={"team": "a"})) == {"metadata": {"team": "b"}}


def test_the_update_removes_metadata_keys_the_spec_no_longer_has():
    """Keys gone from the spec are sent as null (the API's patch rule); equal keys are not sent."""
    spec = {"config": CLOUD, "metadata": {"team": "a", "tier": "2"}}
    found = env(metadata={"team": "a", "tier": "1", "old": "x"})
    assert update_body(spec, found) == {"metadata": {"tier": "2", "old": None}}


def test_the_update_sends_the_whole_config_as_written_and_clears_a_description():
    """A config drift sends the spec's config unchanged; a description the spec lacks becomes ""."""
    config = {**CLOUD, "packages": {"pip": ["httpx"]}}
    spec = {"config": config}
    assert update_body(spec, env(description="old")) == {
        "description": "",
        "config": config,
    }


def test_no_drift_means_an_empty_update():
    """An environment that matches needs no update at all."""
    assert update_body({"config": CLOUD}, env()) == {}


def test_the_update_key_is_stable_for_one_update_and_new_for_a_changed_environment():
    """Retries of one update share a key; the same body sent to a changed environment does not."""
    body = {"description": "b"}
    key = update_key(env(), body)
    assert key == update_key(env(), dict(body))
    assert key != update_key(env(updated_at="2026-11-29T13:00:00.000000Z"), body)
    assert key != update_key(env(), {"description": "c"})
    assert key != update_key(env(id="env_" + "0" * 31 + "2"), body)
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", key
    )


# --- over real HTTP ----------------------------------------------------------

SPECS: list[dict[str, Any]] = [
    {"name": "bare", "config": CLOUD},
    {
        "name": "limited",
        "description": "hosts in any case and order",
        "config": {
            **CLOUD,
            "networking": {
                "type": "limited",
                "allowed_hosts": ["PyPI.org", "github.com", "pypi.org"],
                "allow_package_managers": True,
            },
            "packages": {"pip": ["httpx"], "npm": None},
            "setup_script": "make setup",
        },
        "metadata": {"team": "a", "tier": "1"},
    },
    {
        "name": "allowlist",
        "config": {
            **CLOUD,
            "networking": {"type": "allowlist", "allowed_hosts": ["Example.com"]},
        },
        "description": None,
        "metadata": None,
    },
    {
        "name": "unrestricted",
        "config": {**CLOUD, "networking": {"type": "unrestricted"}},
    },
    {"name": "self-hosted", "config": {"type": "self_hosted", "packages": None}},
]

Connect = Callable[[Emulator], ApiClient]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Factory: an ApiClient on one session, for any emulator of the test."""
    async with open_session(concurrency=2, timeout_s=5) as session:

        def make(emulator: Emulator) -> ApiClient:
            settings = ApiSettings(token=Secret(TEST_TOKEN), base_url=emulator.url)
            return ApiClient(session, settings=settings)

        yield make


def test_the_http_specs_are_valid():
    """The specs used over HTTP are valid job-file specs."""
    assert [validate_body(spec) for spec in SPECS] == [[]] * len(SPECS)


@pytest.mark.parametrize("echo", ["as-sent", "normalized"])
async def test_an_environment_created_from_a_spec_shows_no_drift(
    make_emulator: MakeEmulator, connect: Connect, echo: str
):
    """Whichever way the server echoes a config, what it made from a spec equals that spec."""
    client = connect(await make_emulator(config_echo=echo))
    for spec in SPECS:
        created = await client.create(spec, idempotency_key=spec_key(spec))
        assert drift(spec, created.environment) == [], spec["name"]
    listed = {e["name"]: e async for e in client.iter_environments()}
    for spec in SPECS:
        assert drift(spec, listed[spec["name"]]) == [], spec["name"]
        assert drift(spec, await client.get(listed[spec["name"]]["id"])) == []


@pytest.mark.parametrize("echo", ["as-sent", "normalized"])
async def test_the_update_from_a_drift_makes_the_environment_match(
    make_emulator: MakeEmulator, connect: Connect, echo: str
):
    """After update_body is sent, the environment equals the edited spec (keys removed too)."""
    client = connect(await make_emulator(config_echo=echo))
    old = SPECS[1]
    created = await client.create(old, idempotency_key=spec_key(old))
    new = {
        **old,
        "description": "edited",
        "config": {
            **CLOUD,
            "networking": {"type": "limited", "allowed_hosts": ["A.example"]},
        },
        "metadata": {"team": "b"},
    }
    found = created.environment
    assert drift(new, found) == [
        "config.networking.allow_package_managers",
        "config.networking.allowed_hosts",
        "config.packages.pip",
        "config.setup_script",
        "description",
        "metadata.team",
        "metadata.tier",
    ]
    body = update_body(new, found)
    updated = await client.update(
        created.env_id, body, idempotency_key=update_key(found, body)
    )
    assert updated.environment["id"] == created.env_id
    assert updated.environment["metadata"] == {"team": "b"}
    assert drift(new, updated.environment) == []
    assert drift(new, await client.get(created.env_id)) == []
