"""The file driver: specs from job files through the pipeline into the result log.

``concurrency`` workers pull from one iterator of specs, so memory stays flat
however many there are. Every spec ends in exactly one of: a record in the sink,
a skip (already settled by an earlier run against the same API), or an
interruption (no record, so a later run picks it up). With a
:class:`~provisioner.core.salvage.Salvage`, every spec that did not finish is
handed to it too, and when the run stops early the rest of the input is read
through to salvage the specs never started. The runner knows nothing of files,
Redis or terminals: it takes any iterable of specs and a sink.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

import anyio
import structlog

from provisioner.core.outcome import invalid_result
from provisioner.core.pipeline import Pipeline
from provisioner.core.salvage import (
    FAILED_BEFORE,
    INTERRUPTED,
    NOT_STARTED,
    Salvage,
    error_type_of,
)
from provisioner.core.summary import Summary, utcnow
from provisioner.errors import ResultLogError
from provisioner.observe.meter import NO_METER, Meter
from provisioner.pacing.stopping import (
    StopController,
    StopKind,
    StopReason,
    run_workers,
)
from provisioner.pacing.tolerance import MaxFailures
from provisioner.results import Result, ResultSink, ResumeState
from provisioner.spec import InvalidSpec, Spec

log = structlog.get_logger("provisioner.runner")


class Runner:
    """Runs every spec of a job through the pipeline and records each outcome.

    Args:
        pipeline: provisions one spec.
        stop: the run's stop controller (shared with the pipeline).
        sink: where records go.
        concurrency: specs in progress at most.
        target: what records name as their API.
        resume: what an earlier run against this API already settled.
        on_result: called with each record after it is written (progress display).
        meter: counts each record by status (``--metrics-port``).
        salvage: receives every spec that did not finish (``--salvage``).
        max_failures: stop once this run's failures that retrying cannot fix are
            past it (``--max-failures``); specs skipped on resume count for nothing.
    """

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        stop: StopController,
        sink: ResultSink,
        concurrency: int,
        target: str | None = None,
        resume: ResumeState | None = None,
        on_result: Callable[[Result], None] | None = None,
        meter: Meter = NO_METER,
        salvage: Salvage | None = None,
        max_failures: MaxFailures | None = None,
    ) -> None:
        self._meter = meter
        self._salvage = salvage
        self._tolerance = None if max_failures is None else FailureCount(max_failures)
        self._pipeline = pipeline
        self._stop = stop
        self._sink = sink
        self._concurrency = concurrency
        self._target = target
        self._resume = resume or ResumeState(done={})
        self._on_result = on_result
        self._items: Iterator[Spec | InvalidSpec] = iter(())
        self.summary = Summary(salvage=salvage)

    async def run(self, items: Iterable[Spec | InvalidSpec]) -> Summary:
        """Process every item (or until stopped) and return the summary."""
        self._items = iter(items)
        start = anyio.current_time()
        # A pipeline may serve several runs (the library's): count this run's only.
        counts = self._pipeline.counts
        requests_before, retries_before = counts.requests, counts.retries
        try:
            await run_workers(self._stop, self._concurrency, self._worker)
            self._salvage_rest()
        finally:
            self._sink.sync()
            self.summary.wall_s = anyio.current_time() - start
            self.summary.requests = counts.requests - requests_before
            self.summary.retries = counts.retries - retries_before
            self.summary.stop = self._stop.reason
        return self.summary

    def _take(self) -> Spec | InvalidSpec | None:
        if self._stop.is_stopping:
            return None
        return next(self._items, None)

    async def _worker(self) -> None:
        while (item := self._take()) is not None:
            if isinstance(item, InvalidSpec):
                result = invalid_result(item, target=self._target, now=utcnow())
                reason = result.error.message if result.error else ""
                log.warning(
                    "spec.rejected", name=item.name, source=item.location, reason=reason
                )
                self._record(result)
            elif (earlier := self._resume.status_of(item.name)) is not None:
                self._count_earlier(item, earlier)
            else:
                await self._provision(item)

    async def _provision(self, spec: Spec) -> None:
        try:
            result = await self._pipeline.provision(spec)
        except anyio.get_cancelled_exc_class():
            self.summary.interrupted += 1
            self._salvage_spec(spec, INTERRUPTED)
            raise
        if result is None:
            self.summary.interrupted += 1
            self._salvage_spec(spec, INTERRUPTED)
            return
        if self._resume.was_created_here(result):
            result = replace(result, created_earlier=True)
        if not self._record(result):
            self._salvage_spec(spec, INTERRUPTED)
        elif (error_type := error_type_of(result)) is not None:
            self._salvage_spec(spec, error_type)

    def _count_earlier(self, spec: Spec, status: str) -> None:
        """A spec an earlier run settled: skipped, or still failed (not retried)."""
        if status == "failed":
            self.summary.failed += 1
            self.summary.failed_before += 1
            self._salvage_spec(spec, FAILED_BEFORE)
        else:
            self.summary.skipped += 1

    def _salvage_spec(self, spec: Spec, error_type: str) -> None:
        if self._salvage is not None:
            self._salvage.add(spec, error_type=error_type)

    def _salvage_rest(self) -> None:
        """After an early stop, salvage the specs never taken (not those settled before)."""
        if self._salvage is None:
            return
        for item in self._items:
            if not isinstance(item, Spec):
                continue
            earlier = self._resume.status_of(item.name)
            if earlier is None:
                self._salvage.add(item, error_type=NOT_STARTED)
            elif earlier == "failed":
                self._salvage.add(item, error_type=FAILED_BEFORE)

    def _record(self, result: Result) -> bool:
        """Write and count ``result``; ``False`` when it could not be stored."""
        try:
            self._sink.write(result)
        except ResultLogError as exc:
            self.summary.interrupted += 1
            self._stop.stop(stop_reason_for(exc))
            return False
        self.summary.record(result)
        if self._tolerance is not None and (stop := self._tolerance.add(result)):
            self._stop.stop(stop)
        self._meter.recorded(result.status)
        if self._on_result is not None:
            self._on_result(result)
        return True


class FailureCount:
    """One run's tally for ``--max-failures``: specs sent and finished, and those of
    them that failed for good; invalid specs (never sent) count for neither."""

    def __init__(self, limit: MaxFailures) -> None:
        self._limit = limit
        self.failed = 0
        self.finished = 0

    def add(self, result: Result) -> StopReason | None:
        """Count ``result``; the stop it brings, if it is one too many."""
        if result.status == "invalid":
            return None
        self.finished += 1
        self.failed += result.is_permanent
        if not self._limit.is_exceeded(failed=self.failed, finished=self.finished):
            return None
        log.warning(
            "run.failure_limit_reached",
            failed=self.failed,
            finished=self.finished,
            max_failures=str(self._limit),
        )
        return self._limit.reason(failed=self.failed, finished=self.finished)


def stop_reason_for(exc: ResultLogError) -> StopReason:
    """A record that cannot be stored stops the run as a signal would."""
    if isinstance(exc.__cause__, BrokenPipeError):
        return StopReason(StopKind.PIPE, "the reader of the results went away")
    log.error("results.write_failed", error=str(exc))
    return StopReason(StopKind.LOG_WRITE, str(exc))


__all__ = ["FailureCount", "Runner", "stop_reason_for"]
