"""The queue driver: messages from a Redis stream through the pipeline into the results stream.

A worker is one consumer of the stream's consumer group. It reads as many
messages as it has free slots, takes over messages another worker left
unacknowledged for ``claim_idle_s`` (a worker that died), and for each message:
checks it (an invalid one, or one delivered too often, goes to the dead letters
with the reason), provisions the spec with the same pipeline as ``run``, and
settles it in Redis in one step: result recorded, message acknowledged. A spec
that an earlier message already settled is not sent again (``exists``), and two
deliveries of one spec never both record ``created``.

Delivery is at least once; creation is exactly once (keys on the API, the
outcomes hash in Redis). Redis going away is waited out with a backoff: nothing
in progress is dropped, and a result is settled once Redis is back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import anyio.lowlevel
import orjson
import structlog

from provisioner.core.pipeline import Pipeline
from provisioner.core.runner import stop_reason_for
from provisioner.core.summary import Summary, utcnow
from provisioner.errors import QueueError, ResultLogError
from provisioner.observe.meter import NO_METER, Meter
from provisioner.pacing.stopping import StopController
from provisioner.pacing.tolerance import MaxFailures
from provisioner.queue.message import read_message
from provisioner.queue.streams import (
    FailureTally,
    JobQueue,
    Message,
    Settlement,
)
from provisioner.results import SUCCESS, Result, ResultSink
from provisioner.settings import WorkerSettings
from provisioner.spec import Spec

T = TypeVar("T")
_NOTHING: list[Message] = []
_GIVE_BACK_S = 5.0
log = structlog.get_logger("provisioner.worker")


class Worker:
    """One consumer of a queue: pulls specs, provisions them, settles each message.

    Args:
        queue: the stream's Redis adapter.
        pipeline: provisions one spec (the same as ``run`` uses).
        stop: the worker's stop controller (shared with the pipeline).
        settings: concurrency, claiming, dead-lettering, exit-when-empty.
        group: the consumer group.
        consumer: this worker's name in the group.
        target: what records name as their API.
        scrub: what every stored message goes through (masks the token).
        sink: also append every settled record to this local log.
        meter: counts each settled record by status (``--metrics-port``).
        max_failures: stop taking messages once the pool's tally (in Redis, every
            worker's settles) is past it; what is queued stays queued.
    """

    def __init__(
        self,
        *,
        queue: JobQueue,
        pipeline: Pipeline,
        stop: StopController,
        settings: WorkerSettings,
        group: str,
        consumer: str,
        target: str,
        scrub: Callable[[str], str] = str,
        sink: ResultSink | None = None,
        meter: Meter = NO_METER,
        on_settled: Callable[[str], None] | None = None,
        max_failures: MaxFailures | None = None,
    ) -> None:
        self._meter = meter
        self._max_failures = max_failures
        self._on_settled = on_settled
        self._queue = queue
        self._pipeline = pipeline
        self._stop = stop
        self._settings = settings
        self._group = group
        self._consumer = consumer
        self._target = target
        self._scrub = scrub
        self._sink = sink
        self._in_flight = 0
        self._last_claim = float("-inf")
        self._known: dict[str, dict[str, object]] = {}
        self._buffer: deque[Message] = deque()
        self._reading: anyio.Event | None = None
        self._drained = False
        self._settler = SettleBatch(self._settle_batch)
        self.summary = Summary()
        self.dead_letters = 0

    async def run(self) -> Summary:
        """Work until stopped (or, with ``exit_when_empty``, until the queue is drained)."""
        start = anyio.current_time()
        await self._redis(lambda: self._queue.ensure_group(self._group))
        log.info("worker.started", consumer=self._consumer, group=self._group)
        try:
            async with anyio.create_task_group() as group:
                self._stop.cancels(group.cancel_scope)
                for _ in range(self._settings.concurrency):
                    group.start_soon(self._slot)
        finally:
            self._stop.close()
            await self._give_back_unstarted()
            if self._sink is not None:
                self._sink.sync()
            self.summary.wall_s = anyio.current_time() - start
            self.summary.requests = self._pipeline.counts.requests
            self.summary.retries = self._pipeline.counts.retries
            self.summary.stop = self._stop.reason
        log.info(
            "worker.stopped",
            consumer=self._consumer,
            **self.summary.to_dict()["counts"],
        )
        return self.summary

    async def _slot(self) -> None:
        """One of ``concurrency`` slots: the next message, provisioned and settled,
        until the worker stops (a fixed pool, as ``run`` has: no task per message)."""
        while not (self._stop.is_stopping or self._drained):
            message = await self._next_message()
            if message is None:
                continue
            self._in_flight += 1
            await self._handle(message)

    async def _next_message(self) -> Message | None:
        """A message read already, else one from a read that this slot makes for every
        idle slot (or waits for, when another slot is reading); ``None``: none came."""
        if not self._buffer:
            if self._reading is not None:
                await self._reading.wait()
            else:
                await self._read_for_idle_slots()
        return self._buffer.popleft() if self._buffer else None

    async def _read_for_idle_slots(self) -> None:
        reading = self._reading = anyio.Event()
        try:
            # the slots that finish in this turn of the loop are idle too: read for them
            await anyio.lowlevel.checkpoint()
            if self._stop.is_stopping or await self._is_past_tolerance():
                return
            idle = self._settings.concurrency - self._in_flight
            batch = await self._next_batch(idle)
            self._buffer.extend(batch)
            if not batch and self._settings.exit_when_empty:
                self._drained = await self._is_finished()
        finally:
            self._reading = None
            reading.set()

    async def _give_back_unstarted(self) -> None:
        """Messages read but never started (the worker stopped first) go back to the
        pool at once; one that cannot stays pending for another worker to claim (a
        Redis that is away holds the exit for ``_GIVE_BACK_S`` at most)."""
        with anyio.move_on_after(_GIVE_BACK_S):
            while self._buffer:
                message = self._buffer.popleft()
                try:
                    await self._queue.release(message, self._group)
                except QueueError as exc:
                    log.warning(
                        "message.left_pending", message_id=message.id, error=str(exc)
                    )

    async def _is_past_tolerance(self) -> bool:
        """Whether the pool's tally (read afresh) stopped this worker."""
        if self._max_failures is None:
            return False
        tally = await self._redis(self._queue.failure_tally, default=FailureTally())
        self._check_tally(tally)
        return self._stop.is_stopping

    def _check_tally(self, tally: FailureTally) -> None:
        """Stop (drain) once the pool's tally is past ``--max-failures``."""
        limit = self._max_failures
        if limit is None or self._stop.is_stopping:
            return
        if limit.is_exceeded(failed=tally.failed, finished=tally.finished):
            log.warning(
                "worker.failure_limit_reached",
                consumer=self._consumer,
                failed=tally.failed,
                finished=tally.finished,
                max_failures=str(limit),
            )
            self._stop.stop(limit.reason(failed=tally.failed, finished=tally.finished))

    async def _is_finished(self) -> bool:
        if self._in_flight:
            return False
        return bool(await self._redis(lambda: self._queue.is_drained(self._group)))

    async def _next_batch(self, free: int) -> list[Message]:
        """The next messages, with what the outcomes know of their specs (one lookup)."""
        batch = await self._take(free)
        keys = [m.fields["key"] for m in batch if m.fields.get("key")]
        if keys:
            known: dict[str, dict[str, object]] = await self._redis(
                lambda: self._queue.outcomes(keys), default={}
            )
            self._known.update(known)
        return batch

    async def _take(self, free: int) -> list[Message]:
        """Messages a dead worker left behind first (every so often), else new ones."""
        settings = self._settings
        now = time.monotonic()
        if now - self._last_claim >= min(settings.claim_idle_s / 2, 5.0):
            self._last_claim = now
            claimed: list[Message] = await self._redis(
                lambda: self._queue.claim(
                    self._group,
                    self._consumer,
                    min_idle_ms=int(settings.claim_idle_s * 1000),
                    count=free,
                ),
                default=_NOTHING,
            )
            if claimed:
                log.info("worker.claimed", count=len(claimed), consumer=self._consumer)
                return claimed
        return await self._redis(
            lambda: self._queue.read(
                self._group,
                self._consumer,
                count=free,
                block_ms=int(settings.poll_s * 1000),
            ),
            default=_NOTHING,
        )

    async def _handle(self, message: Message) -> None:
        try:
            await self._process(message)
        except anyio.get_cancelled_exc_class():
            self.summary.interrupted += 1  # aborted: the message stays pending
            raise
        finally:
            self._in_flight -= 1

    async def _process(self, message: Message) -> None:
        if message.deliveries > self._settings.max_deliveries:
            reason = (
                f"delivered {message.deliveries} times "
                f"(more than --max-deliveries {self._settings.max_deliveries})"
            )
            await self._dead_letter(message, reason)
            return
        spec, problem = read_message(message)
        if spec is None:
            await self._dead_letter(message, problem)
            return
        earlier = self._known.pop(spec.key, None)
        if earlier is not None:
            result = settled_before(
                spec, earlier, target=self._target, run_id=self._pipeline.run_id
            )
        else:
            provisioned = await self._pipeline.provision(spec)
            if provisioned is None:
                # The drain came before its request went out (or before a retry): nothing
                # is half done here; the message goes back to the pool for another worker.
                await self._redis(
                    lambda: self._queue.release(message, self._group), until_done=True
                )
                return
            result = provisioned
        await self._settle(message, spec, result)

    async def _settle(self, message: Message, spec: Spec, result: Result) -> None:
        data = result.to_dict(self._scrub)
        record = orjson.dumps(data)
        settlement = Settlement(
            message.id, spec.key, record, is_permanent=result.is_permanent
        )
        if result.status in SUCCESS:
            # the record another delivery's success turns this one into: the same, "exists"
            exists = orjson.dumps({**data, "status": "exists"})
            outcome = orjson.dumps({"id": result.id, "status": result.status})
            settlement = Settlement(message.id, spec.key, record, exists, outcome)
        written = await self._settler.settle(settlement)
        if written is None:
            log.info("message.settled_elsewhere", message_id=message.id, name=spec.name)
            return
        status = result.status if written == record else "exists"
        self.summary.count(status)
        self._meter.recorded(status)
        if self._on_settled is not None:
            self._on_settled(status)
        log.debug(f"env.{status}", name=spec.name, message_id=message.id)
        self._write_local(written)

    async def _settle_batch(self, batch: list[Settlement]) -> list[bytes | None]:
        settled = await self._redis(
            lambda: self._queue.settle_batch(self._group, batch), until_done=True
        )
        self._check_tally(settled.tally)
        return settled.written

    def _write_local(self, record: bytes) -> None:
        if self._sink is None:
            return
        try:
            self._sink.write_json(record)
        except ResultLogError as exc:
            self._stop.stop(stop_reason_for(exc))

    async def _dead_letter(self, message: Message, reason: str) -> None:
        log.warning("message.dead_lettered", message_id=message.id, reason=reason)
        await self._redis(
            lambda: self._queue.dead_letter(
                message.id,
                self._group,
                fields=message.fields,
                reason=reason,
                deliveries=message.deliveries,
            ),
            until_done=True,
        )
        self.dead_letters += 1

    async def _redis(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        default: T | None = None,
        until_done: bool = False,
    ) -> T:
        """``call()``, waiting out a Redis that is away.

        Reads give up (return ``default``) when the worker is stopping; a
        settle (``until_done``) keeps trying until the grace period ends, so a
        provisioned spec is not left without its record.
        """
        backoff_s = 0.1
        while True:
            try:
                return await call()
            except QueueError as exc:
                if not exc.is_connection:
                    raise
                log.warning("queue.unreachable", error=str(exc), retry_in_s=backoff_s)
            if self._stop.is_stopping and not until_done and default is not None:
                return default
            await anyio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 2.0)


class SettleBatch:
    """Group commit for settles: those that come while one round trip is under way
    go together in the next, so a busy worker settles many messages per script call
    and an idle one waits for nobody.

    Args:
        flush: settles a batch; returns what each message published (``None``:
            settled already).
        limit: the most messages per call.
    """

    def __init__(
        self,
        flush: Callable[[list[Settlement]], Awaitable[list[bytes | None]]],
        *,
        limit: int = 256,
    ) -> None:
        self._flush = flush
        self._limit = limit
        self._waiting: list[_Pending] = []
        self._busy = False

    async def settle(self, settlement: Settlement) -> bytes | None:
        """Settle one message, with whatever else is waiting; what it published."""
        pending = _Pending(settlement)
        self._waiting.append(pending)
        while not pending.is_settled:
            if not self._busy:
                await self._lead()
                continue
            await pending.woken.wait()
            pending.woken = anyio.Event()
        if pending.error is not None:
            raise pending.error
        return pending.written

    async def _lead(self) -> None:
        """Flush batches until nothing waits.

        A failure fails every waiting settle. A cancelled leader puts its batch
        back (the script may or may not have run: settling again is harmless) and
        wakes the next waiter to lead.
        """
        self._busy = True
        try:
            while self._waiting:
                # let the other handlers that finished in this turn of the loop join in
                await anyio.lowlevel.checkpoint()
                batch = self._waiting[: self._limit]
                del self._waiting[: self._limit]
                try:
                    written = await self._flush([p.settlement for p in batch])
                except anyio.get_cancelled_exc_class():
                    self._waiting[:0] = batch
                    raise
                except BaseException as exc:
                    for pending in [*batch, *self._waiting]:
                        pending.settled(error=exc)
                    self._waiting.clear()
                    raise
                for pending, value in zip(batch, written, strict=True):
                    pending.settled(written=value)
        finally:
            self._busy = False
            if self._waiting:
                self._waiting[0].woken.set()


class _Pending:
    """One settle waiting for its batch."""

    def __init__(self, settlement: Settlement) -> None:
        self.settlement = settlement
        self.woken = anyio.Event()
        self.is_settled = False
        self.written: bytes | None = None
        self.error: BaseException | None = None

    def settled(
        self, *, written: bytes | None = None, error: BaseException | None = None
    ) -> None:
        self.is_settled = True
        self.written, self.error = written, error
        self.woken.set()


def settled_before(
    spec: Spec, earlier: dict[str, object], *, target: str, run_id: str | None = None
) -> Result:
    """The record of a spec an earlier message already settled: ``exists``, same id, nothing sent."""
    now = utcnow()
    env_id = earlier.get("id")
    return Result(
        name=spec.name,
        status="exists",
        id=env_id if isinstance(env_id, str) else None,
        attempts=0,
        http_status=None,
        error=None,
        source=spec.location,
        started_at=now,
        finished_at=now,
        spec_key=spec.key,
        target=target,
        run_id=run_id,
    )


__all__ = ["SettleBatch", "Worker", "settled_before"]
