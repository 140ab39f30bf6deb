"""Judging an environment found by name: ours, older than us, archived; and the full index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from provisioner.api.client import Page
from provisioner.core.lookup import (
    EnvironmentLookup,
    created_by_us,
    is_archived,
    predates,
)

T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
BODY = {"name": "a", "config": {"type": "cloud"}, "metadata": {"team": "a"}}


def env(number: int, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"env_{number:032x}",
        "name": name,
        "config": {"type": "cloud"},
        "metadata": {"team": "a"},
        "created_at": "2026-11-29T12:00:05Z",
        **fields,
    }


def test_an_environment_made_after_our_lost_attempt_and_matching_is_ours():
    """A match created after the first ambiguous attempt is ours; a drifted one is not."""
    found = env(1, "a")
    assert created_by_us(found, body=BODY, first_sent_at=T0)
    assert not created_by_us(found, body=BODY, first_sent_at=None)
    assert not created_by_us({**found, "description": "x"}, body=BODY, first_sent_at=T0)
    late = T0 + timedelta(minutes=5)
    assert not created_by_us(found, body=BODY, first_sent_at=late)


def test_an_environment_older_than_the_first_attempt_predates_it():
    """Created well before our first attempt (beyond the clock skew): not ours; unknown times are not."""
    found = env(1, "a")
    assert predates(found, T0 + timedelta(minutes=5))
    assert not predates(found, T0 + timedelta(seconds=30))
    assert not predates({**found, "created_at": None}, T0 + timedelta(hours=1))
    assert not predates({**found, "created_at": "yesterday"}, T0 + timedelta(hours=1))


def test_every_doc_generation_s_archived_mark_is_read():
    """archived_at (newest docs), status archived or archived true (older ones) mean archived."""
    assert not is_archived(env(1, "a", archived_at=None, status="ready"))
    assert is_archived(env(1, "a", archived_at="2026-11-29T12:00:00Z"))
    assert is_archived(env(1, "a", status="archived"))
    assert is_archived(env(1, "a", archived=True))


async def test_the_full_index_walks_every_page_once_and_keeps_the_newest_name():
    """all() reads each page once, archived included; a later call reads nothing more."""
    pages = {
        None: Page([env(4, "b"), env(3, "a")], True, "p2", None),
        "p2": Page([env(2, "a"), env(1, "c", archived_at="x")], False, None, None),
    }
    asked: list[str | None] = []

    async def list_page(cursor: str | None, use_page: bool, retry: bool) -> Page:
        asked.append(cursor)
        return pages[cursor]

    index = EnvironmentLookup(list_page)
    everything = await index.all()
    assert {name: e["id"] for name, e in everything.items()} == {
        "b": env(4, "b")["id"],
        "a": env(3, "a")["id"],
        "c": env(1, "c")["id"],
    }
    assert await index.all() == everything
    assert await index.find("a") == env(3, "a")
    assert asked == [None, "p2"]
