"""Drift: where an existing environment differs from the spec that should describe it.

The comparison is semantic. A server echoes ``config`` either as sent (the seed's
create example) or normalised (the newest docs: every sub-field filled in, hosts
lower-cased, de-duplicated and sorted); both sides are brought to that normal form
first, so an environment created from a spec never differs from it. Only what a
spec declares and an update can change is compared: ``description``, ``config``
and ``metadata`` (an absent or null ``description`` is ``""``, an absent or null
``metadata`` is ``{}``).

:func:`drift` names the differing fields as dotted paths (``config.networking.type``,
``metadata.team``); :func:`update_body` is the update that converges them, with
metadata keys the spec no longer has set to ``null`` (the API's patch rule), and
:func:`update_key` its idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioner.spec import canonical_json, key_from_json

MANAGERS = ("apt", "cargo", "gem", "go", "npm", "pip")
_NETWORK_FLAGS = ("allow_package_managers", "allow_mcp_servers")


def normal_config(config: object) -> object:
    """``config`` in the newest docs' normal form (anything unexpected is kept as is).

    A ``null`` field is an absent one (a spec may say ``"networking": null``);
    a self-hosted config holds only its type.
    """
    if not isinstance(config, Mapping):
        return config
    if config.get("type") == "self_hosted":
        return {"type": "self_hosted"}
    if config.get("type") != "cloud":
        return {key: value for key, value in config.items() if value is not None}
    normal: dict[str, Any] = {
        "type": "cloud",
        "networking": _networking(config.get("networking")),
        "packages": _packages(config.get("packages")),
    }
    if config.get("setup_script") is not None:
        normal["setup_script"] = config["setup_script"]
    return normal


def _networking(value: object) -> object:
    if value is None:
        return {"type": "unrestricted"}
    if isinstance(value, str):  # the oldest docs' shorthand, ``"unrestricted"``
        value = {"type": value}
    if not isinstance(value, Mapping):
        return value
    if value.get("type") == "unrestricted":
        return {"type": "unrestricted"}
    hosts = value.get("allowed_hosts") or []
    normal: dict[str, Any] = {
        "type": value.get("type"),
        "allowed_hosts": sorted({str(h).lower() for h in hosts}),
    }
    for flag in _NETWORK_FLAGS:
        normal[flag] = bool(value.get(flag) or False)
    return normal


def _packages(value: object) -> object:
    normal: dict[str, Any] = {"type": "packages", **{m: [] for m in MANAGERS}}
    if value is None:
        return normal
    if not isinstance(value, Mapping):
        return value
    for manager in MANAGERS:
        normal[manager] = list(value.get(manager) or [])
    return normal


def _declared(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a spec or an environment says about the compared fields, in normal form."""
    metadata = body.get("metadata") or {}
    return {
        "description": body.get("description") or "",
        "config": normal_config(body.get("config")),
        "metadata": dict(metadata) if isinstance(metadata, Mapping) else metadata,
    }


def drift(spec: Mapping[str, Any], environment: Mapping[str, Any]) -> list[str]:
    """The dotted paths where ``environment`` differs from ``spec`` (empty: none)."""
    return _differences(_declared(spec), _declared(environment), "")


def _differences(wanted: object, found: object, path: str) -> list[str]:
    if isinstance(wanted, Mapping) and isinstance(found, Mapping):
        paths: list[str] = []
        for key in sorted({*wanted, *found}):
            where = f"{path}.{key}" if path else str(key)
            if key not in wanted or key not in found:
                paths.append(where)
            else:
                paths += _differences(wanted[key], found[key], where)
        return paths
    return [] if wanted == found else [path]


def update_body(
    spec: Mapping[str, Any], environment: Mapping[str, Any]
) -> dict[str, Any]:
    """The update that makes ``environment`` match ``spec``: only the drifted fields.

    ``config`` is sent whole as the spec has it (an update replaces it);
    ``metadata`` as a patch (a string sets a key, ``null`` removes it) that sets
    the keys whose value differs and removes those the spec no longer has.
    """
    fields = {path.split(".", 1)[0] for path in drift(spec, environment)}
    body: dict[str, Any] = {}
    if "description" in fields:
        body["description"] = spec.get("description") or ""
    if "config" in fields:
        body["config"] = spec["config"]
    if "metadata" in fields:
        body["metadata"] = _metadata_patch(
            spec.get("metadata") or {}, environment.get("metadata") or {}
        )
    return body


def _metadata_patch(wanted: Mapping[str, Any], found: object) -> dict[str, Any]:
    if not isinstance(found, Mapping):
        found = {}
    changed = {key: value for key, value in wanted.items() if found.get(key) != value}
    gone = {key: None for key in found if key not in wanted}
    return {**changed, **gone}


def update_key(environment: Mapping[str, Any], body: Mapping[str, Any]) -> str:
    """The ``Idempotency-Key`` of the update ``body`` of ``environment``.

    Derived from the environment's id, its ``updated_at`` as seen and the body:
    every retry of one update sends the same key (a retry after a lost answer is
    replayed, not applied twice), while the same body sent later to a changed
    environment (a spec edited, reverted, edited again) is a new request, not
    the replay of the first one.
    """
    seen = {
        "id": environment.get("id"),
        "updated_at": environment.get("updated_at"),
        "update": dict(body),
    }
    return key_from_json(canonical_json(seen))


__all__ = ["MANAGERS", "drift", "normal_config", "update_body", "update_key"]
