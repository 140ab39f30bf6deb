"""Create and update bodies: every validation rule, and both config echoes, over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Caller, MakeEmulator, assert_error, create

HOSTS = "config.networking.allowed_hosts"
ALLOWLIST = "required, with at least one host, when networking.type is allowlist"


@pytest.fixture
async def normalized(make_emulator: MakeEmulator, api: Caller) -> Caller:
    """Raw HTTP calls to an emulator that echoes configs normalised (the newest docs)."""
    return Caller(api.session, await make_emulator(config_echo="normalized"))


def body(**fields: Any) -> dict[str, Any]:
    """A valid create body with ``fields`` replaced (a value of ... removes the key)."""
    base: dict[str, Any] = {"name": "env", "config": {"type": "cloud"}}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def cloud(**fields: Any) -> dict[str, Any]:
    return body(config={"type": "cloud", **fields})


def limited(**fields: Any) -> dict[str, Any]:
    return cloud(networking={"type": "limited", **fields})


REJECTED = [
    # top level
    (body(extra=1), "extra", "unknown field"),
    (body(name=...), "name", "field required"),
    (body(name=5), "name", "expected a string, got number"),
    (body(name=None), "name", "expected a string, got null"),
    (body(name="   "), "name", "must not be empty"),
    (body(name=""), "name", "must not be empty"),
    (body(name="x" * 256), "name", "must be at most 255 characters, got 256"),
    (body(name="tab\there"), "name", "must not contain control characters"),
    (body(name="nul\x00"), "name", "must not contain control characters"),
    (body(name="a\u202eb"), "name", "must not contain bidirectional control"),
    (body(description=3), "description", "expected a string, got number"),
    (body(config=...), "config", "field required"),
    (body(config=None), "config", "expected an object, got null"),
    (body(config="cloud"), "config", "expected an object, got string"),
    (body(scope="team"), "scope", "must be one of organization, account"),
    # config
    (body(config={}), "config.type", "field required"),
    (
        body(config={"type": "managed"}),
        "config.type",
        "must be one of cloud, self_hosted",
    ),
    (cloud(image="x"), "config.image", "unknown field"),
    (
        body(config={"type": "self_hosted", "networking": {"type": "unrestricted"}}),
        "config.networking",
        "not allowed when config.type is self_hosted",
    ),
    # networking
    (
        cloud(networking="unrestricted"),
        "config.networking",
        "expected an object, got string",
    ),
    (cloud(networking={}), "config.networking.type", "field required"),
    (cloud(networking={"type": "open"}), "config.networking.type", "must be one of"),
    (
        cloud(networking={"type": "unrestricted", "allowed_hosts": []}),
        "config.networking.allowed_hosts",
        "not allowed when networking.type is unrestricted",
    ),
    (limited(allowed_domains=[]), "config.networking.allowed_domains", "unknown field"),
    (cloud(networking={"type": "allowlist"}), HOSTS, ALLOWLIST),
    (cloud(networking={"type": "allowlist", "allowed_hosts": []}), HOSTS, ALLOWLIST),
    (cloud(networking={"type": "allowlist", "allowed_hosts": None}), HOSTS, ALLOWLIST),
    (limited(allowed_hosts="a.com"), HOSTS, "expected an array, got string"),
    (limited(allowed_hosts=[f"h{i}.com" for i in range(257)]), HOSTS, "at most 256"),
    (limited(allowed_hosts=[1]), f"{HOSTS}.0", "expected a string, got number"),
    (limited(allowed_hosts=["ok.com", "https://a.com"]), f"{HOSTS}.1", "bare hostname"),
    (limited(allowed_hosts=["a.com:443"]), f"{HOSTS}.0", "bare hostname"),
    (limited(allowed_hosts=["a.com/path"]), f"{HOSTS}.0", "bare hostname"),
    (limited(allowed_hosts=["a .com"]), f"{HOSTS}.0", "bare hostname"),
    (limited(allowed_hosts=[""]), f"{HOSTS}.0", "bare hostname"),
    (limited(allowed_hosts=["*"]), f"{HOSTS}.0", "bare hostname"),
    (limited(allowed_hosts=["a.*.com"]), f"{HOSTS}.0", "bare hostname"),
    (limited(allowed_hosts=["-a.com"]), f"{HOSTS}.0", "bare hostname"),
    (
        limited(allow_package_managers="yes"),
        "config.networking.allow_package_managers",
        "expected a boolean, got string",
    ),
    (
        limited(allow_mcp_servers=1),
        "config.networking.allow_mcp_servers",
        "expected a boolean, got number",
    ),
    # packages
    (cloud(packages=["pip"]), "config.packages", "expected an object, got array"),
    (cloud(packages={"type": "pkgs"}), "config.packages.type", 'must be "packages"'),
    (cloud(packages={"brew": []}), "config.packages.brew", "unknown field"),
    (cloud(packages={"pip": "requests"}), "config.packages.pip", "expected an array"),
    (cloud(packages={"pip": ["x"] * 201}), "config.packages.pip", "at most 200"),
    (cloud(packages={"npm": [""]}), "config.packages.npm.0", "must not be empty"),
    (cloud(packages={"apt": ["a" * 257]}), "config.packages.apt.0", "at most 256"),
    (
        cloud(packages={"pip": ["ok", "two words"]}),
        "config.packages.pip.1",
        "whitespace",
    ),
    (cloud(packages={"pip": ["x\x07"]}), "config.packages.pip.0", "control"),
    (
        cloud(packages={"pip": ["--index-url=x"]}),
        "config.packages.pip.0",
        "must not start with '-'",
    ),
    (cloud(packages={"go": [3]}), "config.packages.go.0", "expected a string"),
    # setup_script
    (
        cloud(setup_script=["echo"]),
        "config.setup_script",
        "expected a string, got array",
    ),
    (cloud(setup_script="x" * 65537), "config.setup_script", "at most 65536 bytes"),
    (cloud(setup_script="é" * 32769), "config.setup_script", "got 65538"),
    # metadata
    (body(metadata=[]), "metadata", "expected an object, got array"),
    (body(metadata={f"k{i}": "v" for i in range(17)}), "metadata", "at most 16 keys"),
    (body(metadata={"": "v"}), "metadata", "keys must be 1 to 64 characters"),
    (
        body(metadata={"k" * 65: "v"}),
        "metadata." + "k" * 65,
        "keys must be 1 to 64 characters",
    ),
    (body(metadata={"team": 1}), "metadata.team", "expected a string, got number"),
    (body(metadata={"team": None}), "metadata.team", "expected a string, got null"),
    (body(metadata={"team": "x" * 513}), "metadata.team", "at most 512 characters"),
]


@pytest.mark.parametrize(
    ("sent", "param", "reason"), REJECTED, ids=[r[1] + ":" + r[2] for r in REJECTED]
)
async def test_an_invalid_create_body_is_400_naming_the_field(
    api, emulator, sent, param, reason
):
    """Each broken rule is 400 invalid_request_error: ``param`` and message name the field."""
    answer = await api("POST", "/environments", json=sent)
    error = assert_error(answer, 400, "invalid_request_error", param)
    assert error["message"].startswith(f"{param}: ")
    assert reason in error["message"]
    assert emulator.creation_counts() == {}


async def test_only_the_first_failure_is_reported(api):
    """With several broken fields the first in check order (name before config) is named."""
    answer = await api(
        "POST", "/environments", json={"name": "", "config": "x", "metadata": []}
    )
    assert_error(answer, 400, "invalid_request_error", "name")


@pytest.mark.parametrize("kind", ["limited", "allowlist", "allowed_hosts"])
async def test_every_allowlist_spelling_is_echoed_exactly_as_sent(api, kind):
    """By default (the seed) a config is echoed as sent: hosts unsorted, no defaults added."""
    sent = {
        "type": kind,
        "allowed_hosts": ["Pypi.org", "*.Example.com", "pypi.org", "a.io"],
    }
    config = {"type": "cloud", "networking": sent, "packages": {"apt": ["curl"]}}
    env = await create(api, "n", config=config)
    assert env["config"] == config


@pytest.mark.parametrize("kind", ["limited", "allowlist", "allowed_hosts"])
async def test_every_allowlist_spelling_is_kept_as_sent_and_filled_in(normalized, kind):
    """limited, allowlist and allowed_hosts are accepted and echoed with their defaults."""
    sent = {
        "type": kind,
        "allowed_hosts": ["Pypi.org", "*.Example.com", "pypi.org", "a.io"],
    }
    env = await create(normalized, "n", config={"type": "cloud", "networking": sent})
    assert env["config"]["networking"] == {
        "type": kind,
        "allowed_hosts": ["*.example.com", "a.io", "pypi.org"],
        "allow_package_managers": False,
        "allow_mcp_servers": False,
    }


async def test_limited_networking_keeps_its_flags(normalized):
    """allow_package_managers and allow_mcp_servers are echoed as sent."""
    sent = {
        "type": "limited",
        "allow_package_managers": True,
        "allow_mcp_servers": True,
    }
    env = await create(normalized, "n", config={"type": "cloud", "networking": sent})
    assert env["config"]["networking"] == {
        "type": "limited",
        "allowed_hosts": [],
        "allow_package_managers": True,
        "allow_mcp_servers": True,
    }


async def test_packages_are_filled_in_and_kept_in_order(normalized):
    """Missing managers are echoed as [] and listed packages keep their order."""
    packages = {
        "type": "packages",
        "pip": ["zeta", "alpha==1.0"],
        "apt": ["git"],
        "cargo": None,
    }
    env = await create(normalized, "n", config={"type": "cloud", "packages": packages})
    assert env["config"]["packages"] == {
        "type": "packages",
        "apt": ["git"],
        "cargo": [],
        "gem": [],
        "go": [],
        "npm": [],
        "pip": ["zeta", "alpha==1.0"],
    }


async def test_self_hosted_config_is_echoed_bare(normalized):
    """A self_hosted config is stored as ``{"type": "self_hosted"}``."""
    env = await create(
        normalized, "n", config={"type": "self_hosted", "networking": None}
    )
    assert env["config"] == {"type": "self_hosted"}


async def test_limits_are_inclusive(api):
    """A 255-char name, 256 hosts, 200 packages, 64 KiB script and 16 keys are accepted."""
    config = {
        "type": "cloud",
        "networking": {
            "type": "limited",
            "allowed_hosts": [f"h{i}.com" for i in range(256)],
        },
        "packages": {"npm": [f"p{i}" for i in range(199)] + ["x" * 256]},
        "setup_script": "é" * 32768,
    }
    metadata = {"k" * 64: "v" * 512, **{f"k{i}": "" for i in range(15)}}
    env = await create(api, "n" * 255, config=config, metadata=metadata)
    assert len(env["config"]["networking"]["allowed_hosts"]) == 256
    assert env["config"]["setup_script"] == "é" * 32768
    assert env["metadata"] == metadata


NULL_CONFIGS = [
    {"type": "cloud", "networking": None, "packages": None, "setup_script": None},
    {
        "type": "cloud",
        "networking": {
            "type": "limited",
            "allowed_hosts": None,
            "allow_package_managers": None,
            "allow_mcp_servers": None,
        },
        "packages": {"type": None, "apt": None, "pip": ["x"]},
    },
    {
        "type": "cloud",
        "networking": {
            "type": "unrestricted",
            "allowed_hosts": None,
            "allow_package_managers": None,
        },
    },
]


@pytest.mark.parametrize("config", NULL_CONFIGS)
async def test_optional_fields_may_be_null(api, normalized, config):
    """Null in any optional field means absent: echoed as sent, or filled in when normalised."""
    env = await create(
        api, "n", description=None, config=config, metadata=None, scope=None
    )
    assert env["description"] == ""
    assert env["metadata"] == {}
    assert env["config"] == config
    assert "scope" not in env
    filled = (await create(normalized, "n", config=config))["config"]
    assert filled["networking"]["type"] == (config["networking"] or {}).get(
        "type", "unrestricted"
    )
    assert filled["networking"].get("allowed_hosts", []) == []
    assert filled["packages"]["apt"] == []
    assert "setup_script" not in filled


async def test_description_scope_and_names_are_kept_as_sent(api):
    """description, scope and a name with spaces and unicode are echoed unchanged."""
    env = await create(api, " Équipe 日本 ", description="d", scope="account")
    assert env["name"] == " Équipe 日本 "
    assert env["description"] == "d"
    assert env["scope"] == "account"


UPDATE_REJECTED = [
    ({"name": ""}, "name"),
    ({"config": {"type": "cloud", "networking": {"type": "allowlist"}}}, HOSTS),
    ({"name": None}, "name"),
    ({"config": None}, "config"),
    ({"config": {"type": "cloud", "networking": "limited"}}, "config.networking"),
    ({"metadata": {"a": 1}}, "metadata.a"),
    ({"metadata": "x"}, "metadata"),
    ({"description": []}, "description"),
    ({"unknown": 1}, "unknown"),
]


@pytest.mark.parametrize(
    ("sent", "param"), UPDATE_REJECTED, ids=[r[1] for r in UPDATE_REJECTED]
)
async def test_an_invalid_update_is_400_and_changes_nothing(api, sent, param):
    """Update applies the create rules to the fields it sends; a failure changes nothing."""
    env = await create(api, "n", metadata={"a": "1"})
    answer = await api("POST", f"/environments/{env['id']}", json=sent)
    assert_error(answer, 400, "invalid_request_error", param)
    assert (await api("GET", f"/environments/{env['id']}")).json() == env


async def test_update_config_is_validated_and_normalised_as_on_create(normalized):
    """A config sent to update is normalised like a created one."""
    env = await create(normalized, "n")
    config = {
        "type": "cloud",
        "networking": {"type": "allowlist", "allowed_hosts": ["B.io", "b.io"]},
    }
    answer = await normalized(
        "PUT", f"/environments/{env['id']}", json={"config": config}
    )
    assert answer.json()["config"]["networking"]["allowed_hosts"] == ["b.io"]
    assert answer.json()["config"]["packages"]["pip"] == []


async def test_update_description_null_sets_it_empty(api):
    """``description: null`` on update stores the empty string."""
    env = await create(api, "n", description="d")
    answer = await api("POST", f"/environments/{env['id']}", json={"description": None})
    assert answer.json()["description"] == ""
