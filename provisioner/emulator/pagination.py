"""List queries: parse and check the parameters, and cut one page from a sorted id list.

Pages are newest first (descending id). ``after_id`` pages towards older items,
``before_id`` towards newer ones (still returned newest first), and ``page`` is the opaque
cursor from ``next_page``: urlsafe base64 of ``{"after_id": …}`` or ``{"before_id": …}``.
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from provisioner.emulator.errors import invalid
from provisioner.emulator.ids import is_env_id, rfc3339

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
CURSORS = ("after_id", "before_id", "page")
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}

Env = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A checked list request."""

    limit: int = DEFAULT_LIMIT
    after_id: str | None = None
    before_id: str | None = None
    include_archived: bool = False
    created_gte: str | None = None  # RFC 3339 in the stored format, compared as text
    created_lte: str | None = None


def parse_list_query(
    query: Mapping[str, str], *, limit_over_max: Literal["reject", "cap"]
) -> ListQuery:
    """Check the list parameters; unknown parameters are ignored. Raises 400."""
    given = [name for name in CURSORS if name in query]
    if len(given) > 1:
        raise invalid(given[1], f"{' and '.join(given)} are mutually exclusive")
    after_id = _env_id(query, "after_id")
    before_id = _env_id(query, "before_id")
    if "page" in query:
        after_id, before_id = decode_page(query["page"])
    return ListQuery(
        limit=_limit(query.get("limit"), limit_over_max),
        after_id=after_id,
        before_id=before_id,
        include_archived=_boolean(query, "include_archived"),
        created_gte=_moment(query, "created_at[gte]"),
        created_lte=_moment(query, "created_at[lte]"),
    )


def encode_page(cursor: Mapping[str, str]) -> str:
    """An opaque ``next_page`` token for ``cursor``."""
    return base64.urlsafe_b64encode(orjson.dumps(cursor)).decode().rstrip("=")


def decode_page(token: str) -> tuple[str | None, str | None]:
    """``(after_id, before_id)`` from a ``page`` token (a bare env id means after it)."""
    if is_env_id(token):
        return token, None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        data = None
    if isinstance(data, dict) and len(data) == 1:
        ((kind, env_id),) = data.items()
        if (
            kind in ("after_id", "before_id")
            and isinstance(env_id, str)
            and is_env_id(env_id)
        ):
            return (env_id, None) if kind == "after_id" else (None, env_id)
    raise invalid("page", "not a cursor returned in next_page")


def paginate(
    ids: list[str], envs: Mapping[str, Env], query: ListQuery
) -> dict[str, Any]:
    """One page of ``envs`` (``ids`` sorted ascending) as the list endpoint answers it."""
    keep = _matcher(query)
    if query.before_id is not None:
        start = bisect_right(ids, query.before_id)
        data, has_more = _take(
            envs, (ids[i] for i in range(start, len(ids))), keep, query.limit
        )
        data.reverse()
        cursor = {"before_id": data[0]["id"]} if has_more else None
    else:
        stop = len(ids) if query.after_id is None else bisect_left(ids, query.after_id)
        data, has_more = _take(
            envs, (ids[i] for i in range(stop - 1, -1, -1)), keep, query.limit
        )
        cursor = {"after_id": data[-1]["id"]} if has_more else None
    return {
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
        "next_page": None if cursor is None else encode_page(cursor),
    }


def _take(
    envs: Mapping[str, Env],
    order: Iterable[str],
    keep: Callable[[Env], bool],
    limit: int,
) -> tuple[list[Env], bool]:
    data: list[Env] = []
    for env_id in order:
        env = envs[env_id]
        if keep(env):
            if len(data) == limit:
                return data, True
            data.append(env)
    return data, False


def _matcher(query: ListQuery) -> Callable[[Env], bool]:
    archived_ok, gte, lte = query.include_archived, query.created_gte, query.created_lte

    def keep(env: Env) -> bool:
        if not archived_ok and env["archived_at"] is not None:
            return False
        created: str = env["created_at"]
        return (gte is None or created >= gte) and (lte is None or created <= lte)

    return keep


def _limit(value: str | None, limit_over_max: Literal["reject", "cap"]) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not _INTEGER.fullmatch(value):
        raise invalid(
            "limit", f"expected an integer from 1 to {MAX_LIMIT}, got {value!r}"
        )
    limit = int(value)
    if limit < 1 or (limit > MAX_LIMIT and limit_over_max == "reject"):
        raise invalid("limit", f"must be an integer from 1 to {MAX_LIMIT}, got {limit}")
    return min(limit, MAX_LIMIT)


def _env_id(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    if value is not None and not is_env_id(value):
        raise invalid(
            name, f"expected an environment id (env_ + 32 hex digits), got {value!r}"
        )
    return value


def _boolean(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None:
        return False
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise invalid(name, f"expected true or false, got {value!r}") from None


def _moment(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    # an unescaped "+" in a query string arrives as a space
    text = value.strip().replace(" ", "+")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in text.upper():
        raise invalid(
            name, f"expected an RFC 3339 date-time with an offset, got {value!r}"
        )
    return rfc3339(moment.astimezone(UTC))
