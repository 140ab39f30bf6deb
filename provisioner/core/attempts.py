"""One logical request, sent until it settles: pacing, retries, the budget and the drain.

:class:`Attempts` is what every request of the pipeline goes through (creates,
updates, gets and list pages alike): it waits for the rate limiter, tells it how
the answer went, retries what :func:`provisioner.pacing.retry.decide` says is worth
retrying within the policy and the run's retry budget, and drops a request the
drain keeps from being sent (:class:`DrainedError`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import structlog

from provisioner.core.outcome import error_type
from provisioner.core.summary import utcnow
from provisioner.errors import CONNECTION_RESET, ApiError, TransportError
from provisioner.httpstatus import meaning
from provisioner.observe.meter import CANCELLED, NO_METER, Meter
from provisioner.pacing.limiter import RateLimiter
from provisioner.pacing.retry import RetryBudget, RetryPolicy
from provisioner.pacing.stopping import StopController
from provisioner.spec import Spec

T = TypeVar("T")
log = structlog.get_logger("provisioner.pipeline")


class DrainedError(Exception):
    """A request the drain kept from being sent: the spec stays unsettled, no record."""


@dataclass(slots=True)
class SpecAttempts:
    """What one request sequence of a spec (its create, or its update) has seen so far.

    ``count`` is requests sent; ``last_status`` and ``request_id`` are those of
    the last answer; ``create_error`` is the last create's failure and
    ``lookup_error`` the failure of a name lookup made after it.
    """

    count: int = 0
    last_status: int | None = None
    request_id: str | None = None
    ambiguous_since: datetime | None = None
    create_error: ApiError | TransportError | None = None
    lookup_error: BaseException | None = None
    started: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class PipelineCounts:
    """Requests sent (creates, updates, gets and list pages) and retries scheduled."""

    requests: int = 0
    retries: int = 0


class Attempts:
    """Sends one logical request with pacing and retries.

    Args:
        policy: retry policy for every request.
        budget: the run's shared retry budget.
        limiter: paces every request, retries and list calls included.
        stop: the run's stop controller (drain, grace, cancel).
        counts: where retries are counted.
        meter: told of every request (its operation, answer and duration) and retry.
        timer: monotonic seconds, for the meter's request durations.
    """

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        budget: RetryBudget,
        limiter: RateLimiter,
        stop: StopController,
        counts: PipelineCounts,
        meter: Meter = NO_METER,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._meter = meter
        self._timer = timer
        self._policy = policy
        self._budget = budget
        self._limiter = limiter
        self._stop = stop
        self._counts = counts

    async def send(
        self,
        tries: SpecAttempts,
        spec: Spec | None,
        send: Callable[[], Awaitable[T]],
        *,
        operation: str,
    ) -> T:
        """``send()`` until it succeeds, or raise its last error (or :class:`DrainedError`).

        ``operation`` names the request for the meter (``create``, ``get``...).
        """
        # Most requests succeed at once: the retry machinery starts at the first failure.
        try:
            answer = await self._attempt(send, operation)
        except Exception as first:  # noqa: BLE001 - handed on to the retry decision
            answer = await self._retry_after(first, tries, spec, send, operation)
        self._budget.deposit()
        return answer

    async def send_once(self, send: Callable[[], Awaitable[T]], *, operation: str) -> T:
        """``send()`` once, paced and metered like any attempt: no retry."""
        answer = await self._attempt(send, operation)
        self._budget.deposit()
        return answer

    async def _retry_after(
        self,
        first: Exception,
        tries: SpecAttempts,
        spec: Spec | None,
        send: Callable[[], Awaitable[T]],
        operation: str,
    ) -> T:
        """Attempts after a failed first one (tenacity's attempt 1 is that failure)."""
        pending: Exception | None = first
        retrying = self._policy.retrying(
            budget=self._budget,
            is_stopping=lambda: self._stop.halts_attempts,
            on_retry=lambda exc, attempt, wait_s: self._on_retry(
                spec, tries, exc, attempt, wait_s
            ),
            sleep=lambda seconds: self._stop.sleep(seconds, sleep=self._policy.sleep),
        )
        async for attempt in retrying:
            with attempt:
                if pending is not None:
                    failure, pending = pending, None
                    raise failure
                answer = await self._attempt(send, operation)
        return answer

    async def _attempt(self, send: Callable[[], Awaitable[T]], operation: str) -> T:
        # A request not yet sent when the run stops is not "in flight": drop it
        # (no record; a later run sends it).
        if self._stop.halts_attempts:
            raise DrainedError
        await self._limiter.acquire()
        if self._stop.halts_attempts:
            raise DrainedError
        self._meter.request_started()
        sent_at = self._timer()
        try:
            answer = await send()
        except ApiError as exc:
            self._end(operation, exc.status, sent_at)
            slows_down = meaning(exc.status).slows_down
            self._limiter.feedback(
                throttled=slows_down, retry_after_s=exc.retry_after_s
            )
            raise
        except TransportError as exc:
            self._end(operation, exc.error_type, sent_at)
            if exc.error_type == CONNECTION_RESET:
                # A gateway shedding load may reset the connection without a
                # word: an adaptive rate slows down as for a 429.
                self._limiter.feedback(throttled=True, retry_after_s=None)
            raise
        except BaseException as exc:
            self._end(operation, _failure_code(exc), sent_at)
            raise
        self._end(operation, getattr(answer, "http_status", 200), sent_at)
        self._limiter.feedback(throttled=False)
        return answer

    def _end(self, operation: str, code: int | str, sent_at: float) -> None:
        self._meter.request_ended(operation, code, self._timer() - sent_at)

    def _on_retry(
        self,
        spec: Spec | None,
        tries: SpecAttempts,
        exc: BaseException,
        attempt: int,
        wait_s: float,
    ) -> None:
        self._counts.retries += 1
        self._meter.retried()
        log.debug(
            "request.retry_scheduled",
            name=spec.name if spec else None,
            attempt=attempt,
            wait_s=round(wait_s, 3),
            error_type=error_type(exc),
            http_status=getattr(exc, "status", None),
        )


def _failure_code(exc: BaseException) -> str:
    """How a request that got no HTTP answer is counted: its error type."""
    if isinstance(exc, TransportError):
        return exc.error_type
    if isinstance(exc, asyncio.CancelledError):
        return CANCELLED
    return "error"


__all__ = ["Attempts", "DrainedError", "PipelineCounts", "SpecAttempts"]
