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

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import orjson
import structlog

from provisioner.core.pipeline import Pipeline
from provisioner.core.runner import stop_reason_for
from provisioner.core.summary import Summary, utcnow
from provisioner.errors import QueueError, ResultLogError
from provisioner.observe.meter import NO_METER, Meter
from provisioner.pacing.stopping import StopController
from provisioner.queue.message import read_message
from provisioner.queue.streams import JobQueue, Message
from provisioner.results import SUCCESS, Result, ResultSink
from provisioner.settings import WorkerSettings
from provisioner.spec import Spec

T = TypeVar("T")
_NOTHING: list[Message] = []
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
    ) -> None:
        self._meter = meter
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
        self._slot_freed = anyio.Event()
        self._last_claim = float("-inf")
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
                await self._dispatch(group)
        finally:
            self._stop.close()
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

    async def _dispatch(self, group: anyio.abc.TaskGroup) -> None:
        while not self._stop.is_stopping:
            free = self._settings.concurrency - self._in_flight
            if free == 0:
                self._slot_freed = anyio.Event()
                with anyio.move_on_after(self._settings.poll_s):
                    await self._slot_freed.wait()
                continue
            batch = await self._next_batch(free)
            if not batch:
                if self._settings.exit_when_empty and await self._is_finished():
                    return
                continue
            for message in batch:
                self._in_flight += 1
                group.start_soon(self._handle, message)

    async def _is_finished(self) -> bool:
        if self._in_flight:
            return False
        return bool(await self._redis(lambda: self._queue.is_drained(self._group)))

    async def _next_batch(self, free: int) -> list[Message]:
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
            self._slot_freed.set()

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
        earlier = await self._redis(lambda: self._queue.outcome(spec.key))
        if earlier is not None:
            result = settled_before(spec, earlier, target=self._target)
        else:
            provisioned = await self._pipeline.provision(spec)
            if provisioned is None:
                # The drain came before its request went out (or before a retry): nothing
                # is half done here; the message stays pending and a later delivery does it.
                return
            result = provisioned
        await self._settle(message, spec, result)

    async def _settle(self, message: Message, spec: Spec, result: Result) -> None:
        scrub = self._scrub
        record = orjson.dumps(result.to_dict(scrub))
        exists = None
        if result.status in SUCCESS:
            as_exists = dataclasses.replace(result, status="exists")
            exists = orjson.dumps(as_exists.to_dict(scrub))
        written = await self._redis(
            lambda: self._queue.settle(
                message.id,
                self._group,
                spec_key=spec.key,
                record=record,
                exists_record=exists,
            ),
            until_done=True,
        )
        if written is None:
            log.info("message.settled_elsewhere", message_id=message.id, name=spec.name)
            return
        status = orjson.loads(written)["status"]
        self.summary.count(status)
        self._meter.recorded(status)
        if self._on_settled is not None:
            self._on_settled(status)
        log.debug(f"env.{status}", name=spec.name, message_id=message.id)
        self._write_local(written)

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


def settled_before(spec: Spec, earlier: dict[str, object], *, target: str) -> Result:
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
    )


__all__ = ["Worker", "settled_before"]
