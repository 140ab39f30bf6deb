"""Teardown: archive or delete the environments a run created, read from its result log.

:func:`select` picks, from a run's result log, the last record of each name made
against this API: ``created`` ones (with ``include_existing`` also ``exists`` and
``updated``: environments the run found already there). :func:`settled` reads
the teardown's own log back, so a re-run skips what is done and sends nothing
for it. :class:`Teardown` sends one archive or delete per environment through
the same :class:`~provisioner.core.attempts.Attempts` as ``run`` (pacing, retries, drain)
and writes one record each; :func:`outcome` decides what an answer means.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import anyio
import structlog

from provisioner.api.client import TLS_ERROR, Answered, ApiClient
from provisioner.api.responses import is_env_id
from provisioner.core.attempts import (
    Attempts,
    DrainedError,
    PipelineCounts,
    SpecAttempts,
)
from provisioner.core.outcome import error_info
from provisioner.core.runner import stop_reason_for
from provisioner.core.summary import utcnow
from provisioner.errors import ApiError, AuthError, ResultLogError, TransportError
from provisioner.pacing.limiter import RateLimiter
from provisioner.pacing.retry import RetryBudget, RetryPolicy, decide
from provisioner.pacing.stopping import (
    StopController,
    StopKind,
    StopReason,
    run_workers,
)
from provisioner.results import (
    NO_TARGET,
    ErrorInfo,
    Result,
    ResultSink,
    Status,
    is_created_here,
    is_regular_log,
    iter_records,
    rewrite_log,
)

Action = Literal["archive", "delete"]
DONE: dict[Action, Status] = {"archive": "archived", "delete": "deleted"}
#: Statuses of environments the recording run found already there.
EXISTING = frozenset({"exists", "updated"})
_CONFLICT, _NOT_FOUND = 409, 404
log = structlog.get_logger("provisioner.teardown")


@dataclass(frozen=True, slots=True)
class Doomed:
    """One environment to tear down: its name, id and the record that named it."""

    name: str
    env_id: str
    source: str  # ``<result log>:<line>``


@dataclass(slots=True)
class Selection:
    """What a run's result log holds for this API.

    Attributes:
        items: the environments to act on, in log order.
        left_out: ``exists``/``updated`` environments not selected (no ``include_existing``).
        foreign: target -> how many records of another API the log holds (ignored).
    """

    items: list[Doomed] = field(default_factory=list)
    left_out: int = 0
    foreign: dict[str, int] = field(default_factory=dict)


def select(path: str, *, target: str, include_existing: bool) -> Selection:
    """The environments of ``path``'s run against ``target`` to tear down.

    Raises:
        ResultLogError: a line other than the last is not a result record.
    """
    wanted = {"created", *EXISTING} if include_existing else {"created"}
    last: dict[str, tuple[int, str, object]] = {}
    selection = Selection()
    for line, record in iter_records(path):
        record_target = record.get("target")
        if record_target != target:
            label = record_target if isinstance(record_target, str) else NO_TARGET
            selection.foreign[label] = selection.foreign.get(label, 0) + 1
            continue
        if isinstance(name := record.get("name"), str):
            status = "created" if is_created_here(record) else record["status"]
            last[name] = (line, status, record.get("id"))
    for name, (line, status, env_id) in last.items():
        if not isinstance(env_id, str) or not is_env_id(env_id):
            continue
        if status in wanted:
            selection.items.append(Doomed(name, env_id, f"{path}:{line}"))
        elif status in EXISTING:
            selection.left_out += 1
    return selection


def settled(
    path: str, items: Iterable[Doomed], *, target: str, action: Action
) -> set[str]:
    """Ids the teardown log already has as done; drops the records of those to redo.

    An id counts as done when its last record for ``target`` is ``archived``
    (``deleted``); a ``failed`` one is tried again, its record removed first so
    the log ends with one record per environment.
    """
    if not is_regular_log(path):
        return set()
    last: dict[str, str] = {}
    for _, record in iter_records(path):
        env_id = record.get("id")
        if record.get("target") == target and isinstance(env_id, str):
            last[env_id] = record["status"]
    wanted = {item.env_id for item in items}
    done = {i for i, status in last.items() if status == DONE[action] and i in wanted}
    redo = (last.keys() & wanted) - done
    if redo:
        rewrite_log(
            path, keep=lambda r: r.get("target") != target or r.get("id") not in redo
        )
    return done


def outcome(action: Action, http_status: int | None) -> Status:
    """The record's status after an answer (``None``: a success).

    An archive answered 409 was archived already (the older docs); a delete
    answered 404 is gone already (a retry after a lost answer sees that too).
    """
    if http_status is None:
        return DONE[action]
    if (action, http_status) in {("archive", _CONFLICT), ("delete", _NOT_FOUND)}:
        return DONE[action]
    return "failed"


def failure(action: Action, exc: BaseException) -> ErrorInfo:
    """The record's error; a delete refused with 409 says to archive instead."""
    info = error_info(exc)
    if action == "delete" and getattr(exc, "status", None) == _CONFLICT:
        text = f"still in use, so it cannot be deleted ({info.message}); archive it instead"
        return ErrorInfo(type=info.type, message=text)
    return info


@dataclass(slots=True)
class TeardownCounts:
    """What one teardown did; ``done`` counts ``archived`` or ``deleted`` records."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: int = 0
    requests: int = 0
    retries: int = 0
    wall_s: float = 0.0
    stop: StopReason | None = None


class Teardown:
    """Archives or deletes environments, ``concurrency`` at a time, one record each.

    Args:
        action: ``archive`` or ``delete``.
        client: the API client (its session is owned by the caller).
        policy, budget, limiter, stop: as for ``run``'s pipeline.
        sink: where records go.
        concurrency: requests in flight at most.
        target: what records name as their API.
        clock: the current UTC time.
    """

    def __init__(
        self,
        *,
        action: Action,
        client: ApiClient,
        policy: RetryPolicy,
        limiter: RateLimiter,
        stop: StopController,
        sink: ResultSink,
        concurrency: int,
        target: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._action = action
        self._client = client
        self._stop = stop
        self._sink = sink
        self._concurrency = concurrency
        self._target = target
        self._clock = clock
        self._sent = PipelineCounts()
        self._attempts = Attempts(
            policy=policy,
            budget=RetryBudget(),
            limiter=limiter,
            stop=stop,
            counts=self._sent,
        )
        self._items: Iterator[Doomed] = iter(())
        self._done: Container[str] = frozenset()
        self.counts = TeardownCounts()

    async def run(
        self, items: Iterable[Doomed], *, done: Container[str]
    ) -> TeardownCounts:
        """Act on every item whose id is not in ``done`` (or until stopped)."""
        self._items, self._done = iter(items), done
        start = anyio.current_time()
        try:
            await run_workers(self._stop, self._concurrency, self._worker)
        finally:
            self._sink.sync()
            self.counts.wall_s = anyio.current_time() - start
            self.counts.requests = self._sent.requests
            self.counts.retries = self._sent.retries
            self.counts.stop = self._stop.reason
        return self.counts

    def _take(self) -> Doomed | None:
        return None if self._stop.is_stopping else next(self._items, None)

    async def _worker(self) -> None:
        while (item := self._take()) is not None:
            if item.env_id in self._done:
                self.counts.skipped += 1
                continue
            try:
                result = await self._tear_down(item)
            except anyio.get_cancelled_exc_class():
                self.counts.interrupted += 1
                raise
            if result is None:
                self.counts.interrupted += 1
            else:
                self._record(result)

    async def _tear_down(self, item: Doomed) -> Result | None:
        tries = SpecAttempts(started=self._clock())
        try:
            await self._attempts.send(
                tries, None, self._send(item, tries), operation=self._action
            )
        except Exception as exc:  # noqa: BLE001 - the per-environment error boundary
            if self._is_cut_short(exc):
                return None  # unsettled: no record, a re-run sends it again
            status = outcome(self._action, getattr(exc, "status", None))
            error = None if status != "failed" else failure(self._action, exc)
            return self._result(item, tries, status, error)
        return self._result(item, tries, DONE[self._action], None)

    def _send(
        self, item: Doomed, tries: SpecAttempts
    ) -> Callable[[], Awaitable[Answered]]:
        call = (
            self._client.archive if self._action == "archive" else self._client.delete
        )

        async def send() -> Answered:
            tries.count += 1
            self._sent.requests += 1
            try:
                answer = await call(item.env_id)
            except ApiError as exc:
                tries.last_status, tries.request_id = exc.status, exc.request_id
                raise
            tries.last_status, tries.request_id = answer.http_status, answer.request_id
            return answer

        return send

    def _is_cut_short(self, exc: Exception) -> bool:
        if isinstance(exc, AuthError):
            text = f"authentication failed (HTTP {exc.status})"
            self._stop.stop(StopReason(StopKind.AUTH, text))
        elif isinstance(exc, TransportError) and exc.error_type == TLS_ERROR:
            self._stop.stop(StopReason(StopKind.TLS, f"TLS failed: {exc}"))
        return isinstance(exc, DrainedError) or (
            self._stop.halts_attempts and decide(exc).retry
        )

    def _result(
        self, item: Doomed, tries: SpecAttempts, status: Status, error: ErrorInfo | None
    ) -> Result:
        event = f"env.{status}"
        # Each environment has its record; the log stays as quiet as run's.
        if error is None:
            log.debug(
                event, name=item.name, id=item.env_id, http_status=tries.last_status
            )
        else:
            log.warning(
                event,
                name=item.name,
                id=item.env_id,
                http_status=tries.last_status,
                error_type=error.type,
                error=error.message,
            )
        return Result(
            name=item.name,
            status=status,
            id=item.env_id,
            attempts=tries.count,
            http_status=tries.last_status,
            error=error,
            source=item.source,
            started_at=tries.started,
            finished_at=self._clock(),
            request_id=tries.request_id,
            target=self._target,
        )

    def _record(self, result: Result) -> None:
        try:
            self._sink.write(result)
        except ResultLogError as exc:
            self.counts.interrupted += 1
            self._stop.stop(stop_reason_for(exc))
            return
        if result.status == "failed":
            self.counts.failed += 1
        else:
            self.counts.done += 1


__all__ = [
    "DONE",
    "Action",
    "Doomed",
    "Selection",
    "Teardown",
    "TeardownCounts",
    "failure",
    "outcome",
    "select",
    "settled",
]
