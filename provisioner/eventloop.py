"""The event loop every client command runs on: asyncio's own.

uvloop was measured against it with aiohttp as the HTTP client (``make bench`` row 2's
setup, paired runs): both the bare aiohttp loop and ``provisioner run`` created 5-10 %
fewer environments per second on uvloop, so the client no longer picks it. The emulator,
a server, still runs on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to the end on a new asyncio loop."""
    with asyncio.Runner() as runner:
        return runner.run(main)


__all__ = ["run"]
