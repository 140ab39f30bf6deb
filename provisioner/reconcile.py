"""Find an existing environment by name, and decide whether this run created it.

The API has no name filter, so :class:`NameIndex` walks the list endpoint
(newest first, archived included) once, keeps ``name -> environment``, and on a
miss walks again only as far as the newest environment it already knew.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import anyio

from provisioner.client import Page, next_cursor

ListPage = Callable[[str | None, bool], Awaitable[Page]]

#: How far a server's clock may run behind ours when we compare ``created_at``.
CLOCK_SKEW = timedelta(seconds=60)


class NameIndex:
    """``name -> environment`` for the whole account, filled lazily.

    Args:
        list_page: fetches one page given a cursor and whether it is a
            ``next_page`` value (``True``) or an ``after_id`` (``False``).
    """

    def __init__(self, list_page: ListPage) -> None:
        self._list_page = list_page
        self._by_name: dict[str, dict[str, Any]] = {}
        self._ids: set[str] = set()
        self._lock = anyio.Lock()

    async def find(self, name: str) -> dict[str, Any] | None:
        """The environment called ``name``, or ``None`` if the list has none."""
        async with self._lock:
            if name not in self._by_name:
                await self._refresh()
            return self._by_name.get(name)

    async def _refresh(self) -> None:
        known = set(self._ids)
        cursor: str | None = None
        use_page = True
        while True:
            page = await self._list_page(cursor, use_page)
            reached_known = self._add_all(page.data, known)
            following, use_page = next_cursor(page, use_page=use_page)
            if reached_known or not page.has_more or following in (None, cursor):
                return
            cursor = following

    def _add_all(self, environments: list[dict[str, Any]], known: set[str]) -> bool:
        reached_known = False
        for env in environments:
            env_id, name = env.get("id"), env.get("name")
            if env_id in known:
                reached_known = True
            elif isinstance(env_id, str) and isinstance(name, str):
                self._ids.add(env_id)
                # Newest first: the first one seen with a name is the newest.
                self._by_name.setdefault(name, env)
        return reached_known


def created_by_us(
    env: Mapping[str, Any],
    *,
    body: Mapping[str, Any],
    first_sent_at: datetime | None,
) -> bool:
    """Whether an environment found after a 409 is the one our own lost request made.

    Only when an earlier attempt of this spec may have committed
    (``first_sent_at`` is set by an ambiguous failure: timeout, reset, 5xx), the
    environment was created after that attempt started (less ``CLOCK_SKEW``), and
    its metadata equals the spec's.
    """
    if first_sent_at is None:
        return False
    created_at = _parse_time(env.get("created_at"))
    if created_at is None or created_at < first_sent_at - CLOCK_SKEW:
        return False
    return (env.get("metadata") or {}) == (body.get("metadata") or {})


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
