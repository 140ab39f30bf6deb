"""Schedule specs: bounded concurrency, a rate limit, retries, one record per spec.

The runner takes any iterable of specs and knows nothing of files, Redis or
terminals. ``concurrency`` workers pull from one iterator, so memory stays flat
however many specs there are. Every spec ends in exactly one of: a record in the
sink, a skip (already settled by an earlier run), or an interruption (no record,
so a later run picks it up).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import anyio
import structlog

from provisioner.client import TLS_ERROR, ApiClient, Created, Page
from provisioner.errors import (
    ApiError,
    AuthError,
    ConflictError,
    ResultLogError,
    TransportError,
)
from provisioner.ratelimit import RateLimiter
from provisioner.reconcile import NameIndex, created_by_us
from provisioner.results import ErrorInfo, Result, ResultSink, ResumeState, Status
from provisioner.retry import RetryBudget, RetryPolicy, decide
from provisioner.settings import RunSettings
from provisioner.sources import InvalidSpec, Spec
from provisioner.summary import StopKind, StopReason, Summary, utcnow

T = TypeVar("T")
log = structlog.get_logger("provisioner.runner")


class _DrainedError(Exception):
    """A retry that the drain cut short: the spec stays unsettled, with no record."""


@dataclass(slots=True)
class _Attempts:
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


class Runner:
    """Creates environments for a stream of specs and records each outcome.

    Args:
        client: the API client (its session is owned by the caller).
        policy: retry policy for every request.
        budget: the run's shared retry budget.
        limiter: paces every request, retries and list calls included.
        sink: where final records go.
        settings: concurrency, conflict handling, grace period.
        target: the API the records are made against (base URL or ``sandbox``).
        resume: names an earlier run against this target already settled.
        on_result: called with each record after it is written (progress display).
        clock: returns the current UTC time.
    """

    def __init__(
        self,
        *,
        client: ApiClient,
        policy: RetryPolicy,
        budget: RetryBudget,
        limiter: RateLimiter,
        sink: ResultSink,
        settings: RunSettings,
        target: str | None = None,
        resume: ResumeState | None = None,
        on_result: Callable[[Result], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._client = client
        self._policy = policy
        self._budget = budget
        self._limiter = limiter
        self._sink = sink
        self._settings = settings
        self._target = target
        self._resume = resume or ResumeState(done={})
        self._on_result = on_result
        self._clock = clock
        self._names = NameIndex(self._list_page)
        self._items: Iterator[Spec | InvalidSpec] = iter(())
        self._scope: anyio.CancelScope | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self._stopped: anyio.Event | None = None
        self.summary = Summary()
        self.is_stopping = False
        self._is_interrupted = False

    async def run(self, items: Iterable[Spec | InvalidSpec]) -> Summary:
        """Process every item (or until stopped) and return the summary."""
        self._items = iter(items)
        self._stopped = anyio.Event()
        start = anyio.current_time()
        try:
            async with anyio.create_task_group() as group:
                self._scope = group.cancel_scope
                for _ in range(self._settings.concurrency):
                    group.start_soon(self._worker)
        finally:
            if self._grace_timer is not None:
                self._grace_timer.cancel()
            self._sink.sync()
            self.summary.wall_s = anyio.current_time() - start
        return self.summary

    def stop(self, reason: StopReason) -> None:
        """Take no new spec; requests in flight may finish for ``grace_s``."""
        if self.is_stopping:
            return
        self.is_stopping = True
        self.summary.stop = reason
        if self._stopped is not None:
            self._stopped.set()
        log.info("run.draining", reason=reason.text, grace_s=self._settings.grace_s)
        loop = asyncio.get_running_loop()
        self._grace_timer = loop.call_later(self._settings.grace_s, self.abort)

    def interrupt(self) -> None:
        """A signal: the first drains the run, a second cancels what is in flight."""
        if self._is_interrupted:
            self.abort()
            return
        self._is_interrupted = True
        self.stop(StopReason(StopKind.INTERRUPTED, "interrupted"))

    def abort(self) -> None:
        """Cancel requests in flight now; they get no record (a later run redoes them)."""
        self.stop(StopReason(StopKind.INTERRUPTED, "interrupted"))
        if self._scope is not None:
            self._scope.cancel()

    def _take(self) -> Spec | InvalidSpec | None:
        if self.is_stopping:
            return None
        return next(self._items, None)

    async def _worker(self) -> None:
        while (item := self._take()) is not None:
            if isinstance(item, InvalidSpec):
                self._record(self._invalid_result(item))
            elif (earlier := self._resume.status_of(item.name)) is not None:
                self._count_earlier(earlier)
            else:
                try:
                    result = await self._provision(item)
                except anyio.get_cancelled_exc_class():
                    self.summary.interrupted += 1
                    raise
                if result is None:
                    self.summary.interrupted += 1
                else:
                    self._record(result)

    def _count_earlier(self, status: str) -> None:
        """A spec an earlier run settled: skipped, or still failed (not retried)."""
        if status == "failed":
            self.summary.failed += 1
            self.summary.failed_before += 1
        else:
            self.summary.skipped += 1

    def _record(self, result: Result) -> None:
        try:
            self._sink.write(result)
        except ResultLogError as exc:
            self.summary.interrupted += 1
            self._on_log_error(exc)
            return
        self.summary.count(result.status)
        if self._on_result is not None:
            self._on_result(result)

    def _on_log_error(self, exc: ResultLogError) -> None:
        """A record that cannot be stored stops the run as a signal would."""
        if isinstance(exc.__cause__, BrokenPipeError):
            reason = StopReason(StopKind.PIPE, "the reader of the results went away")
        else:
            reason = StopReason(StopKind.LOG_WRITE, str(exc))
            log.error("results.write_failed", error=str(exc))
        self.stop(reason)

    async def _provision(self, spec: Spec) -> Result | None:
        """Create one environment; every failure becomes a record (per-spec boundary)."""
        tries = _Attempts(started=self._clock())
        try:
            created = await self._with_retries(
                tries, spec, self._send_create(spec, tries)
            )
        except ConflictError as exc:
            if exc.reason == "name":
                return await self._on_name_conflict(spec, tries, exc)
            return self._failed(spec, tries, exc)
        except AuthError as exc:
            self.stop(
                StopReason(StopKind.AUTH, f"authentication failed (HTTP {exc.status})")
            )
            return self._failed(spec, tries, exc)
        except Exception as exc:  # noqa: BLE001 - the per-spec error boundary
            if isinstance(exc, TransportError) and exc.error_type == TLS_ERROR:
                # An untrusted certificate fails every request alike: stop.
                self.stop(StopReason(StopKind.TLS, f"TLS failed: {exc}"))
            if isinstance(exc, _DrainedError) or (
                self.is_stopping and decide(exc).retry
            ):
                return None  # cut short by the drain: unsettled, so no record
            return self._failed(spec, tries, exc)
        return self._on_created(spec, tries, created)

    def _on_created(self, spec: Spec, tries: _Attempts, created: Created) -> Result:
        status = self._replay_status(created, tries)
        if status == "exists" and self._settings.on_conflict == "fail":
            existed = ConflictError(
                f"environment {spec.name!r} already exists (an earlier job created it)",
                reason="name",
                status=created.http_status,
                error_type="conflict_error",
            )
            return self._failed(spec, tries, existed, env_id=created.env_id)
        log.debug(f"env.{status}", name=spec.name, env_id=created.env_id)
        return self._result(spec, tries, status, env_id=created.env_id)

    def _replay_status(self, created: Created, tries: _Attempts) -> Status:
        """``created``, unless the server replayed a create that predates this job.

        A replay answers a key sent before: by a lost attempt of this run, or by an
        interrupted earlier run of this job (its result log exists). Otherwise the
        same spec was created by another, finished job: it was there before.
        """
        if not created.is_replay or tries.ambiguous_since or self._resume.log_existed:
            return "created"
        return "exists"

    def _send_create(
        self, spec: Spec, tries: _Attempts
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

    async def _look_before_retry(self, spec: Spec, tries: _Attempts) -> Created | None:
        try:
            ours = await self._find_ours(spec, tries)
        except (ApiError, TransportError) as exc:
            tries.lookup_error = exc
            raise
        tries.lookup_error = None
        return ours

    async def _create(self, spec: Spec, tries: _Attempts) -> Created:
        tries.count += 1
        self.summary.requests += 1
        sent_at = self._clock()
        try:
            created = await self._client.create(
                spec.body, idempotency_key=spec.key, attempt=tries.count
            )
        except (ApiError, TransportError) as exc:
            tries.create_error = exc
            if isinstance(exc, ApiError):
                tries.last_status, tries.request_id = exc.status, exc.request_id
            if _may_have_committed(exc) and tries.ambiguous_since is None:
                tries.ambiguous_since = sent_at
            raise
        tries.last_status, tries.request_id = created.http_status, created.request_id
        return created

    async def _find_ours(self, spec: Spec, tries: _Attempts) -> Created | None:
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
        self, tries: _Attempts, spec: Spec | None, send: Callable[[], Awaitable[T]]
    ) -> T:
        retrying = self._policy.retrying(
            budget=self._budget,
            is_stopping=lambda: self.is_stopping,
            on_retry=lambda exc, attempt, wait_s: self._on_retry(
                spec, tries, exc, attempt, wait_s
            ),
            sleep=self._sleep,
        )
        async for attempt in retrying:
            with attempt:
                answer = await self._attempt(send)
        self._budget.deposit(
            tries.last_cost if tries.count > 1 else self._budget.success_reward
        )
        return answer

    async def _sleep(self, seconds: float) -> None:
        """The policy's backoff wait, cut short when the run starts draining."""
        assert self._stopped is not None  # noqa: S101 - set by run()
        stopped = self._stopped
        async with anyio.create_task_group() as group:

            async def wake_on_stop() -> None:
                await stopped.wait()
                group.cancel_scope.cancel()

            group.start_soon(wake_on_stop)
            await self._policy.sleep(seconds)
            group.cancel_scope.cancel()

    async def _attempt(self, send: Callable[[], Awaitable[T]]) -> T:
        # A request not yet sent when the run stops is not "in flight": drop it
        # (no record; a later run sends it).
        if self.is_stopping:
            raise _DrainedError
        await self._limiter.acquire()
        if self.is_stopping:
            raise _DrainedError
        return await send()

    def _on_retry(
        self,
        spec: Spec | None,
        tries: _Attempts,
        exc: BaseException,
        attempt: int,
        wait_s: float,
    ) -> None:
        self.summary.retries += 1
        tries.last_cost = self._budget.cost_of(exc)
        log.debug(
            "request.retry_scheduled",
            name=spec.name if spec else None,
            attempt=attempt,
            wait_s=round(wait_s, 3),
            error_type=_error_type(exc),
            status=getattr(exc, "status", None),
        )

    async def _list_page(self, cursor: str | None, use_page: bool) -> Page:
        async def send() -> Page:
            self.summary.requests += 1
            return await self._client.list_page(cursor=cursor, use_page=use_page)

        return await self._with_retries(_Attempts(), None, send)

    async def _on_name_conflict(
        self, spec: Spec, tries: _Attempts, exc: ConflictError
    ) -> Result | None:
        try:
            env = await self._names.find(spec.name)
        except _DrainedError:
            return None
        except Exception as lookup:  # noqa: BLE001 - still part of the per-spec boundary
            log.warning(
                "env.lookup_failed", name=spec.name, error_type=_error_type(lookup)
            )
            return self._failed(spec, tries, exc, lookup=lookup)
        if env is None:
            return self._failed(spec, tries, exc)
        env_id = str(env.get("id"))
        if created_by_us(env, body=spec.body, first_sent_at=tries.ambiguous_since):
            log.info(
                "env.created", name=spec.name, env_id=env_id, via="conflict_lookup"
            )
            return self._result(spec, tries, "created", env_id=env_id)
        if self._settings.on_conflict == "fail":
            return self._failed(spec, tries, exc, env_id=env_id)
        log.info("env.exists", name=spec.name, env_id=env_id)
        return self._result(spec, tries, "exists", env_id=env_id)

    def _failed(
        self,
        spec: Spec,
        tries: _Attempts,
        exc: BaseException,
        *,
        env_id: str | None = None,
        lookup: BaseException | None = None,
    ) -> Result:
        if exc is tries.lookup_error and tries.create_error is not None:
            # The last try failed looking before re-creating: the create's own
            # failure is what went wrong; the lookup's sits beside it.
            exc, lookup = tries.create_error, exc
        info = ErrorInfo(
            type=_error_type(exc),
            message=str(exc),
            lookup=None if lookup is None else _error_info(lookup),
        )
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
        tries: _Attempts,
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

    def _invalid_result(self, item: InvalidSpec) -> Result:
        now = self._clock()
        message = "; ".join(
            f"{e.field}: {e.reason}" if e.field else e.reason for e in item.errors
        )
        log.warning(
            "spec.rejected", name=item.name, source=item.location, reason=message
        )
        return Result(
            name=item.name,
            status="invalid",
            id=None,
            attempts=0,
            http_status=None,
            error=ErrorInfo(type="invalid_spec", message=message),
            source=item.location,
            started_at=now,
            finished_at=now,
            target=self._target,
        )


def _may_have_committed(exc: ApiError | TransportError) -> bool:
    if isinstance(exc, TransportError):
        return exc.is_ambiguous
    return exc.status >= 500 or exc.status == 408  # noqa: PLR2004 - HTTP classes


def _error_info(exc: BaseException) -> ErrorInfo:
    return ErrorInfo(type=_error_type(exc), message=str(exc))


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, ApiError | TransportError):
        return exc.error_type
    return type(exc).__name__
