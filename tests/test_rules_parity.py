"""One table of create-body rules, held against both local validation and the emulator.

Each row is a body that is valid, or breaks exactly one rule. ``validate_body`` and the
emulator (over real HTTP, under both config echoes) must agree on whether it is valid and,
when it is not, on the one field at fault.
"""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.spec import validate_body
from tests.helpers import Caller

HOSTS = "config.networking.allowed_hosts"
# 254 characters in labels of at most 63: one over the hostname limit.
LONG_HOST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])


def body(**fields: Any) -> dict[str, Any]:
    """A valid body with top-level ``fields`` replaced (a value of ... drops the key)."""
    base: dict[str, Any] = {"name": "env", "config": {"type": "cloud"}}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def cloud(**config: Any) -> dict[str, Any]:
    return body(config={"type": "cloud", **config})


def net(kind: object, **networking: Any) -> dict[str, Any]:
    return cloud(networking={"type": kind, **networking})


def pkgs(**packages: Any) -> dict[str, Any]:
    return cloud(packages=packages)


# (id, body, the field at fault or None when the body is valid)
RULES: list[tuple[str, object, str | None]] = [
    # the seed's own example, and every field at once
    (
        "seed-example",
        cloud(networking={"type": "limited"}, packages={"apt": ["curl"]}),
        None,
    ),
    ("minimal", body(), None),
    ("self-hosted", body(config={"type": "self_hosted"}), None),
    ("account-scope", body(scope="account", description="d"), None),
    # null means absent, for every optional field
    ("null-description", body(description=None), None),
    ("null-metadata", body(metadata=None), None),
    ("null-scope", body(scope=None), None),
    ("null-networking", cloud(networking=None), None),
    ("null-packages", cloud(packages=None), None),
    ("null-setup-script", cloud(setup_script=None), None),
    ("null-package-list", pkgs(pip=None, apt=["git"]), None),
    ("null-packages-type", pkgs(type=None), None),
    ("null-hosts-limited", net("limited", allowed_hosts=None), None),
    ("null-flags", net("limited", allow_package_managers=None), None),
    ("null-mcp-flag", net("limited", allow_mcp_servers=None), None),
    ("null-unrestricted-hosts", net("unrestricted", allowed_hosts=None), None),
    (
        "null-self-hosted-fields",
        body(config={"type": "self_hosted", "networking": None, "setup_script": None}),
        None,
    ),
    # ... but not for a required field, a type tag, or a metadata value
    ("null-name", body(name=None), "name"),
    ("null-config", body(config=None), "config"),
    ("null-config-type", body(config={"type": None}), "config.type"),
    ("null-networking-type", net(None), "config.networking.type"),
    ("null-metadata-value", body(metadata={"team": None}), "metadata.team"),
    ("null-package", pkgs(pip=[None]), "config.packages.pip.0"),
    ("null-host", net("limited", allowed_hosts=[None]), f"{HOSTS}.0"),
    # networking types and allowed_hosts
    ("limited-no-hosts", net("limited"), None),
    ("limited-empty-hosts", net("limited", allowed_hosts=[]), None),
    ("allowed-hosts-no-hosts", net("allowed_hosts"), None),
    ("allowlist-with-hosts", net("allowlist", allowed_hosts=["a.io"]), None),
    ("allowlist-without-hosts", net("allowlist"), HOSTS),
    ("allowlist-empty-hosts", net("allowlist", allowed_hosts=[]), HOSTS),
    ("allowlist-null-hosts", net("allowlist", allowed_hosts=None), HOSTS),
    ("allowlist-bad-host", net("allowlist", allowed_hosts=["a.io/x"]), f"{HOSTS}.0"),
    ("wrong-networking-type", net("open"), "config.networking.type"),
    ("number-networking-type", net(1), "config.networking.type"),
    ("no-networking-type", cloud(networking={}), "config.networking.type"),
    ("networking-shorthand", cloud(networking="unrestricted"), "config.networking"),
    ("unrestricted-with-hosts", net("unrestricted", allowed_hosts=[]), HOSTS),
    (
        "unrestricted-with-flag",
        net("unrestricted", allow_mcp_servers=False),
        "config.networking.allow_mcp_servers",
    ),
    ("unknown-networking-key", net("limited", hosts=[]), "config.networking.hosts"),
    ("hosts-not-a-list", net("limited", allowed_hosts="a.io"), HOSTS),
    (
        "257-hosts",
        net("limited", allowed_hosts=[f"h{i}.io" for i in range(257)]),
        HOSTS,
    ),
    ("256-hosts", net("limited", allowed_hosts=[f"h{i}.io" for i in range(256)]), None),
    ("host-scheme", net("limited", allowed_hosts=["https://a.io"]), f"{HOSTS}.0"),
    ("host-port", net("limited", allowed_hosts=["a.io:443"]), f"{HOSTS}.0"),
    ("host-inner-star", net("limited", allowed_hosts=["a.*.io"]), f"{HOSTS}.0"),
    (
        "host-mixed-case",
        net("limited", allowed_hosts=["PyPI.org", "*.GitHub.com"]),
        None,
    ),
    ("host-253-chars", net("limited", allowed_hosts=[LONG_HOST[:253]]), None),
    ("host-254-chars", net("limited", allowed_hosts=[LONG_HOST]), f"{HOSTS}.0"),
    (
        "wildcard-253-chars",
        net("limited", allowed_hosts=["*." + LONG_HOST[:253]]),
        None,
    ),
    (
        "flag-not-boolean",
        net("limited", allow_package_managers="true"),
        "config.networking.allow_package_managers",
    ),
    # config
    ("no-config", body(config=...), "config"),
    ("config-not-object", body(config="cloud"), "config"),
    ("no-config-type", body(config={}), "config.type"),
    ("wrong-config-type", body(config={"type": "managed"}), "config.type"),
    ("number-config-type", body(config={"type": 1}), "config.type"),
    ("unknown-config-key", cloud(image="x"), "config.image"),
    (
        "self-hosted-networking",
        body(config={"type": "self_hosted", "networking": {"type": "unrestricted"}}),
        "config.networking",
    ),
    ("script-64-KiB", cloud(setup_script="é" * 32_768), None),
    ("script-too-long", cloud(setup_script="é" * 32_769), "config.setup_script"),
    ("script-not-string", cloud(setup_script=["echo"]), "config.setup_script"),
    # packages
    ("every-manager", pkgs(type="packages", apt=["a"], cargo=["c"], gem=["g"]), None),
    ("packages-not-object", cloud(packages=["git"]), "config.packages"),
    ("packages-wrong-type", pkgs(type="apt"), "config.packages.type"),
    ("unknown-manager", pkgs(brew=[]), "config.packages.brew"),
    ("package-list-string", pkgs(pip="requests"), "config.packages.pip"),
    ("201-packages", pkgs(npm=["x"] * 201), "config.packages.npm"),
    ("empty-package", pkgs(gem=[""]), "config.packages.gem.0"),
    ("package-space", pkgs(pip=["ok", "flask >=3"]), "config.packages.pip.1"),
    ("package-option", pkgs(pip=["--index-url=x"]), "config.packages.pip.0"),
    ("package-257-chars", pkgs(apt=["a" * 257]), "config.packages.apt.0"),
    # name
    ("no-name", body(name=...), "name"),
    ("empty-name", body(name=""), "name"),
    ("blank-name", body(name=" \t "), "name"),
    ("255-char-name", body(name="n" * 255), None),
    ("256-char-name", body(name="n" * 256), "name"),
    ("control-in-name", body(name="a\x1bb"), "name"),
    ("bidi-in-name", body(name="invoice-\u202efdp.exe"), "name"),
    ("zero-width-joiner-in-name", body(name="a\u200db"), None),
    ("number-name", body(name=7), "name"),
    # description, metadata, scope, the top level
    ("number-description", body(description=1), "description"),
    ("metadata-not-object", body(metadata=[]), "metadata"),
    ("16-metadata-keys", body(metadata={f"k{i}": "v" for i in range(16)}), None),
    ("17-metadata-keys", body(metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
    ("empty-metadata-key", body(metadata={"": "v"}), "metadata"),
    ("long-metadata-key", body(metadata={"k" * 65: "v"}), "metadata." + "k" * 65),
    ("long-metadata-value", body(metadata={"n": "x" * 513}), "metadata.n"),
    ("number-metadata-value", body(metadata={"n": 1}), "metadata.n"),
    ("wrong-scope", body(scope="world"), "scope"),
    ("unknown-top-level-key", body(metdata={}), "metdata"),
    ("body-not-object", [], ""),
]


def local_fields(sent: object) -> list[str]:
    """The fields ``validate_body`` names, in its order."""
    return [error.field for error in validate_body(sent)]


@pytest.mark.parametrize("echo", ["as-sent", "normalized"])
@pytest.mark.parametrize(
    ("sent", "field"), [row[1:] for row in RULES], ids=[row[0] for row in RULES]
)
async def test_local_validation_and_the_emulator_apply_one_set_of_rules(
    make_emulator, api, sent, field, echo
):
    """Each body is valid for both or refused by both, naming the same field."""
    emu = await make_emulator(unique_names=False, config_echo=echo)
    answer = await Caller(api.session, emu)("POST", "/environments", json=sent)
    if field is None:
        assert local_fields(sent) == []
        assert answer.status == 201, answer.body
        return
    assert local_fields(sent) == [field]
    assert answer.status == 400, answer.body
    assert answer.json()["error"].get("param", "") == field


def test_the_table_has_no_duplicate_rows():
    """Each row of the table is a different case."""
    assert len({row[0] for row in RULES}) == len(RULES)
