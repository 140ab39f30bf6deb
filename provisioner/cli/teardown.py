"""``provisioner archive`` and ``provisioner delete``: tear down what a run created.

Both read a run's result log (``--from``), say what they will do, ask
``Proceed? [y/N]`` on a terminal (``--yes`` skips it and is required without
one), then act through :mod:`provisioner.lifecycle.teardown` with ``run``'s concurrency,
rate, retries and drain, writing their own resumable result log. Messages go
to stderr, as ``run``'s do.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from provisioner.cli import eventloop
from provisioner.cli.common import (
    STOP_EXITS,
    ExitCode,
    api_settings,
    confirm,
    pacing,
    print_json,
    retry_policy,
    say,
    warnings_to_stderr,
)
from provisioner.cli.flags import UsageError
from provisioner.core.service import Provisioner, ProvisionerConfig
from provisioner.lifecycle.teardown import (
    DONE,
    Action,
    Selection,
    Teardown,
    TeardownCounts,
    select,
    settled,
)
from provisioner.observe import log
from provisioner.pacing.choice import make_limiter
from provisioner.pacing.retry import RetryPolicy
from provisioner.pacing.stopping import StopController
from provisioner.redact import Scrubber
from provisioner.results import ResultSink, is_regular_log
from provisioner.results.lock import LogLock
from provisioner.settings import ApiSettings


@dataclass(frozen=True, slots=True)
class _Job:
    """Everything a teardown decided from argv and the environment."""

    action: Action
    source: str
    results: str
    api: ApiSettings
    policy: RetryPolicy
    args: argparse.Namespace
    scrub: Scrubber


def default_results(source: str, action: Action) -> str:
    """``results.jsonl`` -> ``results.delete.jsonl``: one teardown log per run log and action."""
    stem = source.removesuffix(".jsonl")
    return f"{stem}.{action}.jsonl"


def cmd_teardown(args: argparse.Namespace) -> int:
    """Run ``provisioner archive``/``delete`` with parsed, resolved flags; return the exit code."""
    job = _job(args)
    log.configure(
        fmt=args.log_format, level=args.log_level, secrets=[job.api.token.reveal()]
    )
    with LogLock(job.results, command=f"provisioner {job.action}"):
        selection = select(
            job.source,
            target=job.api.base_url,
            include_existing=bool(args.include_existing),
        )
        done = settled(
            job.results, selection.items, target=job.api.base_url, action=job.action
        )
        todo = len({i.env_id for i in selection.items} - done)
        _announce(job, selection, todo=todo, done=len(done))
        if todo == 0:
            if args.format == "json":
                nothing = TeardownCounts(skipped=len(done))
                print_json(_document(job, nothing, total=len(selection.items)))
            return ExitCode.OK
        refused = confirm(
            job.action,
            yes=bool(args.yes),
            cancelled=f"{job.action} cancelled; nothing was sent",
        )
        if refused is not None:
            return refused
        counts = eventloop.run(_run(job, selection, done))
    _report(job, counts, total=len(selection.items))
    if args.format == "json":
        print_json(_document(job, counts, total=len(selection.items)))
    return _exit_code(counts)


def _document(job: _Job, counts: TeardownCounts, *, total: int) -> dict[str, Any]:
    """What ``--format json`` prints when the teardown ends: its summary."""
    return {
        "action": job.action,
        "from": job.source,
        "target": job.api.base_url,
        "results": job.results,
        "counts": {
            DONE[job.action]: counts.done,
            "failed": counts.failed,
            "skipped": counts.skipped,
            "interrupted": counts.interrupted,
        },
        "total": total,
        "requests": counts.requests,
        "retries": counts.retries,
        "wall_s": round(counts.wall_s, 3),
        "stopped_by": None if counts.stop is None else job.scrub(counts.stop.text),
        "exit_code": int(_exit_code(counts)),
    }


def _job(args: argparse.Namespace) -> _Job:
    """Check the paths and build the settings.

    Raises:
        UsageError: no ``--from``, one that is not a result log, or a ``--results`` that is not usable.
    """
    action: Action = args.command
    source = getattr(args, "from")
    if source is None:
        raise UsageError("--from is required: the result log of the run to tear down")
    if not is_regular_log(source):
        raise UsageError(f"--from {source}: no such result log (a regular file)")
    results = args.results or default_results(source, action)
    if results == "-":
        raise UsageError(
            f"{action} needs --results to be a file: it is how a re-run resumes"
        )
    if os.path.realpath(results) == os.path.realpath(source):
        raise UsageError(f"--results {results} would write into the --from log")
    api = api_settings(args)
    with warnings_to_stderr():
        policy = retry_policy(args)
    scrub = Scrubber([api.token.reveal()])
    return _Job(action, source, results, api, policy, args, scrub)


def _announce(job: _Job, selection: Selection, *, todo: int, done: int) -> None:
    """What will happen, before anything is sent (the confirmation asks about this)."""
    for other, count in selection.foreign.items():
        say(
            f"warning: {job.source} holds {count} records made against {other}; "
            f"ignored for this {job.action} against {job.api.base_url}",
            job.scrub,
            event="results.foreign_ignored",
            results=job.source,
            count=count,
            other_target=job.scrub(other),
        )
    kinds = "created or found" if job.args.include_existing else "created"
    say(
        f"will {job.action} {todo} environments {kinds} by {job.source} "
        f"against {job.api.base_url}",
        job.scrub,
        event="teardown.planned",
        action=job.action,
        todo=todo,
        source=job.source,
        target=job.api.base_url,
    )
    if done:
        say(
            f"{done} already {DONE[job.action]} (in {job.results}): skipped",
            event="teardown.skipped",
            skipped=done,
            results=job.results,
        )
    if selection.left_out:
        say(
            f"{selection.left_out} environments the run found already there "
            "(exists, updated) are left alone; --include-existing adds them",
            event="teardown.left_out",
            left_out=selection.left_out,
        )


async def _run(job: _Job, selection: Selection, done: set[str]) -> TeardownCounts:
    args = job.args
    concurrency = int(args.concurrency)
    rate = pacing(args)
    stop = StopController(grace_s=float(args.grace))
    config = ProvisionerConfig(api=job.api, policy=job.policy, concurrency=concurrency)
    limiter = make_limiter(rate["rate_per_s"], adaptive=rate["adaptive_rate"])
    async with Provisioner.from_config(config, limiter=limiter, stop=stop) as service:
        sink = ResultSink.open(job.results, scrub=job.scrub, run_id=args.run_id)
        teardown = Teardown(
            action=job.action,
            client=service.client,
            policy=job.policy,
            limiter=limiter,
            stop=stop,
            sink=sink,
            concurrency=concurrency,
            target=config.target_name,
        )
        try:
            with eventloop.signals_stop(stop):
                return await teardown.run(selection.items, done=done)
        finally:
            sink.close()


def _report(job: _Job, counts: TeardownCounts, *, total: int) -> None:
    say(
        f"{total} environments: {counts.done} {DONE[job.action]}, {counts.failed} failed, "
        f"{counts.skipped} skipped (already done) in {counts.wall_s:.1f} s "
        f"({counts.requests} requests, {counts.retries} retries)",
        job.scrub,
        event="teardown.finished",
        action=job.action,
        total=total,
        done=counts.done,
        failed=counts.failed,
        skipped=counts.skipped,
        interrupted=counts.interrupted,
        requests=counts.requests,
        retries=counts.retries,
        wall_s=round(counts.wall_s, 3),
        stopped_by=None if counts.stop is None else job.scrub(counts.stop.text),
        exit_code=int(_exit_code(counts)),
    )
    if counts.stop is not None:
        left = total - counts.done - counts.failed - counts.skipped
        say(
            f"stopped ({counts.stop.text}): {left} not {DONE[job.action]} yet; "
            "run the same command again to resume",
            job.scrub,
            event="teardown.stopped",
            level="warning",
            not_done=left,
        )
    say(
        f"results in {job.results}",
        job.scrub,
        event="results.written",
        results=job.results,
    )


def _exit_code(counts: TeardownCounts) -> ExitCode:
    if counts.stop is not None:
        return STOP_EXITS[counts.stop.kind]
    return ExitCode.FAILED if counts.failed else ExitCode.OK


__all__ = ["cmd_teardown", "default_results"]
