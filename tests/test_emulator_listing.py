"""The list endpoint: order, limit, the three cursors, filters and the page shape."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.helpers import CLOUD, Caller, assert_error, create


async def make_envs(
    api: Caller, count: int, prefix: str = "env"
) -> list[dict[str, Any]]:
    """Create ``count`` environments in order; return them oldest first."""
    return [await create(api, f"{prefix}-{i}") for i in range(count)]


async def page(api: Caller, query: str = "", **kwargs: Any) -> dict[str, Any]:
    answer = await api("GET", f"/environments{query}", **kwargs)
    assert answer.status == 200, answer.body
    result: dict[str, Any] = answer.json()
    return result


def ids(result: dict[str, Any]) -> list[str]:
    return [env["id"] for env in result["data"]]


async def test_an_empty_list_has_null_first_and_last_ids(api):
    """With no environments the page is empty, first/last are null and has_more false."""
    assert await page(api) == {
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
        "next_page": None,
    }


async def test_the_list_is_newest_first_with_a_default_limit_of_20(api):
    """The first page holds the 20 newest environments, newest first."""
    envs = await make_envs(api, 25)
    result = await page(api)
    newest = [env["id"] for env in reversed(envs)]
    assert ids(result) == newest[:20]
    assert result["first_id"] == newest[0]
    assert result["last_id"] == newest[19]
    assert result["has_more"] is True
    assert isinstance(result["next_page"], str)


async def test_after_id_pages_towards_older_environments(api):
    """``after_id`` returns the environments older than that id; the walk sees each once."""
    envs = await make_envs(api, 12)
    seen: list[str] = []
    query = "?limit=5"
    while True:
        result = await page(api, query)
        seen += ids(result)
        if not result["has_more"]:
            break
        query = f"?limit=5&after_id={result['last_id']}"
    assert seen == [env["id"] for env in reversed(envs)]


async def test_page_cursors_walk_every_environment_once(api):
    """Following ``next_page`` visits every environment once and ends with null."""
    envs = await make_envs(api, 11)
    seen: list[str] = []
    result = await page(api, "?limit=4")
    seen += ids(result)
    while result["next_page"] is not None:
        result = await page(api, f"?limit=4&page={result['next_page']}")
        seen += ids(result)
    assert seen == [env["id"] for env in reversed(envs)]
    assert result["has_more"] is False


async def test_before_id_returns_newer_environments_newest_first(api):
    """``before_id`` returns the environments just newer than that id, newest first."""
    envs = await make_envs(api, 10)
    result = await page(api, f"?limit=3&before_id={envs[4]['id']}")
    assert ids(result) == [envs[7]["id"], envs[6]["id"], envs[5]["id"]]
    assert result["has_more"] is True
    newer = await page(api, f"?limit=3&page={result['next_page']}")
    assert ids(newer) == [envs[9]["id"], envs[8]["id"]]
    assert newer["has_more"] is False
    assert newer["next_page"] is None


async def test_a_bare_environment_id_is_accepted_as_page(api):
    """``page=<env id>`` (as the docs' examples show next_page) pages after that id."""
    envs = await make_envs(api, 5)
    result = await page(api, f"?page={envs[2]['id']}")
    assert ids(result) == [envs[1]["id"], envs[0]["id"]]


@pytest.mark.parametrize(
    "query",
    [
        "after_id={a}&before_id={a}",
        "after_id={a}&page={a}",
        "before_id={a}&page={a}",
        "after_id={a}&before_id={a}&page={a}",
    ],
)
async def test_cursors_are_mutually_exclusive(api, query):
    """Any two of after_id, before_id and page together are 400."""
    env = await create(api, "a")
    answer = await api("GET", "/environments?" + query.format(a=env["id"]))
    error = assert_error(answer, 400, "invalid_request_error", error_param(query))
    assert "mutually exclusive" in error["message"]


def error_param(query: str) -> str:
    """The second cursor named in ``query`` (the one reported)."""
    names = [part.split("=")[0] for part in query.split("&")]
    return names[1]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("limit=101", "limit"),
        ("after_id=env_123", "after_id"),
        ("before_id=nope", "before_id"),
        ("page=not-a-cursor", "page"),
        ("page=eyJ4IjoxfQ", "page"),
        ("include_archived=yes", "include_archived"),
        ("created_at[gte]=yesterday", "created_at[gte]"),
        ("created_at[lte]=2026-05-18", "created_at[lte]"),
        ("created_at[gte]=2026-05-18T10:00:00", "created_at[gte]"),
    ],
)
async def test_bad_list_parameters_are_400(api, query, param):
    """A bad limit, cursor, flag or date is 400 naming the parameter."""
    answer = await api("GET", f"/environments?{query}")
    error = assert_error(answer, 400, "invalid_request_error", param)
    assert error["message"].startswith(f"{param}: ")


async def test_limit_1_and_100_are_accepted(api):
    """The limit range 1..100 is inclusive."""
    await make_envs(api, 2)
    assert len((await page(api, "?limit=1"))["data"]) == 1
    assert len((await page(api, "?limit=100"))["data"]) == 2


async def test_limit_over_100_is_capped_when_configured(make_emulator, api):
    """With ``limit_over_max="cap"`` a limit above 100 returns 100 items."""
    emu = await make_emulator(limit_over_max="cap")
    await asyncio.gather(
        *(
            api(
                "POST",
                "/environments",
                json={"name": f"e{i}", "config": CLOUD},
                emulator=emu,
            )
            for i in range(105)
        )
    )
    result = await page(api, "?limit=500", emulator=emu)
    assert len(result["data"]) == 100
    assert result["has_more"] is True


async def test_archived_environments_are_listed_only_on_request(api):
    """Archived environments are hidden unless ``include_archived=true``."""
    envs = await make_envs(api, 3)
    await api("POST", f"/environments/{envs[1]['id']}/archive")
    assert ids(await page(api)) == [envs[2]["id"], envs[0]["id"]]
    assert ids(await page(api, "?include_archived=false")) == [
        envs[2]["id"],
        envs[0]["id"],
    ]
    assert len((await page(api, "?include_archived=true"))["data"]) == 3
    hidden_more = await page(api, "?limit=1&after_id=" + envs[2]["id"])
    assert ids(hidden_more) == [envs[0]["id"]]
    assert hidden_more["has_more"] is False


async def test_created_at_bounds_filter_inclusively(api):
    """``created_at[gte]`` and ``created_at[lte]`` keep environments inside the bounds."""
    envs = await make_envs(api, 5)
    middle = envs[2]["created_at"]
    newer = await page(api, f"?created_at[gte]={middle}")
    assert ids(newer) == [envs[4]["id"], envs[3]["id"], envs[2]["id"]]
    older = await page(api, f"?created_at[lte]={middle}")
    assert ids(older) == [envs[2]["id"], envs[1]["id"], envs[0]["id"]]
    both = await page(api, f"?created_at[gte]={middle}&created_at[lte]={middle}")
    assert ids(both) == [envs[2]["id"]]


async def test_created_at_accepts_offsets(api):
    """A bound with a numeric offset (``+02:00``, even unescaped) is converted to UTC."""
    env = await create(api, "a")
    created = datetime.fromisoformat(env["created_at"])
    before = (created - timedelta(hours=1)).astimezone().isoformat()
    later = (created + timedelta(seconds=1)).isoformat().replace("+00:00", "+02:00")
    assert ids(await page(api, "?created_at[gte]=" + before.replace("+", "%2B"))) == [
        env["id"]
    ]
    assert ids(await page(api, "?created_at[lte]=" + later)) == []


async def test_a_long_list_pages_to_the_end(api, emulator):
    """A few hundred environments page through in limit-100 steps, none lost or repeated."""
    await asyncio.gather(
        *(
            api("POST", "/environments", json={"name": f"e{i}", "config": CLOUD})
            for i in range(250)
        )
    )
    seen: list[str] = []
    result = await page(api, "?limit=100")
    seen += ids(result)
    while result["has_more"]:
        result = await page(api, f"?limit=100&page={result['next_page']}")
        seen += ids(result)
    assert seen == sorted(seen, reverse=True)
    assert sorted(seen) == [env["id"] for env in emulator.environments()]
