"""Shared fixtures: a real emulator on loopback, started in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from provisioner.emulator import Emulator, EmulatorConfig

TEST_TOKEN = "pt-test-token"
CLOUD = {"type": "cloud"}

MakeEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A running emulator that accepts ``TEST_TOKEN``; its ``faults`` plan is live."""
    async with Emulator(EmulatorConfig(token=TEST_TOKEN)) as emu:
        yield emu


@pytest.fixture
async def make_emulator() -> AsyncIterator[MakeEmulator]:
    """A factory: ``await make_emulator(unique_names=False)`` starts one with those switches."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**config: Any) -> Emulator:
            config.setdefault("token", TEST_TOKEN)
            emu = Emulator(EmulatorConfig(**config))
            return await stack.enter_async_context(emu)

        yield make


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` every few milliseconds until it holds; fail after ``timeout_s``."""
    for _ in range(int(timeout_s / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in time")


@dataclass(frozen=True, slots=True)
class Answer:
    """What an HTTP client saw: status, headers and raw body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Caller:
    """Raw HTTP calls to an emulator (API paths relative to ``url``, admin to the root)."""

    def __init__(self, session: aiohttp.ClientSession, emulator: Emulator) -> None:
        self.session = session
        self.emulator = emulator

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = TEST_TOKEN,
        emulator: Emulator | None = None,
    ) -> Answer:
        emu = emulator or self.emulator
        base = emu.root_url if path.startswith(("/_emulator", "/v1")) else emu.url
        sent = dict(headers or {})
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        if json is not None:
            data = orjson.dumps(json)
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, base + path, data=data, headers=sent
        ) as r:
            return Answer(r.status, r.headers, await r.read())


@pytest.fixture
async def api(emulator: Emulator) -> AsyncIterator[Caller]:
    """Raw HTTP calls to the ``emulator`` fixture, closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield Caller(session, emulator)


async def create(api: Caller, name: str, **fields: object) -> dict[str, Any]:
    """Create ``name`` (a bare cloud config unless given) and return the environment."""
    answer = await api(
        "POST", "/environments", json={"name": name, "config": CLOUD, **fields}
    )
    assert answer.status == 201, answer.body
    env: dict[str, Any] = answer.json()
    return env


def assert_error(
    answer: Answer, status: int, error_type: str, param: str | None = None
) -> dict[str, Any]:
    """Check an error answer's status, envelope and ``request-id``; return ``error``."""
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    assert body["type"] == "error"
    assert body["request_id"] == answer.headers["request-id"]
    assert body["error"]["type"] == error_type
    assert body["error"].get("param") == param
    error: dict[str, Any] = body["error"]
    return error
