"""The queue commands: ``enqueue``, ``worker`` and ``queue-status``.

Each turns its parsed flags into settings, runs its part of the queue mode and
maps the outcome to an exit code, as ``cli/main.py`` does for ``run``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from provisioner.cli import eventloop
from provisioner.cli.common import (
    ExitCode,
    api_settings,
    metrics_settings,
    open_meter,
    pacing,
    print_errors,
    print_json,
    retry_policy,
    say,
    stdin_stream,
    validation_document,
    warnings_to_stderr,
)
from provisioner.cli.flags import STDIO, UsageError
from provisioner.core.pipeline import Pipeline
from provisioner.core.service import Provisioner, ProvisionerConfig
from provisioner.core.summary import Summary, describe
from provisioner.files.sources import JobFiles, ScanReport, scan
from provisioner.observe import log
from provisioner.observe.progress import ProgressLog, progress_mode
from provisioner.pacing.choice import make_pool_limiter
from provisioner.pacing.stopping import StopController, StopKind
from provisioner.pacing.tolerance import MaxFailures
from provisioner.queue.message import message_fields
from provisioner.queue.streams import JobQueue, QueueStatus
from provisioner.queue.worker import Worker
from provisioner.redact import Scrubber
from provisioner.results import ResultSink
from provisioner.results.lock import LogLock
from provisioner.settings import (
    MetricsSettings,
    QueueRetention,
    RedisSettings,
    WorkerSettings,
)
from provisioner.spec import Spec


def redis_settings(args: argparse.Namespace) -> RedisSettings:
    """The queue the flags name."""
    names: dict[str, str] = {"stream": args.stream}
    if getattr(args, "group", None):
        names["group"] = args.group
    names["consumer"] = getattr(args, "consumer", None) or default_consumer()
    return RedisSettings.from_env(
        os.environ,
        url=args.redis,
        password_file=args.redis_password_file,
        ca_file=args.redis_ca_file,
        **names,
    )


def default_consumer() -> str:
    """A consumer name unique to this process: host and PID."""
    return f"{socket.gethostname()}-{os.getpid()}"


# A one-shot command gives up on an unreachable Redis after a few seconds; a
# worker (a long-running service) waits it out.
ONE_SHOT_RETRIES = 2


@contextlib.asynccontextmanager
async def _connected(
    settings: RedisSettings, *, retries: int = ONE_SHOT_RETRIES
) -> AsyncIterator[JobQueue]:
    queue = await JobQueue.open(settings, retries=retries)
    try:
        yield queue
    finally:
        await queue.close()


# --- enqueue ------------------------------------------------------------------


def cmd_enqueue(args: argparse.Namespace) -> int:
    """Validate exactly as ``run`` does, then queue every spec; nothing is queued if one is invalid."""
    settings = redis_settings(args)
    log.configure(fmt=args.log_format, level=args.log_level)
    as_json = args.format == "json"
    with JobFiles(args.jobs, stdin=stdin_stream()) as files:
        report = scan(files)
        if report.errors:
            if as_json:  # the errors are in the document, not on stderr
                print_json(_enqueued(settings, report, queued=0))
            else:
                print_errors(report.errors)
            invalid = report.total - report.valid
            say(
                f"{invalid} of {report.total} specs are invalid; nothing was queued",
                event="enqueue.refused",
                level="error",
                invalid=invalid,
                total=report.total,
            )
            return ExitCode.USAGE
        count = eventloop.run(_enqueue(settings, files))
    if as_json:
        print_json(_enqueued(settings, report, queued=count))
    else:
        print(
            f"queued {count} specs on stream {settings.stream} ({settings.shown_url})"
        )
    return ExitCode.OK


def _enqueued(
    settings: RedisSettings, report: ScanReport, *, queued: int
) -> dict[str, Any]:
    """What ``enqueue --format json`` prints: where, how many queued and skipped, and why."""
    return {
        "stream": settings.stream,
        "redis": settings.shown_url,
        "queued": queued,
        "skipped": report.total - queued,
        **validation_document(report),
    }


async def _enqueue(settings: RedisSettings, files: JobFiles) -> int:
    async with _connected(settings) as queue:
        entries = (message_fields(item) for item in files if isinstance(item, Spec))
        return await queue.add(entries)


# --- worker -------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    """Join the stream's group and provision what it holds, until stopped or drained."""
    if args.format == "json" and args.results == STDIO:
        raise UsageError("--format json and --results - would both write to stdout")
    redis = redis_settings(args)
    api = api_settings(args)
    with warnings_to_stderr():
        settings = WorkerSettings(
            concurrency=int(args.concurrency),
            **pacing(args),
            claim_idle_s=float(args.claim_idle),
            max_deliveries=int(args.max_deliveries),
            exit_when_empty=bool(args.exit_when_empty),
            grace_s=float(args.grace),
            results_path=args.results,
            progress_interval_s=float(args.progress_interval),
            retention=QueueRetention(
                results=args.results_retention,
                dead_letters=args.dead_letters_retention,
                outcome_days=int(args.outcomes_retention),
            ),
        )
        config = ProvisionerConfig(
            api=api,
            policy=retry_policy(args),
            concurrency=settings.concurrency,
            on_conflict=args.on_conflict,
            run_id=args.run_id,
        )
    log.configure(
        fmt=args.log_format, level=args.log_level, secrets=[api.token.reveal()]
    )
    scrub = Scrubber([api.token.reveal()])
    with _local_log(settings.results_path):
        worker_summary, dead = eventloop.run(
            _work(
                config,
                redis,
                settings,
                scrub,
                metrics_settings(args),
                events=progress_mode(
                    enabled=True, stream=sys.stderr, log_format=args.log_format
                )
                == "events",
                max_failures=args.max_failures,
            )
        )
    if args.format == "json":
        print_json(_worker_document(redis, worker_summary, dead, scrub))
    lines = describe(worker_summary, total=worker_summary.settled, resumable=False)
    if log.is_event_stream():
        say(
            lines[0],
            scrub,
            event="worker.finished",
            consumer=redis.consumer,
            notes=[scrub(line) for line in lines[1:]],
            dead_lettered=dead,
            **worker_summary.to_dict(),
        )
        return _worker_exit(worker_summary, dead)
    for line in lines:
        say(f"worker {redis.consumer}: {line}", scrub)
    if dead:
        say(f"worker {redis.consumer}: {dead} messages dead-lettered", scrub)
    return _worker_exit(worker_summary, dead)


def _worker_document(
    redis: RedisSettings, summary: Summary, dead: int, scrub: Scrubber
) -> dict[str, Any]:
    """What ``worker --format json`` prints when the worker stops: its summary."""
    return {
        "stream": redis.stream,
        "group": redis.group,
        "consumer": redis.consumer,
        **summary.to_dict(),
        "stopped_by": scrub(summary.stopped_by or "") or None,
        "settled": summary.settled,
        "dead_lettered": dead,
        "exit_code": int(_worker_exit(summary, dead)),
    }


@contextlib.contextmanager
def _local_log(path: str | None) -> Iterator[None]:
    """Lock the worker's own result log, if it keeps one in a file."""
    if path is None or path == "-":
        yield
        return
    with LogLock(path, command="provisioner worker"):
        yield


async def _work(
    config: ProvisionerConfig,
    redis: RedisSettings,
    settings: WorkerSettings,
    scrub: Scrubber,
    metrics: MetricsSettings | None = None,
    *,
    events: bool = False,
    max_failures: MaxFailures | None = None,
) -> tuple[Summary, int]:
    stop = StopController(grace_s=settings.grace_s)
    async with _connected(redis, retries=8) as queue:
        queue.retention = settings.retention
        limiter = make_pool_limiter(
            queue.pace(),
            settings.rate_per_s,
            adaptive=settings.adaptive_rate,
            is_stopping=lambda: stop.halts_attempts,
        )
        async with (
            open_meter(
                metrics, limiter=limiter, queue=queue, group=redis.group
            ) as meter,
            Provisioner.from_config(
                config, limiter=limiter, stop=stop, meter=meter, replay_is_ours=True
            ) as service,
        ):
            pipeline = service.pipeline
            sink = None
            if settings.results_path is not None:
                sink = ResultSink.open(settings.results_path, scrub=scrub)
            progress = _progress(settings, pipeline, events=events)
            worker = Worker(
                queue=queue,
                pipeline=pipeline,
                stop=stop,
                settings=settings,
                group=redis.group,
                consumer=redis.consumer,
                target=config.target_name,
                scrub=scrub,
                sink=sink,
                meter=meter,
                on_settled=None if progress is None else progress.count,
                max_failures=max_failures,
            )
            try:
                with eventloop.signals_stop(stop), progress or contextlib.nullcontext():
                    summary = await worker.run()
            finally:
                if sink is not None:
                    sink.close()
            return summary, worker.dead_letters


def _progress(
    settings: WorkerSettings, pipeline: Pipeline, *, events: bool
) -> ProgressLog | None:
    """Off a terminal, a ``worker.progress`` event every few seconds (a queue has no total)."""
    if not events:
        return None
    return ProgressLog(
        total=None,
        interval_s=settings.progress_interval_s,
        retries=lambda: pipeline.counts.retries,
        event="worker.progress",
    )


def _worker_exit(summary: Summary, dead: int) -> int:
    stop = summary.stop
    if stop is not None and stop.kind is StopKind.INTERRUPTED and summary.interrupted:
        return ExitCode.INTERRUPTED
    if stop is not None and stop.kind is StopKind.LOG_WRITE:
        return ExitCode.LOG_WRITE
    if stop is not None and stop.kind is StopKind.FAILURES:
        return ExitCode.TOO_MANY_FAILURES
    if (
        summary.failed
        or dead
        or (stop is not None and stop.kind is not StopKind.INTERRUPTED)
    ):
        return ExitCode.FAILED
    return ExitCode.OK


# --- queue-status ---------------------------------------------------------------


def cmd_queue_status(args: argparse.Namespace) -> int:
    """Print the stream's length, pending messages per consumer, results and dead letters.

    With ``--reset-failures`` the pool's ``--max-failures`` tally starts again first.
    """
    settings = redis_settings(args)
    status = eventloop.run(_status(settings, reset_failures=bool(args.reset_failures)))
    if args.format == "json":
        print_json(status.to_dict())
    else:
        sys.stdout.write(render_status(status, settings))
    return ExitCode.OK


async def _status(settings: RedisSettings, *, reset_failures: bool) -> QueueStatus:
    async with _connected(settings) as queue:
        if reset_failures:
            await queue.reset_failures()
            say(
                f"the failure count of stream {settings.stream} is reset: workers "
                "stopped by --max-failures can be started again",
                event="queue.failures_reset",
                stream=settings.stream,
            )
        return await queue.status(settings.group)


def render_status(status: QueueStatus, settings: RedisSettings) -> str:
    """The status as a few aligned lines for a terminal."""
    lines = [
        f"stream {status.stream} on {settings.shown_url}, group {settings.group}",
        f"  waiting or in progress  {status.length}",
        f"  pending (delivered, not acknowledged)  {status.pending}",
    ]
    lines += [
        f"    {c.name}  pending {c.pending}  idle {c.idle_s:.1f} s"
        for c in status.consumers
    ]
    lines += [
        f"  settled specs  {status.settled}",
        f"  results  {status.results}",
        f"  dead letters  {status.dead_letters}",
    ]
    if status.pool_rate_per_s is not None:
        lines.append(f"  pool rate (adaptive)  {status.pool_rate_per_s:g}/s")
    tally = status.failures
    lines.append(
        f"  failures for --max-failures  {tally.failed} of {tally.finished} finished"
    )
    return "\n".join(lines) + "\n"


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "enqueue": cmd_enqueue,
    "worker": cmd_worker,
    "queue-status": cmd_queue_status,
}

__all__ = ["COMMANDS", "default_consumer", "redis_settings", "render_status"]
