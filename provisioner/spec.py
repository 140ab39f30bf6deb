"""The create body of an Environment: its rules, its validation and its stable key.

:func:`validate_body` checks one body (the JSON of ``POST /v1/environments``)
against the union of every documented API generation and returns every broken
rule as a :class:`~provisioner.errors.SpecError`. :func:`canonical_json` makes
the one serialisation of a valid body that both the size rule
(:func:`check_size`, the API's body limit) and the idempotency key
(:func:`key_from_json`, or :func:`spec_key` from the body) are computed from.

The rules live in a strict pydantic model (no coercion, unknown keys rejected);
pydantic's errors are translated here into short phrases and dotted field paths
(``config.packages.pip.2``) and never leave this module. Specs are only checked,
never rewritten: callers send the body exactly as written. They are the
emulator's rules too (``tests/test_rules_parity.py`` holds both to one table):
``null`` in an optional field means the field is absent, and an ``allowlist``
network needs at least one of ``allowed_hosts``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, cast

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from provisioner.errors import SpecError

NAME_MAX_CHARS = 255
HOST_MAX_CHARS = 253
HOSTS_MAX = 256
PACKAGES_MAX = 200
PACKAGE_MAX_CHARS = 256
SETUP_SCRIPT_MAX_BYTES = 65_536
METADATA_MAX_KEYS = 16
METADATA_KEY_MAX_CHARS = 64
METADATA_VALUE_MAX_CHARS = 512
# The API's request body limit, the same as the emulator's DEFAULT_MAX_BODY_BYTES
# (provisioner/emulator/config.py; not imported: the emulator is an independent oracle).
MAX_BODY_BYTES = 32 * 1024 * 1024

# Rust-regex patterns (pydantic's default engine): linear time, Unicode classes.
# Bidirectional controls (U+202A-U+202E, U+2066-U+2069) can make a name read as another.
_BIDI = r"\u202A-\u202E\u2066-\u2069"
NAME_PATTERN = rf"^[^\p{{Cc}}{_BIDI}]*[^\s\p{{Cc}}{_BIDI}][^\p{{Cc}}{_BIDI}]*$"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_PATTERN = rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$"
PACKAGE_PATTERN = r"^[^\s\p{Cc}\-][^\s\p{Cc}]*$"

_SCRIPT_SIZE = "at most {limit} bytes of UTF-8 (got {size})"
_HOST_SIZE = "at most {limit} characters (got {size})"
HOST_REASON = "must be a bare hostname or *.domain, without scheme, port or path"
ALLOWLIST_REASON = "required, with at least one host, when type is allowlist"
BIDI_REASON = "must not contain bidirectional control characters (they make a name read as another)"
_BIDI_CHARS = re.compile(f"[{_BIDI}]")

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


def _check_script_size(script: str) -> str:
    # A UTF-8 character takes at most 4 bytes: short scripts need no encoding.
    if len(script) * 4 <= SETUP_SCRIPT_MAX_BYTES:
        return script
    size = len(script.encode("utf-8", "surrogatepass"))
    if size > SETUP_SCRIPT_MAX_BYTES:
        raise PydanticCustomError(
            "spec_rule", _SCRIPT_SIZE, {"limit": SETUP_SCRIPT_MAX_BYTES, "size": size}
        )
    return script


def _check_host_size(host: str) -> str:
    size = len(host.removeprefix("*."))  # the hostname's limit: "*." is not counted
    if size > HOST_MAX_CHARS:
        ctx = {"limit": HOST_MAX_CHARS, "size": size}
        raise PydanticCustomError("spec_rule", _HOST_SIZE, ctx)
    return host


Name = Annotated[
    str, StringConstraints(max_length=NAME_MAX_CHARS, pattern=NAME_PATTERN)
]
Host = Annotated[
    str, StringConstraints(pattern=HOST_PATTERN), AfterValidator(_check_host_size)
]
Package = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=PACKAGE_MAX_CHARS, pattern=PACKAGE_PATTERN
    ),
]
PackageList = Annotated[list[Package], Field(max_length=PACKAGES_MAX)]
SetupScript = Annotated[str, AfterValidator(_check_script_size)]
MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=METADATA_KEY_MAX_CHARS)
]
MetadataValue = Annotated[str, StringConstraints(max_length=METADATA_VALUE_MAX_CHARS)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue], Field(max_length=METADATA_MAX_KEYS)
]


# A field typed ``X | None = None`` is optional and ``null`` means absent; one typed
# ``None`` exists only in another variant (set to anything but null, it is refused).


class UnrestrictedNetworking(BaseModel):
    """``{"type": "unrestricted"}``: any outbound host; nothing else may be set."""

    model_config = _STRICT
    type: Literal["unrestricted"]
    allowed_hosts: None = None
    allow_package_managers: None = None
    allow_mcp_servers: None = None


class LimitedNetworking(BaseModel):
    """An allowlist, under each spelling a doc generation used for it.

    The seed needs ``allowed_hosts`` for (only) its own spelling, ``allowlist``.
    """

    model_config = _STRICT
    type: Literal["limited", "allowlist", "allowed_hosts"]
    allowed_hosts: Annotated[list[Host], Field(max_length=HOSTS_MAX)] | None = Field(
        default=None, validate_default=True
    )
    allow_package_managers: bool | None = None
    allow_mcp_servers: bool | None = None

    @field_validator("allowed_hosts")
    @classmethod
    def _allowlist_has_hosts(
        cls, hosts: list[str] | None, info: ValidationInfo
    ) -> list[str] | None:
        if info.data.get("type") == "allowlist" and not hosts:
            raise PydanticCustomError("spec_rule", ALLOWLIST_REASON)
        return hosts


Networking = Annotated[
    UnrestrictedNetworking | LimitedNetworking, Field(discriminator="type")
]


class Packages(BaseModel):
    """Packages to install, per manager (only apt, pip and npm are installed today)."""

    model_config = _STRICT
    type: Literal["packages"] | None = None
    apt: PackageList | None = None
    pip: PackageList | None = None
    npm: PackageList | None = None
    cargo: PackageList | None = None
    gem: PackageList | None = None
    go: PackageList | None = None


class CloudConfig(BaseModel):
    """A cloud-hosted environment's container."""

    model_config = _STRICT
    type: Literal["cloud"]
    networking: Networking | None = None
    packages: Packages | None = None
    setup_script: SetupScript | None = None


class SelfHostedConfig(BaseModel):
    """A self-hosted environment: the config holds its type and nothing else."""

    model_config = _STRICT
    type: Literal["self_hosted"]
    networking: None = None
    packages: None = None
    setup_script: None = None


Config = Annotated[CloudConfig | SelfHostedConfig, Field(discriminator="type")]


class EnvironmentSpec(BaseModel):
    """The body of ``POST /v1/environments``.

    An optional field that is missing or ``null`` gets the API's default on the
    server; none is ever added here: a spec goes out as written.
    """

    model_config = _STRICT
    name: Name
    description: str | None = None
    config: Config
    metadata: Metadata | None = None
    scope: Literal["organization", "account"] | None = None


_ADAPTER: TypeAdapter[EnvironmentSpec] = TypeAdapter(EnvironmentSpec)

# Paths of the tagged unions: pydantic puts the matched tag into the error
# location right after them (``config.cloud.networking.limited.allowed_hosts``).
_UNION_PATHS: frozenset[tuple[str, ...]] = frozenset(
    {("config",), ("config", "networking")}
)
_VARIANT_FIELDS: dict[tuple[str, ...], frozenset[str]] = {
    ("config",): frozenset(CloudConfig.model_fields),
    ("config", "networking"): frozenset(LimitedNetworking.model_fields),
}
_QUOTED = re.compile(r"'([^']*)'")
_SIZE_NOUNS = {"Dictionary": "keys", "List": "entries"}


def validate_body(body: object) -> list[SpecError]:
    """Check one create body; return every broken rule, or ``[]`` when it is valid.

    The errors carry ``field`` (a dotted path, list items as ``.0``) and
    ``reason``, but no source or line: the caller locates them.
    """
    try:
        _ADAPTER.validate_python(body)
    except ValidationError as exc:
        return [_translate(detail) for detail in exc.errors(include_url=False)]
    return []


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """The body as canonical JSON: orjson, keys sorted at every level, no whitespace.

    Exactly as long as the compact JSON the client sends. ``body`` must be
    JSON-encodable (a valid spec is).

    Raises:
        orjson.JSONEncodeError: ``body`` holds a value JSON cannot carry.
    """
    return orjson.dumps(dict(body), option=orjson.OPT_SORT_KEYS)


def check_size(canonical: bytes) -> list[SpecError]:
    """The body-limit rule on a body's :func:`canonical_json`: ``[]`` when it fits."""
    size = len(canonical)
    if size <= MAX_BODY_BYTES:
        return []
    reason = (
        f"{size:,} bytes of JSON: over the API's body limit of {MAX_BODY_BYTES:,} bytes"
    )
    return [SpecError(reason)]


def spec_key(body: Mapping[str, Any]) -> str:
    """The spec's idempotency key, derived only from the body's content.

    The same as ``key_from_json(canonical_json(body))``.
    """
    return key_from_json(canonical_json(body))


def key_from_json(canonical: bytes) -> str:
    """The idempotency key of a body, from its :func:`canonical_json`.

    The canonical JSON is hashed with SHA-256; the first 16 bytes of the
    digest become a UUID with version nibble 8 and the RFC 4122 variant bits
    (a UUIDv8), so servers that expect a UUID accept it. The same body gives
    the same key in every run (resuming after a crash replays, not duplicates);
    any edit gives a new key.
    """
    digits = hashlib.sha256(canonical).hexdigest()
    # What str(uuid.UUID(bytes=digest[:16])) gives with those bits set, by string
    # slices (a third of building a UUID): nibble 12 is the version, and the top two
    # bits of nibble 16 are the variant (10), so it is one of 8, 9, a, b.
    variant = "89ab"[int(digits[16], 16) & 0x3]
    return (
        f"{digits[:8]}-{digits[8:12]}-8{digits[13:16]}-{variant}{digits[17:20]}-"
        f"{digits[20:32]}"
    )


def _location(source: str, line: int | None, index: int) -> str:
    return f"{source}#{index}" if line is None else f"{source}:{line}"


@dataclass(frozen=True, slots=True)
class Spec:
    """A valid spec, ready to send.

    ``body`` is exactly as written (after a YAML file's defaults merge): never
    re-serialised from the model, never with defaults added. ``key`` is its
    idempotency key (:func:`key_from_json`).
    """

    name: str
    body: dict[str, Any]
    key: str
    source: str
    line: int | None
    index: int

    @property
    def location(self) -> str:
        """``file:line``, or ``file#index`` when the line is unknown."""
        return _location(self.source, self.line, self.index)


@dataclass(frozen=True, slots=True)
class InvalidSpec:
    """A spec that breaks at least one rule; ``errors`` are located."""

    name: str | None
    source: str
    line: int | None
    index: int
    errors: tuple[SpecError, ...]

    @property
    def location(self) -> str:
        """``file:line``, or ``file#index`` when the line is unknown."""
        return _location(self.source, self.line, self.index)

    @property
    def reason(self) -> str:
        """Every broken rule in one line: ``field: reason; ...``, each after its CSV
        column (``column C (networking): ...``) when it has one."""
        return "; ".join(
            ": ".join(
                part
                for part in (e.column and f"column {e.column}", e.field, e.reason)
                if part
            )
            for e in self.errors
        )


def build_spec(
    body: object,
    *,
    source: str,
    line: int | None = None,
    index: int = 0,
    canonical: bytes | None = None,
    read_errors: Sequence[SpecError] = (),
    duplicate_of: str | None = None,
) -> Spec | InvalidSpec:
    """Judge one create body read at ``source:line``: a :class:`Spec` or an :class:`InvalidSpec`.

    Args:
        canonical: the body's :func:`canonical_json`, when the reader made it already.
        read_errors: why the reader could not read the body as written (then the
            body's rules are not checked); errors without a line are at ``line``.
        duplicate_of: ``file:line`` of an earlier spec of the same name.
    """
    errors = list(read_errors) or validate_body(body)
    if not errors:
        canonical = canonical or canonical_json(cast(dict[str, Any], body))
        errors = check_size(canonical)
    if duplicate_of is not None:
        errors.append(
            SpecError(f"duplicate name, first at {duplicate_of}", field="name")
        )
    name = body.get("name") if isinstance(body, dict) else None
    if errors or not isinstance(name, str) or not canonical:
        return InvalidSpec(
            name=name if isinstance(name, str) else None,
            source=source,
            line=line,
            index=index,
            errors=tuple(e.located(source, e.line or line) for e in errors),
        )
    body = cast(dict[str, Any], body)
    return Spec(name, body, key_from_json(canonical), source, line, index)


def _translate(detail: ErrorDetails) -> SpecError:
    """One pydantic error → a SpecError with a dotted path and a short reason."""
    path, tags, is_key = _path(detail["loc"])
    kind = detail["type"]
    if kind == "union_tag_not_found":
        return SpecError("field required", field=_dotted((*path, "type")))
    if kind == "union_tag_invalid":  # the tag is the variant's ``type`` field
        path = (*path, "type")
    if kind in ("extra_forbidden", "none_required"):
        reason = _extra_reason(path, tags)
    else:
        reason = _reason(kind, detail)
    if is_key:
        reason = f"key {reason}"
    return SpecError(reason, field=_dotted(path))


def _path(
    loc: tuple[int | str, ...],
) -> tuple[tuple[int | str, ...], dict[tuple[str, ...], str], bool]:
    """Drop union tags and the ``[key]`` marker from a pydantic location."""
    path: list[int | str] = []
    tags: dict[tuple[str, ...], str] = {}
    items = iter(loc)
    for part in items:
        path.append(part)
        here = tuple(str(p) for p in path)
        if here in _UNION_PATHS:
            tag = next(items, None)
            if tag is not None:
                tags[here] = str(tag)
    is_key = bool(path) and path[-1] == "[key]"
    if is_key:
        path.pop()
    return tuple(path), tags, is_key


def _dotted(path: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in path if p != "")


def _extra_reason(path: tuple[int | str, ...], tags: dict[tuple[str, ...], str]) -> str:
    """``unknown field``, or why a known field is not allowed in this variant."""
    parent = tuple(str(p) for p in path[:-1])
    tag = tags.get(parent)
    if tag is not None and path[-1] in _VARIANT_FIELDS[parent]:
        return f"not allowed when type is {tag}"
    return "unknown field"


def _reason(kind: str, detail: ErrorDetails) -> str:
    """The short phrase for one pydantic error type."""
    value = detail["input"]
    expected = _EXPECTED_TYPES.get(kind)
    if expected is not None:
        return f"expected {expected}, got {_json_type(value)}"
    phrase = _PHRASES.get(kind)
    if phrase is None:  # our own rules (``spec_rule``) carry their sentence
        return detail["msg"]
    return phrase(value, detail.get("ctx", {}))


def _one_of(value: object, ctx: dict[str, Any]) -> str:
    options = _QUOTED.findall(ctx.get("expected") or ctx.get("expected_tags", ""))
    return "must be one of: " + ", ".join(options)


def _too_many(value: Sized, ctx: dict[str, Any]) -> str:
    noun = _SIZE_NOUNS.get(ctx.get("field_type", ""), "entries")
    return f"at most {ctx['max_length']} {noun} (got {len(value)})"


def _pattern_reason(value: str, ctx: dict[str, Any]) -> str:
    """Say which part of a pattern rule the value breaks."""
    pattern = ctx["pattern"]
    if pattern == HOST_PATTERN:
        return HOST_REASON
    if pattern == NAME_PATTERN:
        if not value.strip():
            return "must not be empty"
        if _BIDI_CHARS.search(value):
            return BIDI_REASON
        return "must not contain control characters"
    if value.startswith("-"):
        return "must not start with '-'"
    return "must not contain whitespace or control characters"


_EXPECTED_TYPES = {
    "string_type": "a string",
    "bool_type": "a boolean",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}
_PHRASES: dict[str, Callable[[Any, dict[str, Any]], str]] = {
    "missing": lambda value, ctx: "field required",
    "literal_error": _one_of,
    "union_tag_invalid": _one_of,
    "string_too_short": lambda value, ctx: "must not be empty",
    "string_too_long": lambda value, ctx: (
        f"at most {ctx['max_length']} characters (got {len(value)})"
    ),
    "too_long": _too_many,
    "string_pattern_mismatch": _pattern_reason,
    # json and YAML accept lone surrogates ("\\ud800"), which cannot be sent.
    "string_unicode": lambda value, ctx: "not valid Unicode text (a lone surrogate)",
}
_JSON_TYPES: tuple[tuple[type | UnionType, str], ...] = (
    (type(None), "null"),
    (bool, "boolean"),
    (int | float, "number"),
    (str, "string"),
    (list | tuple, "list"),
    (dict, "object"),
)


def _json_type(value: object) -> str:
    """The JSON name of a value's type, as a user wrote it."""
    for kinds, name in _JSON_TYPES:
        if isinstance(value, kinds):
            return name
    return type(value).__name__
