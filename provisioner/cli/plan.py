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
from provisioner.core.service import Provisioner, ProvisionerConfig
from provisioner.errors import ApiError, SourceError, TransportError
from provisioner.files.sources import JobFiles, scan
from provisioner.lifecycle.plan import (
    FORMAT_VERSION,
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
from provisioner.spec import Spec

Environments = Mapping[str, Mapping[str, Any]]


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
            environments = eventloop.run(read_environments(config, args))
        except (ApiError, TransportError) as exc:
            say(f"error: cannot read the environments: {exc}", scrub)
            return PlanExit.ERROR
        specs = (item for item in files if isinstance(item, Spec))
        if args.format == "json":
            counts = _write_json(specs, environments, config.target_name, sys.stdout)
        else:
            counts = _write_text(specs, environments, sys.stdout)
    return plan_exit(counts, detailed=bool(args.detailed_exitcode))


async def read_environments(
    config: ProvisionerConfig, args: argparse.Namespace
) -> Environments:
    """Every environment by name, from one paced and retried walk of the list."""
    rate = pacing(args)
    limiter = make_limiter(rate["rate_per_s"], adaptive=rate["adaptive_rate"])
    stop = StopController(grace_s=0)
    async with Provisioner.from_config(config, limiter=limiter, stop=stop) as service:
        return await service.pipeline.environments()


def _write_text(
    specs: Iterable[Spec], environments: Environments, out: TextIO
) -> PlanCounts:
    counts = PlanCounts()
    for spec in specs:
        change = classify(spec, environments.get(spec.name))
        counts.add(change)
        out.write(render(change) + "\n")
    for line in render_totals(counts):
        out.write(line + "\n")
    return counts


def _write_json(
    specs: Iterable[Spec], environments: Environments, target: str, out: TextIO
) -> PlanCounts:
    """One JSON document, written a spec at a time (memory stays flat)."""
    counts = PlanCounts()
    head = {"format_version": FORMAT_VERSION, "target": target}
    out.write(orjson.dumps(head).decode()[:-1] + ',"specs":[')
    separator = "\n"
    for spec in specs:
        change = classify(spec, environments.get(spec.name))
        counts.add(change)
        out.write(separator + orjson.dumps(change.to_dict()).decode())
        separator = ",\n"
    tail = {
        "counts": counts.to_dict(),
        "total": counts.total,
        "has_changes": counts.has_changes,
    }
    out.write("\n]," + orjson.dumps(tail).decode()[1:] + "\n")
    return counts


__all__ = ["cmd_plan", "read_environments"]
