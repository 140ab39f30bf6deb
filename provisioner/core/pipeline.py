"""One spec, from its first request to its record: ``provision(spec) -> Result``.

The pipeline sends a spec's create with its key, retries what is worth
retrying (through :mod:`provisioner.core.attempts`), looks the name up before
re-creating after an answer that may have been lost, reconciles name conflicts,
compares an environment that exists with its spec (:mod:`provisioner.core.drift`)
and, with ``update``, updates it in place; then it turns what it saw into one
record (see ``core/outcome.py`` for the decisions). It knows nothing of files,
queues or terminals: the file runner and the queue worker both drive it.

``provision`` returns ``None`` when the run's drain cut the spec short before it
settled: such a spec gets no record, so a later run (or delivery) redoes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import structlog

from provisioner.api.client import TLS_ERROR, ApiClient, Created, Page, Updated
from provisioner.core.attempts import (
    Attempts,
    DrainedError,
    PipelineCounts,
    SpecAttempts,
)
from provisioner.core.drift import drift, update_body, update_key
from provisioner.core.lookup import (
    EnvironmentLookup,
    created_by_us,
    is_archived,
    predates,
)
from provisioner.core.outcome import (
    OnConflict,
    conflict_status,
    error_info,
    error_type,
    is_permanent,
    may_have_committed,
    replay_status,
)
from provisioner.core.summary import utcnow
from provisioner.errors import (
    ApiError,
    AuthError,
    ConflictError,
    TransportError,
)
from provisioner.observe.meter import NO_METER, Meter
from provisioner.pacing.limiter import RateLimiter
from provisioner.pacing.retry import RetryBudget, RetryPolicy, decide
from provisioner.pacing.stopping import StopController, StopKind, StopReason
from provisioner.results import ErrorInfo, Result, Status
from provisioner.spec import Spec

log = structlog.get_logger("provisioner.pipeline")


class Pipeline:
    """Creates (or, with ``update``, converges) one environment per call.

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
        update: an environment that exists with another description, config
            or metadata is updated in place (``updated``); otherwise it is
            ``exists``, its differences named in the record's ``drift``.
        clock: the current UTC time.
        meter: told of every request and retry (``--metrics-port``).
        run_id: written in every record (the run's, or the worker process's).
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
        update: bool = False,
        clock: Callable[[], datetime] = utcnow,
        meter: Meter = NO_METER,
        run_id: str | None = None,
    ) -> None:
        self._client = client
        self._run_id = run_id
        self._stop = stop
        self._target = target
        self._on_conflict = on_conflict
        self._replay_is_ours = replay_is_ours
        self._update = update
        self._clock = clock
        self._names = EnvironmentLookup(self._list_page)
        # Bound once, as configured now: a module-level proxy re-binds on every call,
        # and the pipeline logs once per spec.
        self._log = log.bind()
        self.counts = PipelineCounts()
        self._attempts = Attempts(
            policy=policy,
            budget=budget,
            limiter=limiter,
            stop=stop,
            counts=self.counts,
            meter=meter,
        )

    @property
    def run_id(self) -> str | None:
        """The run every record of this pipeline names."""
        return self._run_id

    async def provision(self, spec: Spec) -> Result | None:
        """Create ``spec``'s environment (or find it, and with ``update`` converge it).

        Every failure becomes a record (the per-spec boundary).
        """
        tries = SpecAttempts(started=self._clock())
        try:
            created = await self._attempts.send(
                tries, spec, self._send_create(spec, tries), operation="create"
            )
        except ConflictError as exc:
            if exc.reason == "name":
                return await self._on_name_conflict(spec, tries, exc)
            return self._failed(spec, tries, exc)
        except Exception as exc:  # noqa: BLE001 - the per-spec error boundary
            if self._is_cut_short(exc):
                return None  # cut short by the drain: unsettled, so no record
            return self._failed(spec, tries, exc)
        return await self._on_created(spec, tries, created)

    async def environments(self) -> dict[str, dict[str, Any]]:
        """Every environment by name (the newest of each), from one walk of the list.

        Raises:
            ApiError, TransportError: the walk failed (after retries).
            DrainedError: the run is stopping.
        """
        return await self._names.all()

    def _is_cut_short(self, exc: Exception) -> bool:
        """Whether the drain cut the spec short (no record); stops a hopeless run."""
        self._stop_if_hopeless(exc)
        return isinstance(exc, DrainedError) or (
            self._stop.halts_attempts and decide(exc).retry
        )

    def _stop_if_hopeless(self, exc: Exception) -> None:
        """A bad token or an untrusted certificate fails every request alike: stop."""
        if isinstance(exc, AuthError):
            text = f"authentication failed (HTTP {exc.status})"
            self._stop.stop(StopReason(StopKind.AUTH, text))
        elif isinstance(exc, TransportError) and exc.error_type == TLS_ERROR:
            self._stop.stop(StopReason(StopKind.TLS, f"TLS failed: {exc}"))

    async def _on_created(
        self, spec: Spec, tries: SpecAttempts, created: Created
    ) -> Result | None:
        first_sent_at = tries.ambiguous_since
        status = replay_status(
            is_replay=created.is_replay,
            # A replay of an environment older than our first attempt answers
            # an earlier job's create, even after a lost answer of ours.
            was_ambiguous=first_sent_at is not None
            and not predates(created.environment, first_sent_at),
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
        if status == "exists":
            # A replay answers with the environment as it was created: compare
            # the spec with what it is now.
            env = await self._current(spec, created)
            return await self._on_existing(spec, tries, env, via="replay")
        self._log.debug(f"env.{status}", name=spec.name, id=created.env_id)
        return self._result(spec, tries, status, env_id=created.env_id)

    async def _current(self, spec: Spec, created: Created) -> Mapping[str, Any]:
        """The environment as it is now; as answered, when it cannot be read."""

        async def send() -> dict[str, Any]:
            self.counts.requests += 1
            return await self._client.get(created.env_id)

        try:
            return await self._attempts.send(
                SpecAttempts(), spec, send, operation="get"
            )
        except Exception as exc:  # noqa: BLE001 - the spec exists either way
            log.warning("env.lookup_failed", name=spec.name, error_type=error_type(exc))
            return created.environment

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
        # One attempt per page: this look runs inside the spec's own retry loop.
        env = await self._names.find(spec.name, retry=False)
        if env is None or not created_by_us(
            env, body=spec.body, first_sent_at=tries.ambiguous_since
        ):
            return None
        log.info("env.found_after_lost_answer", name=spec.name, id=env.get("id"))
        return Created(
            environment=env, http_status=200, request_id=None, is_replay=True
        )

    async def _list_page(self, cursor: str | None, use_page: bool, retry: bool) -> Page:
        async def send() -> Page:
            self.counts.requests += 1
            return await self._client.list_page(cursor=cursor, use_page=use_page)

        if not retry:
            return await self._attempts.send_once(send, operation="list")
        return await self._attempts.send(SpecAttempts(), None, send, operation="list")

    async def _on_name_conflict(
        self, spec: Spec, tries: SpecAttempts, exc: ConflictError
    ) -> Result | None:
        try:
            env = await self._names.find(spec.name)
        except DrainedError:
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
        if status == "exists":
            return await self._on_existing(spec, tries, env, via="conflict_lookup")
        log.info(f"env.{status}", name=spec.name, id=env_id, via="conflict_lookup")
        return self._result(spec, tries, status, env_id=env_id)

    async def _on_existing(
        self, spec: Spec, tries: SpecAttempts, env: Mapping[str, Any], *, via: str
    ) -> Result | None:
        """An environment that was there before: ``exists`` (with its drift), or updated.

        An archived one is never updated (the API refuses): it stays ``exists``.
        """
        env_id = str(env.get("id"))
        paths = tuple(drift(spec.body, env))
        archived = is_archived(env)
        if paths and self._update and not archived:
            return await self._update_existing(spec, tries, env, paths)
        # A plain replay was logged at debug before drift existed: keep it quiet.
        quiet = via == "replay" and not paths and not archived
        (log.debug if quiet else log.info)(
            "env.exists",
            name=spec.name,
            env_id=env_id,
            via=via,
            drift=list(paths),
            archived=archived,
        )
        return self._result(
            spec, tries, "exists", env_id=env_id, drift=paths, archived=archived
        )

    async def _update_existing(
        self,
        spec: Spec,
        tries: SpecAttempts,
        env: Mapping[str, Any],
        paths: tuple[str, ...],
    ) -> Result | None:
        env_id = str(env["id"])
        body = update_body(spec.body, env)
        sent = SpecAttempts(started=tries.started)
        send = self._send_update(env_id, body, update_key(env, body), sent)
        try:
            await self._attempts.send(sent, spec, send, operation="update")
        except Exception as exc:  # noqa: BLE001 - the per-spec error boundary
            if self._is_cut_short(exc):
                return None
            return self._failed(
                spec, tries, exc, env_id=env_id, drift=paths, update=sent
            )
        log.info("env.updated", name=spec.name, id=env_id, drift=list(paths))
        return self._result(
            spec, tries, "updated", env_id=env_id, drift=paths, update=sent
        )

    def _send_update(
        self, env_id: str, body: dict[str, Any], key: str, sent: SpecAttempts
    ) -> Callable[[], Awaitable[Updated]]:
        async def send() -> Updated:
            sent.count += 1
            self.counts.requests += 1
            try:
                answer = await self._client.update(
                    env_id, body, idempotency_key=key, attempt=sent.count
                )
            except ApiError as exc:
                sent.last_status, sent.request_id = exc.status, exc.request_id
                raise
            sent.last_status, sent.request_id = answer.http_status, answer.request_id
            return answer

        return send

    def _failed(
        self,
        spec: Spec,
        tries: SpecAttempts,
        exc: BaseException,
        *,
        env_id: str | None = None,
        lookup: BaseException | None = None,
        drift: tuple[str, ...] = (),
        update: SpecAttempts | None = None,
    ) -> Result:
        if exc is tries.lookup_error and tries.create_error is not None:
            # The last try failed looking before re-creating: the create's own
            # failure is what went wrong; the lookup's sits beside it.
            exc, lookup = tries.create_error, exc
        info = error_info(exc, lookup=lookup)
        result = self._result(
            spec, tries, "failed", env_id=env_id, error=info, drift=drift, update=update
        )
        # A conflict whose lookup failed (a 5xx, a reset) may yet be resolved.
        if is_permanent(exc) and (lookup is None or is_permanent(lookup)):
            result = dataclasses.replace(result, is_permanent=True)
        log.warning(
            "env.failed",
            name=spec.name,
            source=spec.location,
            id=result.id,
            http_status=result.http_status,
            attempts=result.attempts,
            error_type=info.type,
            error=info.message,
        )
        return result

    def _result(
        self,
        spec: Spec,
        tries: SpecAttempts,
        status: Status,
        *,
        env_id: str | None,
        error: ErrorInfo | None = None,
        drift: tuple[str, ...] = (),
        archived: bool = False,
        update: SpecAttempts | None = None,
    ) -> Result:
        """The record; after an update, its requests count and its answer is the last."""
        last = tries if update is None else update
        return Result(
            name=spec.name,
            status=status,
            id=env_id,
            attempts=tries.count + (0 if update is None else update.count),
            http_status=last.last_status,
            error=error,
            source=spec.location,
            started_at=tries.started,
            finished_at=self._clock(),
            spec_key=spec.key,
            request_id=last.request_id,
            target=self._target,
            drift=drift,
            archived=archived,
            run_id=self._run_id,
        )


__all__ = ["Pipeline", "PipelineCounts", "SpecAttempts"]
