"""How a run (or a worker) stops: drain first, then a grace period, then cancel.

:class:`StopController` is shared by a driver and the pipeline it drives. The
first stop (a signal, a 401, a result log that cannot be written) drains: no new
spec starts, no new attempt is sent, backoff waits wake at once, and requests in
flight may finish for ``grace_s`` seconds. A second signal, or the end of the
grace period, cancels what is still in flight (those specs get no record, so a
later run redoes them).

Too many failures (``--max-failures``) stops more gently: no new spec starts, but
the specs already started finish, retries included (the server's answers are as
good as ever; only the job's specs are suspect). A signal then drains as above.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any

import anyio
import structlog

log = structlog.get_logger("provisioner.stopping")


class StopKind(Enum):
    """Why a run stopped before its input was done (each has its exit code)."""

    INTERRUPTED = "interrupted"  # SIGINT or SIGTERM
    AUTH = "auth"  # a 401 or 403: every further request would fail too
    TLS = "tls"  # the server's certificate is not trusted: so would every request be
    LOG_WRITE = "log_write"  # the result log could not be written
    PIPE = "pipe"  # the reader of ``--results -`` went away
    FAILURES = "failures"  # past ``--max-failures`` (see ``pacing/tolerance.py``)


@dataclass(frozen=True, slots=True)
class StopReason:
    """A stop's kind and the sentence that explains it."""

    kind: StopKind
    text: str


class StopController:
    """Drain, grace period and cancellation for one run.

    Args:
        grace_s: how long requests in flight may finish once stopping.
    """

    def __init__(self, *, grace_s: float) -> None:
        self._grace_s = grace_s
        self._stopped = asyncio.Event()
        self._scopes: list[anyio.CancelScope] = []
        self._grace_timer: asyncio.TimerHandle | None = None
        self._is_interrupted = False
        self._halts_attempts = False
        self.reason: StopReason | None = None

    @property
    def is_stopping(self) -> bool:
        """Whether the run is stopping: no new spec may start."""
        return self.reason is not None

    @property
    def halts_attempts(self) -> bool:
        """Whether the run drains: no new attempt either, not even a retry."""
        return self._halts_attempts

    def stop(self, reason: StopReason) -> None:
        """Take no new spec and, unless too many failed, drain: no retry either,
        and requests in flight may finish for ``grace_s``."""
        if self.reason is not None:
            return
        self.reason = reason
        if reason.kind is not StopKind.FAILURES:  # (its limit_reached event is logged)
            self._drain()

    def restart(self) -> None:
        """Forget a stop for failures before another run (a library's next call);
        any other stop (a signal, a refused token) stays."""
        stopped_for_failures = (
            self.reason is not None and self.reason.kind is StopKind.FAILURES
        )
        if stopped_for_failures and not self._halts_attempts:
            self.reason = None

    def _drain(self) -> None:
        if self._halts_attempts:
            return
        self._halts_attempts = True
        self._stopped.set()
        reason = self.reason.text if self.reason is not None else "interrupted"
        log.info("run.draining", reason=reason, grace_s=self._grace_s)
        loop = asyncio.get_running_loop()
        self._grace_timer = loop.call_later(self._grace_s, self.abort)

    def interrupt(self) -> None:
        """A signal: the first drains, a second cancels what is in flight."""
        if self._is_interrupted:
            self.abort()
            return
        self._is_interrupted = True
        self.stop(StopReason(StopKind.INTERRUPTED, "interrupted"))
        self._drain()  # after a stop for failures, started specs finish no more

    def abort(self) -> None:
        """Cancel the work in flight now."""
        self.stop(StopReason(StopKind.INTERRUPTED, "interrupted"))
        self._drain()
        for scope in self._scopes:
            scope.cancel()

    def cancels(self, scope: anyio.CancelScope) -> None:
        """Cancel ``scope`` on :meth:`abort` (the driver's task group)."""
        self._scopes.append(scope)

    def close(self) -> None:
        """Forget the grace timer (the run is over)."""
        if self._grace_timer is not None:
            self._grace_timer.cancel()

    async def sleep(
        self, seconds: float, *, sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        """``sleep(seconds)``, cut short when the run drains."""
        if self.halts_attempts:
            return
        async with anyio.create_task_group() as group:

            async def wake_on_stop() -> None:
                await self._stopped.wait()
                group.cancel_scope.cancel()

            group.start_soon(wake_on_stop)
            await sleep(seconds)
            group.cancel_scope.cancel()


async def run_workers(
    stop: StopController, count: int, worker: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """``count`` copies of ``worker`` at once, cancelled by ``stop``; ``stop`` is closed after.

    The pool of a file driver (``run``, ``archive``, ``delete``): each worker pulls
    its next item the moment it is done with one, so nothing waits in batches.
    """
    try:
        async with anyio.create_task_group() as group:
            stop.cancels(group.cancel_scope)
            for _ in range(count):
                group.start_soon(worker)
    finally:
        stop.close()


__all__ = ["StopController", "StopKind", "StopReason", "run_workers"]
