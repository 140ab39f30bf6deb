"""Create and update bodies: hand-written checks that name the first field at fault.

Each check raises ``ApiError`` 400 ``invalid_request_error`` whose message starts with the
dotted field path (``config.networking: expected an object, got string``) and whose
``param`` is that path. Fields are checked in this order: unknown top-level keys, name,
description, config, metadata, scope; inside an object, keys in the order sent.
``null`` in an optional field means the field is absent (also for a field that another
variant would not allow, such as ``allowed_hosts`` of an ``unrestricted`` network).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import orjson

from provisioner.emulator.errors import invalid

TOP_LEVEL_KEYS = ("name", "description", "config", "metadata", "scope")
CLOUD_KEYS = ("type", "networking", "packages", "setup_script")
LIMITED_KEYS = ("type", "allowed_hosts", "allow_package_managers", "allow_mcp_servers")
NETWORKING_TYPES = ("unrestricted", "limited", "allowlist", "allowed_hosts")
MANAGERS = ("apt", "cargo", "gem", "go", "npm", "pip")
SCOPES = ("organization", "account")

NAME_MAX_CHARS = 255
HOSTS_MAX = 256
PACKAGES_MAX = 200
PACKAGE_MAX_CHARS = 256
SETUP_SCRIPT_MAX_BYTES = 65536
METADATA_MAX_KEYS = 16
METADATA_KEY_MAX_CHARS = 64
METADATA_VALUE_MAX_CHARS = 512

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Bidirectional controls make a name read as another in a list.
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_PACKAGE_BAD = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(?:\*\.)?(?=[^*]{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}

MetadataPatch = dict[str, str | None] | None  # None: clear every key
ConfigEcho = Literal["as-sent", "normalized"]
CONFIG_ECHOES: tuple[ConfigEcho, ...] = ("as-sent", "normalized")


def json_type(value: object) -> str:
    """The JSON name of ``value``'s type: object, array, string, number, boolean, null."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def shown(value: object) -> str:
    """``value`` as short JSON, for messages."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."  # noqa: PLR2004  # message width


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or 400."""
    if not raw.strip():
        raise invalid(None, "Request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(None, f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid(
            None, f"Request body must be a JSON object, got {json_type(body)}"
        )
    return body


def validate_create(
    body: dict[str, Any],
    *,
    echo: ConfigEcho,
    networking_types: tuple[str, ...] = NETWORKING_TYPES,
) -> dict[str, Any]:
    """The stored fields of a new environment, or 400.

    ``config`` is stored as ``echo`` says: exactly as sent (the seed's example), or
    normalised with every sub-field filled in (the newest docs). A
    ``networking.type`` outside ``networking_types`` is 400 (``unrestricted`` is
    always accepted).
    """
    _only(body, TOP_LEVEL_KEYS, "")
    if "name" not in body:
        raise invalid("name", "field required")
    fields: dict[str, Any] = {"name": _name(body["name"])}
    fields["description"] = _description(body.get("description"))
    if "config" not in body:
        raise invalid("config", "field required")
    fields["config"] = _config(body["config"], echo, networking_types)
    fields["metadata"] = _metadata(body.get("metadata"))
    if body.get("scope") is not None:
        fields["scope"] = _scope(body["scope"])
    return fields


def validate_update(
    body: dict[str, Any],
    *,
    echo: ConfigEcho,
    networking_types: tuple[str, ...] = NETWORKING_TYPES,
) -> dict[str, Any]:
    """The fields an update changes (metadata as a patch, config as on create), or 400."""
    _only(body, TOP_LEVEL_KEYS, "")
    patch: dict[str, Any] = {}
    if "name" in body:
        patch["name"] = _name(body["name"])
    if "description" in body:
        patch["description"] = _description(body["description"])
    if "config" in body:
        patch["config"] = _config(body["config"], echo, networking_types)
    if "metadata" in body:
        patch["metadata"] = _metadata_patch(body["metadata"])
    if body.get("scope") is not None:
        patch["scope"] = _scope(body["scope"])
    return patch


def apply_metadata(current: dict[str, str], patch: MetadataPatch) -> dict[str, str]:
    """``current`` after ``patch`` (string sets, null deletes, a null patch clears)."""
    if patch is None:
        return {}
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > METADATA_MAX_KEYS:
        raise invalid(
            "metadata",
            f"at most {METADATA_MAX_KEYS} keys are allowed, got {len(merged)} after the update",
        )
    return merged


def _config(
    value: object, echo: ConfigEcho, networking_types: tuple[str, ...]
) -> dict[str, Any]:
    normal = normalise_config(value, networking_types=networking_types)
    # A checked config is an object; the parsed body is ours, so no copy is needed.
    return normal if echo == "normalized" else _object("config", value)


def normalise_config(
    value: object, *, networking_types: tuple[str, ...] = NETWORKING_TYPES
) -> dict[str, Any]:
    """``config`` as the newest docs echo it (every sub-field filled in), or 400."""
    config = _object("config", value)
    if "type" not in config:
        raise invalid("config.type", "field required")
    kind = config["type"]
    if kind == "self_hosted":
        _only_type(config, "config", "config.type is self_hosted")
        return {"type": "self_hosted"}
    if kind != "cloud":
        raise invalid(
            "config.type", f"must be one of cloud, self_hosted, got {shown(kind)}"
        )
    _only(config, CLOUD_KEYS, "config.")
    normal: dict[str, Any] = {
        "type": "cloud",
        "networking": _networking(config.get("networking"), networking_types),
        "packages": _packages(config.get("packages")),
    }
    if config.get("setup_script") is not None:
        normal["setup_script"] = _setup_script(config["setup_script"])
    return normal


def _only_type(value: Mapping[str, Any], path: str, when: str) -> None:
    """A variant that holds only ``type``: any other key must be absent or null."""
    for key, item in value.items():
        if key != "type" and item is not None:
            raise invalid(f"{path}.{key}", f"not allowed when {when}")


def _only(body: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in body:
        if key not in allowed:
            raise invalid(
                f"{prefix}{key}", f"unknown field; expected one of {', '.join(allowed)}"
            )


def _object(path: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(path, f"expected an object, got {json_type(value)}")
    return value


def _string(path: str, value: object) -> str:
    if not isinstance(value, str):
        raise invalid(path, f"expected a string, got {json_type(value)}")
    return value


def _list(path: str, value: object, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(path, f"expected an array, got {json_type(value)}")
    if len(value) > max_items:
        raise invalid(
            path, f"at most {max_items} entries are allowed, got {len(value)}"
        )
    return value


def _flag(path: str, value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(path, f"expected a boolean, got {json_type(value)}")
    return value


def _name(value: object) -> str:
    name = _string("name", value)
    if not name.strip():
        raise invalid("name", "must not be empty")
    if len(name) > NAME_MAX_CHARS:
        raise invalid(
            "name", f"must be at most {NAME_MAX_CHARS} characters, got {len(name)}"
        )
    if _CONTROL.search(name):
        raise invalid("name", "must not contain control characters")
    if _BIDI.search(name):
        raise invalid("name", "must not contain bidirectional control characters")
    return name


def _description(value: object) -> str:
    return "" if value is None else _string("description", value)


def _scope(value: object) -> str:
    if value not in SCOPES:
        raise invalid(
            "scope", f"must be one of organization, account, got {shown(value)}"
        )
    return str(value)


def _networking(value: object, accepted: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {"type": "unrestricted"}
    path = "config.networking"
    networking = _object(path, value)
    if "type" not in networking:
        raise invalid(f"{path}.type", "field required")
    kind = networking["type"]
    if kind == "unrestricted":
        _only_type(networking, path, "networking.type is unrestricted")
        return {"type": "unrestricted"}
    if kind not in accepted:
        expected = ", ".join(accepted)
        raise invalid(f"{path}.type", f"must be one of {expected}, got {shown(kind)}")
    _only(networking, LIMITED_KEYS, f"{path}.")
    hosts = _hosts(networking.get("allowed_hosts"))
    if kind == "allowlist" and not hosts:
        # The seed: allowed_hosts is needed for (only) the allowlist type.
        raise invalid(
            f"{path}.allowed_hosts",
            "required, with at least one host, when networking.type is allowlist",
        )
    return {
        "type": kind,
        "allowed_hosts": hosts,
        "allow_package_managers": _flag(
            f"{path}.allow_package_managers", networking.get("allow_package_managers")
        ),
        "allow_mcp_servers": _flag(
            f"{path}.allow_mcp_servers", networking.get("allow_mcp_servers")
        ),
    }


def _hosts(value: object) -> list[str]:
    if value is None:
        return []
    path = "config.networking.allowed_hosts"
    hosts = set()
    for index, item in enumerate(_list(path, value, HOSTS_MAX)):
        host = _string(f"{path}.{index}", item).lower()
        if not _HOST.fullmatch(host):
            raise invalid(
                f"{path}.{index}",
                "must be a bare hostname or a *.domain wildcard (no scheme, port, path "
                f"or spaces), got {shown(item)}",
            )
        hosts.add(host)
    return sorted(hosts)


def _packages(value: object) -> dict[str, Any]:
    normal: dict[str, Any] = {"type": "packages", **{m: [] for m in MANAGERS}}
    if value is None:
        return normal
    packages = _object("config.packages", value)
    for key, entries in packages.items():
        path = f"config.packages.{key}"
        if key == "type":
            if entries not in ("packages", None):
                raise invalid(path, f'must be "packages", got {shown(entries)}')
        elif key in MANAGERS:
            normal[key] = [] if entries is None else _package_list(path, entries)
        else:
            raise invalid(
                path, f"unknown field; expected type or one of {', '.join(MANAGERS)}"
            )
    return normal


def _package_list(path: str, value: object) -> list[str]:
    entries = _list(path, value, PACKAGES_MAX)
    for index, item in enumerate(entries):
        entry = _string(f"{path}.{index}", item)
        if not entry:
            raise invalid(f"{path}.{index}", "must not be empty")
        if len(entry) > PACKAGE_MAX_CHARS:
            raise invalid(
                f"{path}.{index}",
                f"must be at most {PACKAGE_MAX_CHARS} characters, got {len(entry)}",
            )
        if _PACKAGE_BAD.search(entry):
            raise invalid(
                f"{path}.{index}", "must not contain whitespace or control characters"
            )
        if entry.startswith("-"):
            raise invalid(f"{path}.{index}", "must not start with '-' (no options)")
    return list(entries)


def _setup_script(value: object) -> str:
    script = _string("config.setup_script", value)
    size = len(script.encode("utf-8", "surrogatepass"))
    if size > SETUP_SCRIPT_MAX_BYTES:
        raise invalid(
            "config.setup_script",
            f"must be at most {SETUP_SCRIPT_MAX_BYTES} bytes (UTF-8), got {size}",
        )
    return script


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    metadata = _object("metadata", value)
    if len(metadata) > METADATA_MAX_KEYS:
        raise invalid(
            "metadata",
            f"at most {METADATA_MAX_KEYS} keys are allowed, got {len(metadata)}",
        )
    for key, item in metadata.items():
        _metadata_entry(key, item, nullable=False)
    return dict(metadata)


def _metadata_patch(value: object) -> MetadataPatch:
    if value is None:
        return None
    metadata = _object("metadata", value)
    for key, item in metadata.items():
        _metadata_entry(key, item, nullable=True)
    return dict(metadata)


def _metadata_entry(key: str, value: object, *, nullable: bool) -> None:
    if not key or len(key) > METADATA_KEY_MAX_CHARS:
        raise invalid(
            f"metadata.{key}" if key else "metadata",
            f"keys must be 1 to {METADATA_KEY_MAX_CHARS} characters, got {shown(key)}",
        )
    if value is None and nullable:
        return
    text = _string(f"metadata.{key}", value)
    if len(text) > METADATA_VALUE_MAX_CHARS:
        raise invalid(
            f"metadata.{key}",
            f"must be at most {METADATA_VALUE_MAX_CHARS} characters, got {len(text)}",
        )
