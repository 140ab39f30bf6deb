"""``provisioner plan``: validate, read every environment once, print what run would do.

It sends no write: one walk of the list endpoint (every page, archived
included), paced and retried as ``run`` paces and retries, then one line (or
JSON object) per spec from :mod:`provisioner.lifecycle.plan`, then the totals. The plan
goes to stdout; errors go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from provisioner.cli import eventloop
from provisioner.cli.common import (
    api_settings,
    pacing,
    print_errors,
    retry_policy,
    say,
    stdin_stream,
    warnings_to_stderr,
)
from provisioner.cli.flags import STDIO
from provisioner.core.service import Provisioner, ProvisionerConfig
from provisioner.errors import ApiError, ResultLogError, SourceError, TransportError
from provisioner.files.sources import JobFiles, scan
from provisioner.lifecycle.adopt import is_settled
from provisioner.lifecycle.forecast import (
    Forecast,
    PreviousRun,
    RequestCounts,
    forecast,
    previous_run,
    render_forecast,
)
from provisioner.lifecycle.plan import (
    FORMAT_VERSION,
    Change,
    PlanCounts,
    PlanExit,
    classify,
    plan_exit,
    render,
    render_totals,
)
from provisioner.observe import log
from provisioner.pacing.choice import make_limiter
from provisioner.pacing.stopping import StopController
from provisioner.redact import Scrubber
from provisioner.results import LogState, iter_records, read_log
from provisioner.spec import Spec

Environments = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Listing:
    """Every environment by name, and how many list pages the walk read."""

    environments: Environments
    pages: int


def cmd_plan(args: argparse.Namespace) -> int:
    """Run ``provisioner plan`` with parsed, resolved flags; return the exit code."""
    api = api_settings(args)
    with warnings_to_stderr():
        policy = retry_policy(args)
    config = ProvisionerConfig(api=api, policy=policy, concurrency=1)
    scrub = Scrubber([api.token.reveal()])
    log.configure(
        fmt=args.log_format, level=args.log_level, secrets=[api.token.reveal()]
    )
    with JobFiles(args.jobs, stdin=stdin_stream()) as files:
        try:
            report = scan(files)
        except SourceError as exc:
            say(f"error: {exc}; nothing was planned", scrub)
            return PlanExit.ERROR
        if report.errors:
            print_errors(report.errors)
            invalid = report.total - report.valid
            say(f"{invalid} of {report.total} specs are invalid; nothing was planned")
            return PlanExit.ERROR
        try:
            history = _history(args.results, config.target_name)
            listing = eventloop.run(read_environments(config, args))
        except ResultLogError as exc:
            say(f"error: {exc}; nothing was planned", scrub)
            return PlanExit.ERROR
        except (ApiError, TransportError) as exc:
            say(f"error: cannot read the environments: {exc}", scrub)
            return PlanExit.ERROR
        planner = _Planner(listing, history)
        specs = (item for item in files if isinstance(item, Spec))
        if args.format == "json":
            _write_json(specs, planner, config.target_name, sys.stdout, args)
        else:
            _write_text(specs, planner, sys.stdout, args)
    return plan_exit(planner.counts, detailed=bool(args.detailed_exitcode))


async def read_environments(
    config: ProvisionerConfig, args: argparse.Namespace
) -> Listing:
    """Every environment by name, from one paced and retried walk of the list."""
    rate = pacing(args)
    limiter = make_limiter(rate["rate_per_s"], adaptive=rate["adaptive_rate"])
    stop = StopController(grace_s=0)
    async with Provisioner.from_config(config, limiter=limiter, stop=stop) as service:
        environments = await service.pipeline.environments()
        counts = service.pipeline.counts
        return Listing(environments, pages=counts.requests - counts.retries)


@dataclass(frozen=True, slots=True)
class _History:
    """What ``--results`` says: this API's records by name, and its last run."""

    state: LogState
    previous: PreviousRun | None


def _history(path: str | None, target: str) -> _History:
    """The result log's records of ``target`` (nothing without ``--results``).

    Raises:
        ResultLogError: a line other than the last is not a result record.
    """
    if path is None or path == STDIO:
        return _History(LogState(), None)
    state = read_log(path, target=target)
    ours = (r for _, r in iter_records(path) if r.get("target") == target)
    return _History(state, previous_run(ours) if state.is_readable else None)


class _Planner:
    """Classifies each spec and counts the actions and the requests run would send."""

    def __init__(self, listing: Listing, history: _History) -> None:
        self._listing = listing
        self._history = history
        self.counts = PlanCounts()
        self.requests = RequestCounts()

    def change(self, spec: Spec) -> Change:
        change = classify(spec, self._listing.environments.get(spec.name))
        self.counts.add(change)
        state = self._history.state
        # As run --update resumes: settled, unless an exists that recorded a drift.
        settled = is_settled(state.last.get(spec.name), spec.key) and (
            spec.name not in state.drifted
        )
        self.requests.add(change.action, settled=settled)
        return change

    def forecast(self, args: argparse.Namespace) -> Forecast:
        if self.requests.name_check:
            self.requests.list_page = self._listing.pages
        rate = pacing(args)
        return forecast(
            self.requests,
            rate_per_s=rate["rate_per_s"],
            is_adaptive=rate["adaptive_rate"],
            concurrency=int(args.concurrency),
            previous=self._history.previous,
        )


def _write_text(
    specs: Iterable[Spec], planner: _Planner, out: TextIO, args: argparse.Namespace
) -> None:
    for spec in specs:
        out.write(render(planner.change(spec)) + "\n")
    for line in render_totals(planner.counts):
        out.write(line + "\n")
    for line in render_forecast(planner.forecast(args), results=args.results):
        out.write(line + "\n")


def _write_json(
    specs: Iterable[Spec],
    planner: _Planner,
    target: str,
    out: TextIO,
    args: argparse.Namespace,
) -> None:
    """One JSON document, written a spec at a time (memory stays flat)."""
    head = {"format_version": FORMAT_VERSION, "target": target}
    out.write(orjson.dumps(head).decode()[:-1] + ',"specs":[')
    separator = "\n"
    for spec in specs:
        out.write(separator + orjson.dumps(planner.change(spec).to_dict()).decode())
        separator = ",\n"
    counts = planner.counts
    tail = {
        "counts": counts.to_dict(),
        "total": counts.total,
        "has_changes": counts.has_changes,
        "forecast": planner.forecast(args).to_dict(),
    }
    out.write("\n]," + orjson.dumps(tail).decode()[1:] + "\n")


__all__ = ["Listing", "cmd_plan", "read_environments"]
