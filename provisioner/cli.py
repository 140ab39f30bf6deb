"""The command line: argv and environment to settings, run, outcome to exit code.

``provisioner run``, ``provisioner validate`` and ``provisioner emulator``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import structlog

from provisioner import log
from provisioner.client import ApiClient, open_session
from provisioner.errors import ConfigError, ProvisionerError, SpecError
from provisioner.options import build_parser
from provisioner.progress import ProgressBar
from provisioner.ratelimit import make_limiter
from provisioner.results import ResultSink, ResumeState, prepare_resume, set_aside
from provisioner.retry import RetryBudget, RetryPolicy
from provisioner.runner import Runner, Summary, utcnow
from provisioner.settings import ApiSettings, RunSettings, Secret
from provisioner.sources import JobFiles, ScanReport, scan


class ExitCode(IntEnum):
    """What ``provisioner`` exits with (listed in the README)."""

    OK = 0  # every spec created or exists
    FAILED = 1  # at least one spec failed, or the run was stopped by a 401/403
    USAGE = 2  # bad flags, unreadable or invalid input; nothing was sent
    INTERRUPTED = (
        130  # SIGINT or SIGTERM; the result log is consistent: re-run to resume
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``provisioner`` console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from provisioner.emulator.cli import main as emulator_main  # noqa: PLC0415 - only this command needs it

        return emulator_main(args_list[1:])
    args = build_parser().parse_args(args_list)
    try:
        if args.command == "validate":
            return _cmd_validate(args.jobs)
        return _cmd_run(args)
    except ProvisionerError as exc:
        print(f"provisioner: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE


def _stdin() -> BinaryIO | None:
    return sys.stdin.buffer if sys.stdin is not None else None


def _print_errors(errors: Sequence[SpecError]) -> None:
    for error in errors:
        print(error, file=sys.stderr)


def _cmd_validate(paths: Sequence[str]) -> int:
    with JobFiles(paths, stdin=_stdin()) as files:
        report = scan(files)
    _print_errors(report.errors)
    invalid = report.total - report.valid
    if invalid:
        print(
            f"provisioner: {invalid} of {report.total} specs are invalid ({len(report.errors)} errors)",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    print(f"ok: {report.total} specs are valid")
    return ExitCode.OK


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Show settings' warnings (legal but suspicious values) as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        print(f"provisioner: warning: {warning.message}", file=sys.stderr)


def _run_settings(args: argparse.Namespace) -> tuple[RunSettings, RetryPolicy]:
    with _warnings_to_stderr():
        settings = RunSettings(
            concurrency=int(args.concurrency),
            rate_per_s=float(args.rate),
            results_path=args.results,
            summary_path=args.summary,
            on_conflict=args.on_conflict,
            skip_invalid=bool(args.skip_invalid),
            resume=bool(args.resume),
            retry_failed=bool(args.retry_failed),
            grace_s=float(args.grace),
        )
        policy = RetryPolicy(
            max_attempts=int(args.max_attempts),
            deadline_s=float(args.deadline),
            wait_initial_s=float(args.backoff),
            wait_max_s=float(args.backoff_max),
        )
    return settings, policy


def _api_settings(args: argparse.Namespace) -> ApiSettings:
    if args.sandbox:
        token = Secret("pt-sandbox-" + secrets.token_hex(12))
        return ApiSettings(
            token=token,
            base_url="http://127.0.0.1/sandbox",
            timeout_s=float(args.timeout),
        )
    with _warnings_to_stderr():
        return ApiSettings.from_env(
            os.environ,
            api_url=args.api_url,
            token_file=args.token_file,
            timeout_s=float(args.timeout),
        )


def _cmd_run(args: argparse.Namespace) -> int:
    settings, policy = _run_settings(args)
    api = _api_settings(args)
    log.configure(
        fmt=args.log_format, level=args.log_level, secrets=[api.token.reveal()]
    )
    with JobFiles(args.jobs, stdin=_stdin()) as files:
        report = scan(files)
        if report.errors and not settings.skip_invalid:
            _print_errors(report.errors)
            print(
                f"provisioner: {report.total - report.valid} of {report.total} specs are invalid; nothing was sent (--skip-invalid runs the valid ones)",
                file=sys.stderr,
            )
            return ExitCode.USAGE
        resume = _prepare_log(settings, report)
        plan = _Plan(
            api=api,
            settings=settings,
            policy=policy,
            sandbox=_sandbox_faults(args.sandbox_faults) if args.sandbox else None,
            show_progress=not args.no_progress and args.log_format != "json",
        )
        summary = asyncio.run(_run(plan, files, report, resume))
    _report(summary, settings, report)
    return _exit_code(summary)


def _prepare_log(settings: RunSettings, report: ScanReport) -> ResumeState:
    if settings.is_stdout_results:
        return ResumeState(done={})
    if not settings.resume:
        aside = set_aside(settings.results_path, now=utcnow())
        if aside:
            print(f"provisioner: earlier result log moved to {aside}", file=sys.stderr)
        return ResumeState(done={})
    return prepare_resume(
        settings.results_path,
        input_names=report.names,
        retry_failed=settings.retry_failed,
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything ``run`` decided from argv and the environment."""

    api: ApiSettings
    settings: RunSettings
    policy: RetryPolicy
    sandbox: dict[str, Any] | None  # the fault plan of an in-process emulator, if any
    show_progress: bool


async def _run(
    plan: _Plan, files: JobFiles, report: ScanReport, resume: ResumeState
) -> Summary:
    settings = plan.settings
    async with (
        _api_target(plan.api, sandbox=plan.sandbox) as target,
        open_session(
            concurrency=settings.concurrency, timeout_s=target.timeout_s
        ) as session,
    ):
        sink = ResultSink.open(settings.results_path)
        skipped = len(report.names & resume.done.keys())
        bar = ProgressBar(
            total=report.total - skipped, stream=sys.stderr, enabled=plan.show_progress
        )
        runner = Runner(
            client=ApiClient(session, settings=target),
            policy=plan.policy,
            budget=RetryBudget(),
            limiter=make_limiter(settings.rate_per_s),
            sink=sink,
            settings=settings,
            resume=resume,
            on_result=bar.advance,
        )
        try:
            with bar, _signals(runner):
                return await runner.run(files)
        finally:
            sink.close()


@contextlib.asynccontextmanager
async def _api_target(
    api: ApiSettings, *, sandbox: dict[str, Any] | None
) -> AsyncIterator[ApiSettings]:
    """The API to talk to: the configured one, or an in-process emulator."""
    if sandbox is None:
        yield api
        return
    from provisioner.emulator import Emulator, EmulatorConfig, FaultPlan  # noqa: PLC0415 - only --sandbox needs it

    config = EmulatorConfig(token=api.token.reveal(), faults=FaultPlan(**sandbox))
    async with Emulator(config) as emulator:
        structlog.get_logger("provisioner.cli").info(
            "sandbox.started", api_url=emulator.url
        )
        yield ApiSettings(
            token=api.token, base_url=emulator.url, timeout_s=api.timeout_s
        )


def _sandbox_faults(text: str | None) -> dict[str, Any]:
    """``error_503=0.05,seed=7`` -> checked fault-plan fields for the sandbox."""
    from provisioner.emulator import FaultPlan  # noqa: PLC0415 - only --sandbox needs it

    fields: dict[str, Any] = {}
    for item in filter(None, (text or "").split(",")):
        name, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--sandbox-faults: expected name=value, got {item!r}")
        try:
            fields[name.strip()] = orjson.loads(raw.strip())
        except orjson.JSONDecodeError:
            fields[name.strip()] = raw.strip()
    try:
        return FaultPlan.check(fields)
    except ValueError as exc:
        raise ConfigError(f"--sandbox-faults: {exc}") from exc


@contextlib.contextmanager
def _signals(runner: Runner) -> Iterator[None]:
    """First SIGINT/SIGTERM drains the run; a second one cancels what is in flight."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if runner.summary.stopped_by == "interrupted":
            runner.abort()
        else:
            runner.summary.stopped_by = "interrupted"
            runner.stop("interrupted")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _report(summary: Summary, settings: RunSettings, report: ScanReport) -> None:
    settled = summary.created + summary.exists + summary.failed + summary.invalid
    not_started = report.total - settled - summary.skipped - summary.interrupted
    print(
        f"provisioner: {report.total} specs: {summary.created} created, {summary.exists} exists, "
        f"{summary.failed} failed, {summary.invalid} invalid, {summary.skipped} skipped (already done) "
        f"in {summary.wall_s:.1f} s ({summary.creates_per_s:.1f} creates/s; "
        f"{summary.requests} requests, {summary.retries} retries)",
        file=sys.stderr,
    )
    if summary.stopped_by:
        print(
            f"provisioner: stopped ({summary.stopped_by}): {summary.interrupted} in flight and {not_started} not started; "
            "run the same command again to resume",
            file=sys.stderr,
        )
    if not settings.is_stdout_results:
        print(f"provisioner: results in {settings.results_path}", file=sys.stderr)
    if settings.summary_path:
        data = {
            **summary.to_dict(),
            "total": report.total,
            "not_started": not_started,
            "results": settings.results_path,
        }
        try:
            Path(settings.summary_path).write_bytes(
                orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
            )
        except OSError as exc:
            # The run is done and its log is complete: say so, do not crash.
            print(
                f"provisioner: warning: cannot write summary {settings.summary_path}: {exc.strerror}",
                file=sys.stderr,
            )


def _exit_code(summary: Summary) -> int:
    if summary.stopped_by == "interrupted":
        return ExitCode.INTERRUPTED
    if summary.failed or summary.stopped_by:
        return ExitCode.FAILED
    if summary.invalid:
        return ExitCode.USAGE
    return ExitCode.OK


__all__ = ["ExitCode", "build_parser", "main"]
