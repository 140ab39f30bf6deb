"""The create body's rules, their error messages, and the stable spec key."""

from __future__ import annotations

import copy
import hashlib
import re
import uuid
from typing import Any

import orjson
import pytest

from provisioner.spec import (
    ALLOWLIST_REASON,
    BIDI_REASON,
    MAX_BODY_BYTES,
    canonical_json,
    check_size,
    key_from_json,
    spec_key,
    validate_body,
)

HOST_REASON = "must be a bare hostname or *.domain, without scheme, port or path"
HOSTS = "config.networking.allowed_hosts"
# 254 characters in labels of at most 63: one over the hostname limit.
LONG_HOST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])
NETWORKING_TYPES = "must be one of: unrestricted, limited, allowlist, allowed_hosts"


def body(**changes: Any) -> dict[str, Any]:
    """A minimal valid body, with top-level keys replaced (``None`` values kept)."""
    base: dict[str, Any] = {"name": "team-a", "config": {"type": "cloud"}}
    base.update(changes)
    return base


def cloud(**config: Any) -> dict[str, Any]:
    """A valid body whose cloud config holds ``config``."""
    return body(config={"type": "cloud", **config})


def limited(**networking: Any) -> dict[str, Any]:
    return cloud(networking={"type": "limited", **networking})


def errors_of(spec: object) -> list[tuple[str, str]]:
    return [(e.field, e.reason) for e in validate_body(spec)]


FULL: dict[str, Any] = {
    "name": "payments-dev",
    "description": "Payments sandbox",
    "config": {
        "type": "cloud",
        "networking": {
            "type": "limited",
            "allowed_hosts": ["api.github.com", "*.pypi.org", "10.0.0.1"],
            "allow_package_managers": True,
            "allow_mcp_servers": False,
        },
        "packages": {
            "type": "packages",
            "apt": ["git"],
            "pip": ["requests==2.32.3", "pytest>=8"],
            "npm": ["@scope/pkg@1.2.3"],
            "cargo": ["ripgrep"],
            "gem": ["bundler"],
            "go": ["golang.org/x/tools/gopls@latest"],
        },
        "setup_script": "#!/bin/bash\necho ready\n",
    },
    "metadata": {"team": "payments", "owner": "alice"},
    "scope": "account",
}


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(FULL, id="every-field"),
        pytest.param(body(), id="minimal"),
        pytest.param(body(description=None), id="null-description"),
        pytest.param(body(description=""), id="empty-description"),
        pytest.param(body(config={"type": "self_hosted"}), id="self-hosted"),
        pytest.param(cloud(networking={"type": "unrestricted"}), id="unrestricted"),
        pytest.param(limited(), id="limited-no-hosts"),
        pytest.param(
            cloud(networking={"type": "allowlist", "allowed_hosts": ["a.io"]}),
            id="allowlist",
        ),
        pytest.param(
            cloud(networking={"type": "allowed_hosts", "allowed_hosts": ["a.io"]}),
            id="allowed-hosts-spelling",
        ),
        pytest.param(limited(allowed_hosts=["h.example.com"] * 256), id="256-hosts"),
        pytest.param(cloud(packages={}), id="empty-packages"),
        pytest.param(cloud(packages={"pip": ["p"] * 200}), id="200-packages"),
        pytest.param(cloud(packages={"apt": ["a" * 256]}), id="256-char-package"),
        pytest.param(cloud(setup_script="x" * 65_536), id="64-KiB-script"),
        pytest.param(cloud(setup_script="é" * 32_768), id="64-KiB-of-utf8"),
        pytest.param(body(metadata={}), id="empty-metadata"),
        pytest.param(
            body(metadata={f"k{i}": "v" for i in range(16)}), id="16-metadata-keys"
        ),
        pytest.param(body(metadata={"k" * 64: "v" * 512}), id="longest-metadata"),
        pytest.param(body(metadata={"ключ": "значение"}), id="unicode-metadata"),
        pytest.param(body(name="n" * 255), id="255-char-name"),
        pytest.param(body(name=" padded name "), id="name-with-spaces"),
        pytest.param(body(scope="organization"), id="organization-scope"),
        pytest.param(
            limited(allowed_hosts=["*." + LONG_HOST[:253]]), id="253-char-wildcard"
        ),
    ],
)
def test_valid_bodies_have_no_errors(spec: dict[str, Any]) -> None:
    """A body that keeps every rule validates with no errors."""
    assert validate_body(spec) == []


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        # the body and its top-level keys
        pytest.param([], "", "expected an object, got list", id="body-list"),
        pytest.param("x", "", "expected an object, got string", id="body-string"),
        pytest.param(None, "", "expected an object, got null", id="body-null"),
        pytest.param(body(metdata={}), "metdata", "unknown field", id="typo"),
        pytest.param(body(id="env_1"), "id", "unknown field", id="unknown-key"),
        # name
        pytest.param(
            {"config": {"type": "cloud"}}, "name", "field required", id="no-name"
        ),
        pytest.param(body(name=""), "name", "must not be empty", id="empty-name"),
        pytest.param(body(name=" \t "), "name", "must not be empty", id="blank-name"),
        pytest.param(
            body(name="n" * 256),
            "name",
            "at most 255 characters (got 256)",
            id="long-name",
        ),
        pytest.param(
            body(name="a\nb"),
            "name",
            "must not contain control characters",
            id="newline",
        ),
        pytest.param(
            body(name="a\x7fb"), "name", "must not contain control characters", id="del"
        ),
        pytest.param(
            body(name=7), "name", "expected a string, got number", id="number"
        ),
        pytest.param(
            body(name=True), "name", "expected a string, got boolean", id="bool"
        ),
        pytest.param(
            body(name="a\ud800"),
            "name",
            "not valid Unicode text (a lone surrogate)",
            id="lone-surrogate",
        ),
        # description
        pytest.param(
            body(description=1),
            "description",
            "expected a string, got number",
            id="desc",
        ),
        # config
        pytest.param({"name": "a"}, "config", "field required", id="no-config"),
        pytest.param(
            body(config=None),
            "config",
            "expected an object, got null",
            id="null-config",
        ),
        pytest.param(
            body(config="cloud"),
            "config",
            "expected an object, got string",
            id="str-config",
        ),
        pytest.param(body(config={}), "config.type", "field required", id="no-type"),
        pytest.param(
            body(config={"type": "managed"}),
            "config.type",
            "must be one of: cloud, self_hosted",
            id="bad-type",
        ),
        pytest.param(
            body(
                config={"type": "self_hosted", "networking": {"type": "unrestricted"}}
            ),
            "config.networking",
            "not allowed when type is self_hosted",
            id="self-hosted-networking",
        ),
        pytest.param(
            body(config={"type": "self_hosted", "image": "x"}),
            "config.image",
            "unknown field",
            id="self-hosted-unknown",
        ),
        pytest.param(
            cloud(image="x"), "config.image", "unknown field", id="cloud-unknown"
        ),
        # networking
        pytest.param(
            cloud(networking="unrestricted"),
            "config.networking",
            "expected an object, got string",
            id="networking-shorthand",
        ),
        pytest.param(
            cloud(networking={}),
            "config.networking.type",
            "field required",
            id="no-net-type",
        ),
        pytest.param(
            cloud(networking={"type": "open"}),
            "config.networking.type",
            NETWORKING_TYPES,
            id="bad-net-type",
        ),
        pytest.param(
            cloud(networking={"type": 1}),
            "config.networking.type",
            NETWORKING_TYPES,
            id="num-type",
        ),
        pytest.param(
            cloud(networking={"type": "unrestricted", "allowed_hosts": []}),
            "config.networking.allowed_hosts",
            "not allowed when type is unrestricted",
            id="unrestricted-hosts",
        ),
        pytest.param(
            cloud(networking={"type": "unrestricted", "allow_mcp_servers": False}),
            "config.networking.allow_mcp_servers",
            "not allowed when type is unrestricted",
            id="unrestricted-flag",
        ),
        pytest.param(
            cloud(networking={"type": "allowlist"}),
            HOSTS,
            ALLOWLIST_REASON,
            id="allowlist-no-hosts",
        ),
        pytest.param(
            cloud(networking={"type": "allowlist", "allowed_hosts": []}),
            HOSTS,
            ALLOWLIST_REASON,
            id="allowlist-empty-hosts",
        ),
        pytest.param(
            cloud(networking={"type": "allowlist", "allowed_hosts": None}),
            HOSTS,
            ALLOWLIST_REASON,
            id="allowlist-null-hosts",
        ),
        pytest.param(
            limited(allowed_hosts=[LONG_HOST]),
            f"{HOSTS}.0",
            "at most 253 characters (got 254)",
            id="host-too-long",
        ),
        pytest.param(
            limited(allowed_domains=[]),
            "config.networking.allowed_domains",
            "unknown field",
            id="net-unknown",
        ),
        pytest.param(
            limited(allowed_hosts="a.io"),
            "config.networking.allowed_hosts",
            "expected a list, got string",
            id="hosts-string",
        ),
        pytest.param(
            limited(allowed_hosts=["a.io"] * 257),
            "config.networking.allowed_hosts",
            "at most 256 entries (got 257)",
            id="257-hosts",
        ),
        pytest.param(
            limited(allowed_hosts=["a.io", "https://b.io"]),
            "config.networking.allowed_hosts.1",
            HOST_REASON,
            id="host-scheme",
        ),
        pytest.param(
            limited(allowed_hosts=["b.io:443"]),
            "config.networking.allowed_hosts.0",
            HOST_REASON,
            id="host-port",
        ),
        pytest.param(
            limited(allowed_hosts=["b.io/x"]),
            "config.networking.allowed_hosts.0",
            HOST_REASON,
            id="host-path",
        ),
        pytest.param(
            limited(allowed_hosts=["b .io"]),
            "config.networking.allowed_hosts.0",
            HOST_REASON,
            id="host-space",
        ),
        pytest.param(
            limited(allowed_hosts=["*"]),
            "config.networking.allowed_hosts.0",
            HOST_REASON,
            id="host-bare-star",
        ),
        pytest.param(
            limited(allowed_hosts=["a.*.io"]),
            "config.networking.allowed_hosts.0",
            HOST_REASON,
            id="host-inner-star",
        ),
        pytest.param(
            limited(allowed_hosts=[""]),
            "config.networking.allowed_hosts.0",
            HOST_REASON,
            id="host-empty",
        ),
        pytest.param(
            limited(allowed_hosts=[5]),
            "config.networking.allowed_hosts.0",
            "expected a string, got number",
            id="host-number",
        ),
        pytest.param(
            limited(allow_package_managers="true"),
            "config.networking.allow_package_managers",
            "expected a boolean, got string",
            id="bool-string",
        ),
        pytest.param(
            limited(allow_mcp_servers=1),
            "config.networking.allow_mcp_servers",
            "expected a boolean, got number",
            id="bool-number",
        ),
        # packages
        pytest.param(
            cloud(packages=["git"]),
            "config.packages",
            "expected an object, got list",
            id="packages-list",
        ),
        pytest.param(
            cloud(packages={"type": "apt"}),
            "config.packages.type",
            "must be one of: packages",
            id="packages-type",
        ),
        pytest.param(
            cloud(packages={"brew": []}),
            "config.packages.brew",
            "unknown field",
            id="brew",
        ),
        pytest.param(
            cloud(packages={"pip": "requests"}),
            "config.packages.pip",
            "expected a list, got string",
            id="pip-string",
        ),
        pytest.param(
            cloud(packages={"npm": ["x"] * 201}),
            "config.packages.npm",
            "at most 200 entries (got 201)",
            id="201-packages",
        ),
        pytest.param(
            cloud(packages={"pip": ["ok", "ok", "flask >=3"]}),
            "config.packages.pip.2",
            "must not contain whitespace or control characters",
            id="package-space",
        ),
        pytest.param(
            cloud(packages={"apt": ["a\x00"]}),
            "config.packages.apt.0",
            "must not contain whitespace or control characters",
            id="package-control",
        ),
        pytest.param(
            cloud(packages={"pip": ["--index-url=https://evil"]}),
            "config.packages.pip.0",
            "must not start with '-'",
            id="package-option",
        ),
        pytest.param(
            cloud(packages={"gem": [""]}),
            "config.packages.gem.0",
            "must not be empty",
            id="package-empty",
        ),
        pytest.param(
            cloud(packages={"cargo": ["c" * 257]}),
            "config.packages.cargo.0",
            "at most 256 characters (got 257)",
            id="package-long",
        ),
        pytest.param(
            cloud(packages={"go": [None]}),
            "config.packages.go.0",
            "expected a string, got null",
            id="package-null",
        ),
        # setup_script
        pytest.param(
            cloud(setup_script="x" * 65_537),
            "config.setup_script",
            "at most 65536 bytes of UTF-8 (got 65537)",
            id="script-long",
        ),
        pytest.param(
            cloud(setup_script="é" * 32_769),
            "config.setup_script",
            "at most 65536 bytes of UTF-8 (got 65538)",
            id="script-utf8-bytes",
        ),
        pytest.param(
            cloud(setup_script=["echo"]),
            "config.setup_script",
            "expected a string, got list",
            id="script-list",
        ),
        # metadata
        pytest.param(
            body(metadata=[]),
            "metadata",
            "expected an object, got list",
            id="meta-list",
        ),
        pytest.param(
            body(metadata={f"k{i}": "v" for i in range(17)}),
            "metadata",
            "at most 16 keys (got 17)",
            id="meta-17-keys",
        ),
        pytest.param(
            body(metadata={"notes": "x" * 600}),
            "metadata.notes",
            "at most 512 characters (got 600)",
            id="meta-long-value",
        ),
        pytest.param(
            body(metadata={"k" * 65: "v"}),
            "metadata." + "k" * 65,
            "key at most 64 characters (got 65)",
            id="meta-long-key",
        ),
        pytest.param(
            body(metadata={"": "v"}),
            "metadata",
            "key must not be empty",
            id="meta-empty-key",
        ),
        pytest.param(
            body(metadata={"n": 1}),
            "metadata.n",
            "expected a string, got number",
            id="v-num",
        ),
        pytest.param(
            body(metadata={"n": None}),
            "metadata.n",
            "expected a string, got null",
            id="v-null",
        ),
        # scope
        pytest.param(
            body(scope="world"),
            "scope",
            "must be one of: organization, account",
            id="bad-scope",
        ),
    ],
)
def test_each_broken_rule_is_reported_with_its_field(
    spec: object, field: str, reason: str
) -> None:
    """A body that breaks one rule gets exactly that error, at that field."""
    assert errors_of(spec) == [(field, reason)]


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(body(metadata=None), id="metadata"),
        pytest.param(body(scope=None), id="scope"),
        pytest.param(cloud(networking=None), id="networking"),
        pytest.param(cloud(packages=None), id="packages"),
        pytest.param(cloud(setup_script=None), id="setup-script"),
        pytest.param(cloud(packages={"pip": None, "apt": ["git"]}), id="package-list"),
        pytest.param(cloud(packages={"type": None}), id="packages-type"),
        pytest.param(limited(allowed_hosts=None), id="allowed-hosts"),
        pytest.param(
            limited(allow_package_managers=None, allow_mcp_servers=None), id="flags"
        ),
        pytest.param(
            cloud(networking={"type": "unrestricted", "allowed_hosts": None}),
            id="unrestricted-hosts",
        ),
        pytest.param(
            body(config={"type": "self_hosted", "networking": None, "packages": None}),
            id="self-hosted",
        ),
    ],
)
def test_null_in_an_optional_field_means_absent(spec: dict[str, Any]) -> None:
    """``null`` for an optional field is accepted as "not sent", as the emulator does."""
    assert validate_body(spec) == []


def test_every_error_of_a_body_is_reported_together() -> None:
    """All broken rules of one body are reported, not just the first."""
    spec = {
        "name": "",
        "config": {
            "type": "cloud",
            "networking": {"type": "limited", "allowed_hosts": ["http://a.io"]},
            "packages": {"pip": ["ok", "-e ."]},
        },
        "metadata": {"team": "x" * 513},
        "metdata": {},
    }
    assert errors_of(spec) == [
        ("name", "must not be empty"),
        ("config.networking.allowed_hosts.0", HOST_REASON),
        ("config.packages.pip.1", "must not start with '-'"),
        ("metadata.team", "at most 512 characters (got 513)"),
        ("metdata", "unknown field"),
    ]


def test_errors_carry_no_location() -> None:
    """validate_body leaves the source and line for the caller to fill in."""
    (error,) = validate_body(body(name=""))
    assert (error.source, error.line) == ("", None)
    assert str(error) == "name: must not be empty"


def test_validation_never_changes_the_body() -> None:
    """Checking a body leaves it exactly as written: no defaults are added."""
    spec = copy.deepcopy(FULL)
    validate_body(spec)
    minimal = body()
    validate_body(minimal)
    assert spec == FULL
    assert minimal == {"name": "team-a", "config": {"type": "cloud"}}


def test_spec_key_ignores_key_order() -> None:
    """Two bodies with the same content in another key order share one key."""
    reordered = {
        "scope": FULL["scope"],
        "metadata": dict(reversed(FULL["metadata"].items())),
        "config": dict(reversed(FULL["config"].items())),
        "description": FULL["description"],
        "name": FULL["name"],
    }
    assert spec_key(reordered) == spec_key(FULL)


def test_spec_key_is_the_sha256_of_canonical_json_as_a_uuid() -> None:
    """The key is pinned: SHA-256 of compact, sorted JSON, shaped as a UUIDv8."""
    canonical = b'{"config":{"type":"cloud"},"name":"a"}'
    raw = bytearray(hashlib.sha256(canonical).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    key = spec_key({"name": "a", "config": {"type": "cloud"}})
    assert key == str(uuid.UUID(bytes=bytes(raw)))
    # A later release must keep computing this key, or resumed runs would resend.
    assert key == "e8509a0a-0f48-8075-b060-bc68b32b0f16"


@pytest.mark.parametrize(
    "edited",
    [
        body(name="team-b"),
        body(description=None),
        cloud(networking={"type": "unrestricted"}),
        body(metadata={"team": "a"}),
        body(config={"type": "cloud", "packages": {"pip": []}}),
    ],
)
def test_an_edited_spec_gets_a_new_key(edited: dict[str, Any]) -> None:
    """Any change to the content, even an added null or empty list, changes the key."""
    assert spec_key(edited) != spec_key(body())


def test_spec_key_is_a_uuid_version_8() -> None:
    """The key is a UUID string with version 8 and the RFC 4122 variant."""
    key = spec_key(FULL)
    parsed = uuid.UUID(key)
    assert str(parsed) == key
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", key
    )
    assert parsed.variant == uuid.RFC_4122
    assert parsed.version == 8


@pytest.mark.parametrize(
    "char", [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
)
def test_a_name_with_a_bidirectional_control_is_refused(char: str) -> None:
    """A name holding a bidirectional control (U+202A-U+202E, U+2066-U+2069) is refused: it can read as another name."""
    assert errors_of(body(name=f"invoice-{char}fdp.exe")) == [("name", BIDI_REASON)]
    assert errors_of(body(name=char)) == [("name", BIDI_REASON)]


def test_other_format_characters_in_a_name_are_still_allowed() -> None:
    """Only the bidirectional controls are refused: a zero-width joiner or an LRM mark is kept as before."""
    assert errors_of(body(name="a\u200db\u200e")) == []


def test_the_spec_key_is_the_key_of_the_canonical_json() -> None:
    """spec_key(body) hashes the same bytes canonical_json makes, so the size rule and the key share one serialisation."""
    canonical = canonical_json(FULL)
    assert canonical == orjson.dumps(FULL, option=orjson.OPT_SORT_KEYS)
    assert key_from_json(canonical) == spec_key(FULL)


def test_a_body_over_the_api_limit_is_refused_by_size() -> None:
    """A body whose JSON is over 32 MiB breaks the size rule; one at the limit keeps it."""
    filler = len(canonical_json(body(description="")))
    at_limit = canonical_json(body(description="d" * (MAX_BODY_BYTES - filler)))
    over = canonical_json(body(description="d" * (MAX_BODY_BYTES - filler + 1)))
    assert len(at_limit) == MAX_BODY_BYTES
    assert check_size(at_limit) == []
    (error,) = check_size(over)
    assert (error.field, error.reason) == (
        "",
        f"{MAX_BODY_BYTES + 1:,} bytes of JSON: over the API's body limit of {MAX_BODY_BYTES:,} bytes",
    )
