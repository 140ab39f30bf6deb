"""One spec, from its first request to its record: ``provision(spec) -> Result``.

The pipeline sends a spec's create with its key, retries what is worth
retrying, looks the name up before re-creating after an answer that may have
been lost, reconciles name conflicts, and turns what it saw into one record
(see ``outcome.py`` for the decisions). It knows nothing of files, queues or
terminals: the file runner and the queue worker both drive it.

``provision`` returns ``None`` when the run's drain cut the spec short before it
settled: such a spec gets no record, so a later run (or delivery) redoes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import structlog

from provisioner.client import TLS_ERROR, ApiClient, Created, Page
from provisioner.errors import (
    ApiError,
    AuthError,
    ConflictError,
    TransportError,
)
from provisioner.httpstatus import meaning
from provisioner.outcome import (
    OnConflict,
    conflict_status,
    error_info,
    error_type,
    may_have_committed,
    replay_status,
)
from provisioner.ratelimit import RateLimiter
from provisioner.reconcile import NameIndex, created_by_us
from provisioner.results import ErrorInfo, Result, Status
from provisioner.retry import RetryBudget, RetryPolicy, decide
from provisioner.sources import Spec
from provisioner.stopping import StopController
from provisioner.summary import StopKind, StopReason, utcnow

T = TypeVar("T")
log = structlog.get_logger("provisioner.pipeline")


class _DrainedError(Exception):
    """A request the drain kept from being sent: the spec stays unsettled, no record."""


@dataclass(slots=True)
class SpecAttempts:
    """What one spec's requests have seen so far.

    ``count`` is create requests sent; ``last_status`` and ``request_id`` are
    those of the last create answer; ``create_error`` is the last create's
    failure and ``lookup_error`` the failure of a name lookup made after it.
    """

    count: int = 0
    last_status: int | None = None
    request_id: str | None = None
    ambiguous_since: datetime | None = None
    last_cost: int = 0
    create_error: ApiError | TransportError | None = None
    lookup_error: BaseException | None = None
    started: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class PipelineCounts:
    """Requests sent (creates and list pages) and retries scheduled."""

    requests: int = 0
    retries: int = 0


class Pipeline:
    """Creates one environment per call, with retries and reconciliation.

    Args:
        client: the API client (its session is owned by the caller).
        policy: retry policy for every request.
        budget: the run's shared retry budget.
        limiter: paces every request, retries and list calls included.
        stop: the run's stop controller (drain, grace, cancel).
        target: what records name as their API (base URL or ``sandbox``).
        on_conflict: a name that exists already is ``exists`` or ``failed``.
        replay_is_ours: a replayed answer comes from an earlier try of this
            very job (a resumed log, a redelivered message): ``created``.
        clock: the current UTC time.
    """

    def __init__(
        self,
        *,
        client: ApiClient,
        policy: RetryPolicy,
        budget: RetryBudget,
        limiter: RateLimiter,
        stop: StopController,
        target: str | None,
        on_conflict: OnConflict = "exists",
        replay_is_ours: bool = False,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._client = client
        self._policy = policy
        self._budget = budget
        self._limiter = limiter
        self._stop = stop
        self._target = target
        self._on_conflict = on_conflict
        self._replay_is_ours = replay_is_ours
        self._clock = clock
        self._names = NameIndex(self._list_page)
        self.counts = PipelineCounts()

    async def provision(self, spec: Spec) -> Result | None:
        """Create ``spec``'s environment; every failure becomes a record (the per-spec boundary)."""
        tries = SpecAttempts(started=self._clock())
        try:
            created = await self._with_retries(
                tries, spec, self._send_create(spec, tries)
            )
        except ConflictError as exc:
            if exc.reason == "name":
                return await self._on_name_conflict(spec, tries, exc)
            return self._failed(spec, tries, exc)
        except Exception as exc:  # noqa: BLE001 - the per-spec error boundary
            self._stop_if_hopeless(exc)
            if isinstance(exc, _DrainedError) or (
                self._stop.is_stopping and decide(exc).retry
            ):
                return None  # cut short by the drain: unsettled, so no record
            return self._failed(spec, tries, exc)
        return self._on_created(spec, tries, created)

    def _stop_if_hopeless(self, exc: Exception) -> None:
        """A bad token or an untrusted certificate fails every request alike: stop."""
        if isinstance(exc, AuthError):
            text = f"authentication failed (HTTP {exc.status})"
            self._stop.stop(StopReason(StopKind.AUTH, text))
        elif isinstance(exc, TransportError) and exc.error_type == TLS_ERROR:
            self._stop.stop(StopReason(StopKind.TLS, f"TLS failed: {exc}"))

    def _on_created(self, spec: Spec, tries: SpecAttempts, created: Created) -> Result:
        status = replay_status(
            is_replay=created.is_replay,
            was_ambiguous=tries.ambiguous_since is not None,
            replay_is_ours=self._replay_is_ours,
        )
        if status == "exists" and self._on_conflict == "fail":
            existed = ConflictError(
                f"environment {spec.name!r} already exists (an earlier job created it)",
                reason="name",
                status=created.http_status,
                error_type="conflict_error",
            )
            return self._failed(spec, tries, existed, env_id=created.env_id)
        log.debug(f"env.{status}", name=spec.name, env_id=created.env_id)
        return self._result(spec, tries, status, env_id=created.env_id)

    def _send_create(
        self, spec: Spec, tries: SpecAttempts
    ) -> Callable[[], Awaitable[Created]]:
        async def send() -> Created:
            if tries.ambiguous_since is not None:
                # An earlier attempt may have committed: look before creating
                # again, for servers that honour neither keys nor unique names.
                ours = await self._look_before_retry(spec, tries)
                if ours is not None:
                    return ours
            return await self._create(spec, tries)

        return send

    async def _look_before_retry(
        self, spec: Spec, tries: SpecAttempts
    ) -> Created | None:
        try:
            ours = await self._find_ours(spec, tries)
        except (ApiError, TransportError) as exc:
            tries.lookup_error = exc
            raise
        tries.lookup_error = None
        return ours

    async def _create(self, spec: Spec, tries: SpecAttempts) -> Created:
        tries.count += 1
        self.counts.requests += 1
        sent_at = self._clock()
        try:
            created = await self._client.create(
                spec.body, idempotency_key=spec.key, attempt=tries.count
            )
        except (ApiError, TransportError) as exc:
            tries.create_error = exc
            if isinstance(exc, ApiError):
                tries.last_status, tries.request_id = exc.status, exc.request_id
            if may_have_committed(exc) and tries.ambiguous_since is None:
                tries.ambiguous_since = sent_at
            raise
        tries.last_status, tries.request_id = created.http_status, created.request_id
        return created

    async def _find_ours(self, spec: Spec, tries: SpecAttempts) -> Created | None:
        env = await self._names.find(spec.name)
        if env is None or not created_by_us(
            env, body=spec.body, first_sent_at=tries.ambiguous_since
        ):
            return None
        log.info("env.found_after_lost_answer", name=spec.name, env_id=env.get("id"))
        return Created(
            environment=env, http_status=200, request_id=None, is_replay=True
        )

    async def _with_retries(
        self, tries: SpecAttempts, spec: Spec | None, send: Callable[[], Awaitable[T]]
    ) -> T:
        # Most requests succeed at once: the retry machinery starts at the first failure.
        try:
            answer = await self._attempt(send)
        except Exception as first:  # noqa: BLE001 - handed on to the retry decision
            answer = await self._retry_after(first, tries, spec, send)
        self._budget.deposit(
            tries.last_cost if tries.count > 1 else self._budget.success_reward
        )
        return answer

    async def _retry_after(
        self,
        first: Exception,
        tries: SpecAttempts,
        spec: Spec | None,
        send: Callable[[], Awaitable[T]],
    ) -> T:
        """Attempts after a failed first one (tenacity's attempt 1 is that failure)."""
        pending: Exception | None = first
        retrying = self._policy.retrying(
            budget=self._budget,
            is_stopping=lambda: self._stop.is_stopping,
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
                answer = await self._attempt(send)
        return answer

    async def _attempt(self, send: Callable[[], Awaitable[T]]) -> T:
        # A request not yet sent when the run stops is not "in flight": drop it
        # (no record; a later run sends it).
        if self._stop.is_stopping:
            raise _DrainedError
        await self._limiter.acquire()
        if self._stop.is_stopping:
            raise _DrainedError
        try:
            answer = await send()
        except ApiError as exc:
            slows_down = meaning(exc.status).slows_down
            self._limiter.feedback(
                throttled=slows_down, retry_after_s=exc.retry_after_s
            )
            raise
        self._limiter.feedback(throttled=False)
        return answer

    def _on_retry(
        self,
        spec: Spec | None,
        tries: SpecAttempts,
        exc: BaseException,
        attempt: int,
        wait_s: float,
    ) -> None:
        self.counts.retries += 1
        tries.last_cost = self._budget.cost_of(exc)
        log.debug(
            "request.retry_scheduled",
            name=spec.name if spec else None,
            attempt=attempt,
            wait_s=round(wait_s, 3),
            error_type=error_type(exc),
            status=getattr(exc, "status", None),
        )

    async def _list_page(self, cursor: str | None, use_page: bool) -> Page:
        async def send() -> Page:
            self.counts.requests += 1
            return await self._client.list_page(cursor=cursor, use_page=use_page)

        return await self._with_retries(SpecAttempts(), None, send)

    async def _on_name_conflict(
        self, spec: Spec, tries: SpecAttempts, exc: ConflictError
    ) -> Result | None:
        try:
            env = await self._names.find(spec.name)
        except _DrainedError:
            return None
        except Exception as lookup:  # noqa: BLE001 - still part of the per-spec boundary
            log.warning(
                "env.lookup_failed", name=spec.name, error_type=error_type(lookup)
            )
            return self._failed(spec, tries, exc, lookup=lookup)
        if env is None:
            return self._failed(spec, tries, exc)
        env_id = str(env.get("id"))
        is_ours = created_by_us(
            env, body=spec.body, first_sent_at=tries.ambiguous_since
        )
        status = conflict_status(is_ours=is_ours, on_conflict=self._on_conflict)
        if status == "failed":
            return self._failed(spec, tries, exc, env_id=env_id)
        log.info(f"env.{status}", name=spec.name, env_id=env_id, via="conflict_lookup")
        return self._result(spec, tries, status, env_id=env_id)

    def _failed(
        self,
        spec: Spec,
        tries: SpecAttempts,
        exc: BaseException,
        *,
        env_id: str | None = None,
        lookup: BaseException | None = None,
    ) -> Result:
        if exc is tries.lookup_error and tries.create_error is not None:
            # The last try failed looking before re-creating: the create's own
            # failure is what went wrong; the lookup's sits beside it.
            exc, lookup = tries.create_error, exc
        info = error_info(exc, lookup=lookup)
        log.warning(
            "env.failed",
            name=spec.name,
            source=spec.location,
            error_type=info.type,
            status=tries.last_status,
            attempts=tries.count,
        )
        return self._result(spec, tries, "failed", env_id=env_id, error=info)

    def _result(
        self,
        spec: Spec,
        tries: SpecAttempts,
        status: Status,
        *,
        env_id: str | None,
        error: ErrorInfo | None = None,
    ) -> Result:
        return Result(
            name=spec.name,
            status=status,
            id=env_id,
            attempts=tries.count,
            http_status=tries.last_status,
            error=error,
            source=spec.location,
            started_at=tries.started,
            finished_at=self._clock(),
            spec_key=spec.key,
            request_id=tries.request_id,
            target=self._target,
        )


__all__ = ["Pipeline", "PipelineCounts", "SpecAttempts"]
