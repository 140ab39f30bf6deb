"""Nesting depth and repeated keys of JSON read from untrusted job files.

json and orjson both read ``{"name": "a", "name": "b"}`` as ``{"name": "b"}``,
and nest as deep as their recursion allows (a ``RecursionError``, or orjson's
1,024 levels). So a decoded value is checked against its text afterwards:

* :func:`too_deep` walks the value iteratively and stops at the first path
  deeper than :data:`MAX_DEPTH`; :func:`may_nest_deeper` lets the common,
  shallow text skip the walk by counting brackets.
* :func:`repeated_key` proves cheaply that no object repeats a key, and only
  when it cannot, decodes the text again with the stdlib decoder's
  ``object_pairs_hook`` to name the key.

:func:`check_value` does both, in that order, for the readers.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import orjson

from provisioner.errors import SpecError
from provisioner.spec import canonical_json

# A real spec nests about 5 levels (config.networking.allowed_hosts.N).
MAX_DEPTH = 32
DEPTH_REASON = f"nested deeper than {MAX_DEPTH} levels"


def check_value(
    text: str | bytes, value: object
) -> tuple[SpecError | None, bytes | None]:
    """The first limit that ``value``, decoded from ``text``, breaks; and its canonical JSON.

    The canonical JSON (:func:`~provisioner.spec.canonical_json`, which the
    repeated-key proof needs) is handed back for the spec key; it is ``None``
    when ``value`` is not an object, nests too deep, or holds a value orjson
    cannot encode (a lone surrogate or a huge integer from the stdlib decoder).
    """
    if may_nest_deeper(text) and too_deep(value):
        return SpecError(DEPTH_REASON), None
    canonical = _canonical(value)
    path = repeated_key(text, canonical)
    if path is not None:
        return SpecError("duplicate key", field=path), canonical
    return None, canonical


def _canonical(value: object) -> bytes | None:
    if not isinstance(value, dict):
        return None
    try:
        return canonical_json(value)
    except orjson.JSONEncodeError:
        return None


def may_nest_deeper(text: str | bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether ``text`` holds more than ``limit`` opening brackets and braces.

    When it does not, nothing decoded from it can nest deeper than ``limit``.
    """
    if isinstance(text, str):
        return text.count("[") + text.count("{") > limit
    return text.count(b"[") + text.count(b"{") > limit


def too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` levels deep."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Any
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def repeated_key(text: str | bytes, canonical: bytes | None) -> str | None:
    """The dotted path of a key that an object in ``text`` repeats, or ``None``.

    ``canonical`` is the value decoded from ``text`` serialised again by orjson
    (``None`` when it could not be). Outside strings, JSON has a colon only
    after a key, and orjson escapes no colon; so when ``text`` escapes no colon
    (``\\u003a``) and has as many colons as ``canonical``, it wrote as many keys
    as its decoded objects hold: none was repeated. Call it once ``text`` is
    known to decode and not to nest too deep.
    """
    if canonical is not None:
        if isinstance(text, str):
            is_proven = "\\u003" not in text and text.count(":") == canonical.count(
                b":"
            )
        else:
            is_proven = b"\\u003" not in text and text.count(b":") == canonical.count(
                b":"
            )
        if is_proven:
            return None
    hook = _FirstRepeat()
    root = json.loads(text, object_pairs_hook=hook)
    if hook.found is None:
        return None
    repeating, key = hook.found
    return ".".join([*_path_to(root, repeating), key])


class _FirstRepeat:
    """An ``object_pairs_hook`` that notes the first object that repeats a key."""

    def __init__(self) -> None:
        self.found: tuple[dict[str, Any], str] | None = None

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) < len(pairs) and self.found is None:
            counts = Counter(key for key, _ in pairs)
            self.found = (obj, next(key for key, _ in pairs if counts[key] > 1))
        return obj


def _path_to(root: object, target: object) -> list[str]:
    """The keys and indexes that lead from ``root`` to the object ``target`` itself."""
    stack: list[tuple[object, tuple[str, ...]]] = [(root, ())]
    while stack:
        value, path = stack.pop()
        if value is target:
            return list(path)
        items: Any = ()
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        stack.extend((child, (*path, str(key))) for key, child in items)
    return []
