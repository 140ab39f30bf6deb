"""``provisioner import``: record environments that exist already in a result log.

It sends no write: it validates the job files, reads the list endpoint once
(every page, paced and retried as ``plan`` reads it), matches each spec by
name (:mod:`provisioner.lifecycle.adopt`) and appends an ``exists`` record per
environment found to ``--into``, locked and compacted as ``run`` does its log,
so ``plan``, ``run --update`` and ``archive``/``delete --include-existing``
take them over. One line (or JSON object) per spec goes to stdout; messages go
to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from provisioner.cli import eventloop
from provisioner.cli.common import (
    ExitCode,
    api_settings,
    print_errors,
    print_json,
    retry_policy,
    say,
    stdin_stream,
    warnings_to_stderr,
)
from provisioner.cli.flags import UsageError
from provisioner.cli.plan import read_environments
from provisioner.core.service import ProvisionerConfig
from provisioner.core.summary import utcnow
from provisioner.errors import ApiError, ResultLogError, SourceError, TransportError
from provisioner.files.sources import JobFiles, scan
from provisioner.lifecycle.adopt import (
    AdoptCounts,
    Adoption,
    adopt,
    record,
    render,
    render_totals,
)
from provisioner.observe import log
from provisioner.redact import Scrubber
from provisioner.results import LogState, ResultSink, prepare_resume, read_log
from provisioner.results.lock import LogLock
from provisioner.spec import Spec


def cmd_import(args: argparse.Namespace) -> int:
    """Run ``provisioner import`` with parsed, resolved flags; return the exit code."""
    into = args.into
    if into is None:
        raise UsageError("--into is required: the result log to record them in")
    api = api_settings(args)
    with warnings_to_stderr():
        policy = retry_policy(args)
    config = ProvisionerConfig(api=api, policy=policy, concurrency=1)
    scrub = Scrubber([api.token.reveal()])
    log.configure(
        fmt=args.log_format, level=args.log_level, secrets=[api.token.reveal()]
    )
    with (
        LogLock(into, command="provisioner import"),
        JobFiles(args.jobs, stdin=stdin_stream()) as files,
    ):
        try:
            report = scan(files)
        except SourceError as exc:
            say(f"error: {exc}; nothing was imported", scrub)
            return ExitCode.USAGE
        if report.errors:
            print_errors(report.errors)
            invalid = report.total - report.valid
            say(f"{invalid} of {report.total} specs are invalid; nothing was imported")
            return ExitCode.USAGE
        try:
            listing = eventloop.run(read_environments(config, args))
        except (ApiError, TransportError) as exc:
            say(f"error: cannot read the environments: {exc}", scrub)
            return ExitCode.FAILED
        state = read_log(into, target=config.target_name)
        _warn_foreign(state, into, config.target_name, scrub)
        specs = (item for item in files if isinstance(item, Spec))
        adoptions = _decide(specs, listing.environments, state, args)
        try:
            _write(adoptions, state, into=into, target=config.target_name, args=args)
        except ResultLogError as exc:
            say(f"error: {exc}; run the same command again", scrub)
            return ExitCode.LOG_WRITE
    counts = _output(adoptions, into=into, target=config.target_name, args=args)
    say(
        f"{counts.imported} records written to {into}",
        scrub,
        event="import.finished",
        into=into,
        counts=counts.to_dict(),
    )
    return ExitCode.OK


def _decide(
    specs: Iterable[Spec],
    environments: Mapping[str, Mapping[str, Any]],
    state: LogState,
    args: argparse.Namespace,
) -> list[Adoption]:
    return [
        adopt(
            spec,
            environments.get(spec.name),
            last=state.last.get(spec.name),
            include_archived=bool(args.include_archived),
        )
        for spec in specs
    ]


def _write(
    adoptions: list[Adoption],
    state: LogState,
    *,
    into: str,
    target: str,
    args: argparse.Namespace,
) -> None:
    """Append the records, after removing this API's older records of their names.

    Raises:
        ResultLogError: the log could not be compacted or written.
    """
    written = [a for a in adoptions if a.is_written]
    if not written:
        return
    resume = prepare_resume(
        into,
        state,
        target=target,
        input_names={a.name for a in written},
        input_keys={a.name: a.key for a in written},
        retry_failed=True,
    )
    sink = ResultSink.open(into, scrub=Scrubber(), run_id=args.run_id)
    at = utcnow()
    try:
        for adoption in written:
            earlier = resume.created_ids.get(adoption.name) == adoption.id
            sink.write(
                record(
                    adoption,
                    target=target,
                    at=at,
                    created_earlier=earlier,
                    run_id=args.run_id,
                )
            )
    finally:
        sink.close()


def _output(
    adoptions: list[Adoption], *, into: str, target: str, args: argparse.Namespace
) -> AdoptCounts:
    counts = AdoptCounts()
    for adoption in adoptions:
        counts.add(adoption)
    if args.format == "json":
        print_json(
            {
                "target": target,
                "into": into,
                "specs": [a.to_dict() for a in adoptions],
                "counts": counts.to_dict(),
                "total": counts.total,
            }
        )
        return counts
    for adoption in adoptions:
        sys.stdout.write(render(adoption) + "\n")
    for line in render_totals(counts, into=into):
        sys.stdout.write(line + "\n")
    return counts


def _warn_foreign(state: LogState, into: str, target: str, scrub: Scrubber) -> None:
    for other, count in state.foreign.items():
        say(
            f"warning: {into} holds {count} records made against {other}; "
            f"kept as they are by this import from {target}",
            scrub,
            event="results.foreign_ignored",
            results=into,
            count=count,
            other_target=scrub(other),
        )


__all__ = ["cmd_import"]
