"""Find an existing environment by name, and decide whether this run created it.

The API has no name filter, so :class:`EnvironmentLookup` walks the list endpoint
(newest first, archived included) once, keeps ``name -> environment``, and on a
miss walks again only as far as the newest environment it already knew. A walk
is bounded by a page cap and a deadline, and what a walk that failed half-way
saw is not kept: the next walk starts over. :meth:`EnvironmentLookup.all` is the
whole index after one full walk (``provisioner plan``).

:func:`created_by_us` and :func:`is_archived` judge an environment found there.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import anyio

from provisioner.api.client import (
    LIST_DEADLINE_S,
    MAX_LIST_PAGES,
    WALK_LIMIT,
    Clock,
    Page,
    WalkLimits,
    next_cursor,
)
from provisioner.api.responses import is_env_id
from provisioner.core.drift import drift
from provisioner.errors import TransportError

ListPage = Callable[[str | None, bool, bool], Awaitable[Page]]

#: How far a server's clock may run behind ours when we compare ``created_at``.
CLOCK_SKEW = timedelta(seconds=60)


class EnvironmentLookup:
    """``name -> environment`` for the whole account, filled lazily.

    Args:
        list_page: fetches one page given a cursor, whether it is a
            ``next_page`` value (``True``) or an ``after_id`` (``False``), and
            whether a failed request may be retried (``False``: one attempt).
        max_pages: pages one walk fetches at most.
        deadline_s: seconds one walk may take in all.
        clock: monotonic seconds for the deadline; tests inject one.
    """

    def __init__(
        self,
        list_page: ListPage,
        *,
        max_pages: int = MAX_LIST_PAGES,
        deadline_s: float = LIST_DEADLINE_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self._list_page = list_page
        self._limits = WalkLimits(
            max_pages=max_pages, deadline_s=deadline_s, clock=clock
        )
        self._by_name: dict[str, dict[str, Any]] = {}
        self._ids: set[str] = set()
        self._lock = anyio.Lock()
        self._gave_up: TransportError | None = None
        self._has_walked = False

    async def find(self, name: str, *, retry: bool = True) -> dict[str, Any] | None:
        """The environment called ``name``, or ``None`` if the list has none.

        Entries whose id is not ``env_`` + 32 hex digits are not believed.
        ``retry=False``: each page gets one attempt, for a caller that is itself
        inside a retry loop (retries inside retries multiply an outage's load).

        Raises:
            TransportError: ``list_walk_limit`` (not retryable) when the list
                does not end within ``max_pages`` or ``deadline_s``; whatever
                ``list_page`` raises. Once a walk hit a limit, every later
                lookup that needs a walk fails at once with the same error (a
                list that did not end once is not walked again by this run).
        """
        async with self._lock:
            if name not in self._by_name:
                await self._walk(retry=retry)
            return self._by_name.get(name)

    async def all(self) -> dict[str, dict[str, Any]]:
        """Every environment by name (the newest of each name), archived included.

        The first call walks the whole list (later ones reuse that walk).

        Raises:
            TransportError: as :meth:`find`.
        """
        async with self._lock:
            if not self._has_walked:
                await self._walk(retry=True)
            return dict(self._by_name)

    async def _walk(self, *, retry: bool) -> None:
        if self._gave_up is not None:
            raise self._gave_up
        try:
            await self._refresh(retry=retry)
        except TransportError as exc:
            if exc.error_type == WALK_LIMIT:
                self._gave_up = exc
            raise

    async def _refresh(self, *, retry: bool) -> None:
        walk = self._limits.start()
        seen: dict[str, dict[str, Any]] = {}  # id -> environment, newest first
        cursor: str | None = None
        use_page = True
        while True:
            walk.next_page()
            page = await self._list_page(cursor, use_page, retry)
            reached_known = self._collect(page.data, seen)
            following, use_page = next_cursor(page, use_page=use_page)
            if reached_known or not page.has_more or following in (None, cursor):
                break
            cursor = following
        # Only a finished walk is kept: a half walk would stop the next one early.
        for env_id, env in seen.items():
            self._ids.add(env_id)
            # Newest first: the first one seen with a name is the newest.
            self._by_name.setdefault(env["name"], env)
        self._has_walked = True

    def _collect(
        self, environments: list[dict[str, Any]], seen: dict[str, dict[str, Any]]
    ) -> bool:
        reached_known = False
        for env in environments:
            env_id, name = env.get("id"), env.get("name")
            if env_id in self._ids:
                reached_known = True
            elif is_env_id(env_id) and isinstance(name, str):
                seen.setdefault(str(env_id), env)
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
    it matches the spec (description, config and metadata, compared as
    :func:`provisioner.core.drift.drift` does: one that differs was not made by it).
    """
    if first_sent_at is None:
        return False
    created_at = _parse_time(env.get("created_at"))
    if created_at is None or created_at < first_sent_at - CLOCK_SKEW:
        return False
    return not drift(body, env)


def predates(env: Mapping[str, Any], first_sent_at: datetime) -> bool:
    """Whether ``env`` was created before ``first_sent_at`` (less ``CLOCK_SKEW``).

    Then no attempt of this spec made it, whatever answered: a create replayed
    after a lost answer was an earlier job's. Unknown when ``created_at`` is
    missing or unreadable (``False``).
    """
    created_at = _parse_time(env.get("created_at"))
    return created_at is not None and created_at < first_sent_at - CLOCK_SKEW


def is_archived(env: Mapping[str, Any]) -> bool:
    """Whether an environment is archived: ``archived_at`` set (newest docs),
    ``status: "archived"`` or ``archived: true`` (older ones)."""
    return (
        env.get("archived_at") is not None
        or env.get("status") == "archived"
        or env.get("archived") is True
    )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
