"""The event loop every command runs on: uvloop when it is installed, else asyncio's.

uvloop (the ``speedups`` extra, in the lock and the image) runs the same code with
less CPU per request; nothing depends on it, and without it asyncio's loop is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when uvloop can be imported, else ``None`` (asyncio's)."""
    try:
        import uvloop  # noqa: PLC0415 - optional: imported only to pick the loop
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop :func:`run` will use."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to the end on a new loop (see the module's docstring)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


__all__ = ["loop_factory", "loop_name", "run"]
