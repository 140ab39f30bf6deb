"""The event loop every client command runs on (asyncio's own), and its signals.

uvloop was measured against it with aiohttp as the HTTP client (``make bench`` row 2's
setup, paired runs): both the bare aiohttp loop and ``provisioner run`` created 5-10 %
fewer environments per second on uvloop, so the client no longer picks it. The emulator,
a server, still runs on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from provisioner.pacing.stopping import StopController

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to the end on a new asyncio loop."""
    with asyncio.Runner() as runner:
        return runner.run(main)


@contextlib.contextmanager
def signals_stop(stop: StopController) -> Iterator[None]:
    """First SIGINT/SIGTERM drains; a second one cancels what is in flight."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.interrupt)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


__all__ = ["run", "signals_stop"]
