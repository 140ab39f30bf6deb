"""``ApiClient`` against a hostile server: every odd answer is classified, none believed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from provisioner.api.client import ApiClient, Page, open_session
from provisioner.core.lookup import EnvironmentLookup
from provisioner.errors import ApiError, RetryableApiError, TransportError
from provisioner.pacing.retry import NO_RETRY, Decision, RetryPolicy, decide
from provisioner.redact import Secret
from provisioner.settings import ApiSettings
from tests.helpers import Handler, Server

TOKEN = "pt-hostile-" + secrets.token_hex(8)
BODY = {"name": "alpha", "config": {"type": "cloud"}}
HUNDRED_MB = 100 * 1024 * 1024
CHUNK = b"x" * (1024 * 1024)


def env_id(n: int) -> str:
    return f"env_{n:032x}"


@contextlib.asynccontextmanager
async def client_for(server: Server, **options: Any) -> AsyncIterator[ApiClient]:
    """An ApiClient holding ``TOKEN``, aimed at ``server``."""
    settings = ApiSettings(token=Secret(TOKEN), base_url=server.url, timeout_s=10)
    async with open_session(concurrency=2, timeout_s=10) as session:
        yield ApiClient(session, settings=settings, **options)


def answer(payload: Any, status: int = 200, **headers: str) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.json_response(payload, status=status, headers=headers)

    return handler


async def create_error(server: Server, **options: Any) -> BaseException:
    """The exception a create against ``server`` raises."""
    async with client_for(server, **options) as client:
        with pytest.raises((ApiError, TransportError)) as caught:
            await client.create(BODY, idempotency_key="k-1")
    return caught.value


def endless_pages(*, use_page: bool) -> Handler:
    """A list that always has more, with a fresh cursor on every page."""
    counter = itertools.count(1)

    async def handler(_: web.Request) -> web.StreamResponse:
        n = next(counter)
        page = {"data": [{"id": env_id(n), "name": f"env-{n}"}], "has_more": True}
        page["next_page" if use_page else "last_id"] = (
            f"cursor-{n}" if use_page else env_id(n)
        )
        return web.json_response(page)

    return handler


def name_index(client: ApiClient, **options: Any) -> EnvironmentLookup:
    """A EnvironmentLookup that pages through ``client``."""
    return EnvironmentLookup(
        lambda cursor, use_page, _retry: client.list_page(
            cursor=cursor, use_page=use_page
        ),
        **options,
    )


def all_text(exc: BaseException) -> str:
    """Everything a user could see of ``exc``: str, repr, args and the traceback."""
    parts = [str(exc), repr(exc), *map(str, exc.args)]
    parts += traceback.format_exception(exc)
    parts += [str(v) for v in vars(exc).values()]
    return "\n".join(parts)


# --- create answers that cannot be believed ----------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"id": None, "name": "alpha"},
        {"id": "None", "name": "alpha"},
        {"name": "alpha"},
        {"id": 42},
        {"id": "env_123"},
        {"id": "env_" + "g" * 32},
        {"id": "ENV_" + "a" * 32},
        {"id": env_id(1) + "\n"},
        {"id": "../" + env_id(1)},
        [env_id(1)],
    ],
)
async def test_a_create_answer_without_a_valid_id_is_an_ambiguous_bad_answer(
    serve, payload
):
    """A 201 whose id is not env_ + 32 hex digits is a bad answer that may have committed."""
    server = await serve(answer(payload, status=201))
    error = await create_error(server)
    assert isinstance(error, TransportError)
    assert error.error_type == "bad_answer"
    assert error.is_ambiguous
    assert decide(error).retry
    assert "create" in str(error)


async def test_a_create_answer_with_a_valid_id_is_a_success(serve):
    """The same hostile server answering a well-formed id is believed."""
    server = await serve(answer({"id": env_id(7), "name": "alpha"}, status=201))
    async with client_for(server) as client:
        created = await client.create(BODY, idempotency_key="k-1")
    assert created.env_id == env_id(7)


# --- oversized answers --------------------------------------------------------


@dataclass
class Firehose:
    """A handler that sends up to 100 MB and records how much it got out."""

    declare_length: bool
    written: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=201)
        response.content_type = "application/json"
        if self.declare_length:
            response.content_length = HUNDRED_MB
        else:
            response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            while self.written < HUNDRED_MB:
                await response.write(CHUNK)
                self.written += len(CHUNK)
        except ConnectionError:
            pass  # the client hung up, as it should
        finally:
            self.done.set()
        return response


@pytest.mark.parametrize("declare_length", [True, False])
async def test_a_100_mb_answer_is_refused_and_the_client_stops_early(
    serve, declare_length
):
    """A body over the 1 MiB cap, declared or streamed, is refused without reading it all."""
    firehose = Firehose(declare_length=declare_length)
    server = await serve(firehose)
    error = await create_error(server)
    await asyncio.wait_for(firehose.done.wait(), timeout=30)
    assert isinstance(error, TransportError)
    assert error.error_type == "bad_answer"
    assert error.is_ambiguous  # a POST may have committed
    assert "cap" in str(error)
    assert firehose.written < HUNDRED_MB // 4  # a few MB sit in socket buffers


async def test_a_list_page_is_held_to_the_page_cap_not_the_answer_cap(serve):
    """A list page is read up to max_page_bytes; above it, an unambiguous bad answer."""
    envs = [{"id": env_id(n), "name": f"env-{n}"} for n in range(100)]
    server = await serve(answer({"data": envs, "has_more": False}))
    async with client_for(server, max_answer_bytes=1000) as client:
        assert len((await client.list_page()).data) == 100
    async with client_for(server, max_page_bytes=1000) as client:
        with pytest.raises(TransportError) as caught:
            await client.list_page()
    assert caught.value.error_type == "bad_answer"
    assert not caught.value.is_ambiguous


# --- redirects ------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("call", ["create", "list"])
async def test_a_redirect_is_never_followed_nor_retried(serve, status, call):
    """A 3xx fails once with its status and Location; the other server gets nothing."""
    elsewhere = await serve(answer({"id": env_id(1)}, status=201))
    location = elsewhere.url + "/environments"
    server = await serve(
        answer({}, status=status, Location=location, **{"x-should-retry": "true"})
    )
    async with client_for(server) as client:
        request = (
            client.create(BODY, idempotency_key="k-1")
            if call == "create"
            else client.list_page()
        )
        with pytest.raises(ApiError) as caught:
            await request
    error = caught.value
    assert error.error_type == "redirect"
    assert error.status == status
    assert str(status) in str(error)
    assert location in str(error)
    assert decide(error) == NO_RETRY
    assert len(server.requests) == 1
    assert elsewhere.requests == []


async def test_a_redirect_carrying_the_token_does_not_show_it(serve):
    """A Location that repeats the token is masked in the error."""
    server = await serve(
        answer({}, status=302, Location=f"http://evil.example/?token={TOKEN}")
    )
    error = await create_error(server)
    assert TOKEN not in all_text(error)
    assert "evil.example" in str(error)


# --- Retry-After nonsense -------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "-5"},
        {"Retry-After": "nan"},
        {"Retry-After": "inf"},
        {"Retry-After": "-inf"},
        {"Retry-After": "1e999"},
        {"retry-after-ms": "-5000"},
        {"retry-after-ms": "NaN"},
        {"retry-after-ms": "Infinity"},
    ],
)
async def test_a_negative_or_non_finite_retry_after_counts_as_absent(serve, headers):
    """A 429 with a nonsense wait is retried on the policy's own backoff."""
    server = await serve(answer({}, status=429, **headers))
    error = await create_error(server)
    assert isinstance(error, RetryableApiError)
    assert error.retry_after_s is None
    assert decide(error) == Decision(retry=True, after_s=None)
    policy = RetryPolicy(wait_initial_s=0.5, jitter=0.0)
    assert policy.wait_s(error, 1) == 0.5


# --- endless lists --------------------------------------------------------------


@pytest.mark.parametrize("use_page", [True, False])
async def test_an_endless_list_stops_at_the_page_cap(serve, use_page):
    """has_more forever with fresh cursors ends in a non-retried list_walk_limit."""
    server = await serve(endless_pages(use_page=use_page))
    async with client_for(server, max_list_pages=25) as client:
        with pytest.raises(TransportError) as caught:
            _ = [env async for env in client.iter_environments()]
    error = caught.value
    assert error.error_type == "list_walk_limit"
    assert "25 pages" in str(error)
    assert decide(error) == NO_RETRY
    assert len(server.requests) == 25


async def test_an_endless_list_stops_at_the_deadline(serve):
    """A list walk that outlives its deadline fails and says so."""
    server = await serve(endless_pages(use_page=True))
    ticks = itertools.count(0.0, 1.0)  # every look at the clock is a second later
    async with client_for(
        server, list_deadline_s=10, clock=lambda: next(ticks)
    ) as client:
        with pytest.raises(TransportError) as caught:
            _ = [env async for env in client.iter_environments()]
    assert caught.value.error_type == "list_walk_limit"
    assert "deadline" in str(caught.value)
    assert len(server.requests) == 10


async def test_the_name_index_gives_up_on_an_endless_list_once(serve):
    """EnvironmentLookup fails at its page cap; a later lookup fails at once instead of walking again."""
    server = await serve(endless_pages(use_page=True))
    async with client_for(server) as client:
        index = name_index(client, max_pages=20)
        for _ in range(2):
            with pytest.raises(TransportError) as caught:
                await index.find("missing")
            assert caught.value.error_type == "list_walk_limit"
            assert "20 pages" in str(caught.value)
    assert len(server.requests) == 20


async def test_the_name_index_stops_at_its_deadline(serve):
    """EnvironmentLookup's walk has a deadline on an injected clock."""
    server = await serve(endless_pages(use_page=False))
    ticks = itertools.count(0.0, 60.0)
    async with client_for(server) as client:
        index = name_index(client, deadline_s=300, clock=lambda: next(ticks))
        with pytest.raises(TransportError) as caught:
            await index.find("missing")
    assert caught.value.error_type == "list_walk_limit"
    assert "300 s deadline" in str(caught.value)


async def test_list_entries_with_malformed_ids_are_skipped(serve):
    """Environments whose id is not env_ + 32 hex digits are not believed."""
    envs = [
        {"id": env_id(3), "name": "good-3"},
        {"id": None, "name": "null-id"},
        {"id": "None", "name": "none-id"},
        {"id": 7, "name": "int-id"},
        {"id": "env_nothex", "name": "bad-id"},
        "not an object",
        {"id": env_id(1), "name": "good-1"},
    ]
    server = await serve(answer({"data": envs, "has_more": False}))
    async with client_for(server) as client:
        names = [env["name"] async for env in client.iter_environments()]
        index = name_index(client)
        assert await index.find("null-id") is None
        assert (await index.find("good-1") or {}).get("id") == env_id(1)
    assert names == ["good-3", "good-1"]


async def test_the_name_index_skips_malformed_ids_from_any_pager():
    """EnvironmentLookup itself does not believe a bad id, whatever fetched the page."""

    async def list_page(cursor: str | None, use_page: bool, retry: bool) -> Page:
        data = [{"id": "None", "name": "ghost"}, {"id": env_id(2), "name": "real"}]
        return Page(data=data, has_more=False, next_page=None, last_id=None)

    index = EnvironmentLookup(list_page)
    assert await index.find("ghost") is None
    assert await index.find("real") == {"id": env_id(2), "name": "real"}


# --- the token never shows ------------------------------------------------------


def echo_auth_json(status: int) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        auth = request.headers["Authorization"]
        error = {"type": f"bad_{auth}", "message": f"rejected Authorization: {auth}"}
        return web.json_response(
            {"type": "error", "error": error},
            status=status,
            headers={"x-request-id": auth},
        )

    return handler


def echo_auth_html(status: int) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        auth = request.headers["Authorization"]
        return web.Response(
            text=f"<html><pre>{auth}</pre> token {TOKEN}</html>",
            status=status,
            content_type="text/html",
        )

    return handler


@pytest.mark.parametrize(
    "handler",
    [
        echo_auth_json(400),
        echo_auth_json(401),
        echo_auth_json(409),
        echo_auth_json(503),
        echo_auth_html(502),
        echo_auth_html(404),
        answer({"id": TOKEN}, status=201),
    ],
)
async def test_an_answer_that_echoes_the_authorization_header_never_shows_the_token(
    serve, handler
):
    """Whatever the server repeats back, the token appears in no exception string."""
    server = await serve(handler)
    error = await create_error(server)
    assert TOKEN not in all_text(error)
    assert "Bearer" not in str(error) or "***" in str(error)
