"""Shared fixtures: a real emulator on loopback, started in the test's own event loop."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from provisioner.emulator import Emulator

TEST_TOKEN = "pt-test-token"

MakeEmulator = Callable[..., Awaitable["Emulator"]]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A running emulator that accepts ``TEST_TOKEN``; its ``faults`` plan is live."""
    from provisioner.emulator import Emulator, EmulatorConfig

    async with Emulator(EmulatorConfig(token=TEST_TOKEN)) as emu:
        yield emu


@pytest.fixture
async def make_emulator() -> AsyncIterator[MakeEmulator]:
    """A factory: ``await make_emulator(unique_names=False)`` starts one with those switches."""
    from provisioner.emulator import Emulator, EmulatorConfig

    async with contextlib.AsyncExitStack() as stack:

        async def make(**config: Any) -> Emulator:
            config.setdefault("token", TEST_TOKEN)
            emu = Emulator(EmulatorConfig(**config))
            return await stack.enter_async_context(emu)

        yield make
