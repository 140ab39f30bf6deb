"""The command line: argv and environment to settings, run, outcome to exit code.

``provisioner run``, ``provisioner validate`` and ``provisioner emulator`` are
here; ``plan`` is in :mod:`provisioner.cli.plan`, ``archive``/``delete`` in
:mod:`provisioner.cli.teardown`, ``report`` in :mod:`provisioner.cli.report`,
the queue commands in :mod:`provisioner.cli.queue` (``dead-letters`` in
:mod:`provisioner.cli.deadletters`). ``run`` reads and checks the
job files, then hands their specs to a :class:`provisioner.Provisioner`.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import importlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from provisioner.cli import eventloop
from provisioner.cli.common import (
    STOP_EXITS,
    ExitCode,
    api_settings,
    last_run_settings,
    leave_last_run,
    metrics_settings,
    new_metrics,
    open_meter,
    pacing,
    print_errors,
    print_json,
    retry_policy,
    same_file,
    say,
    stdin_stream,
    validation_document,
    warnings_to_stderr,
)
from provisioner.cli.flags import (
    SANDBOX_RESULTS,
    STDIO,
    UsageError,
    build_parser,
    check_combinations,
    resolve_env,
)
from provisioner.cli.salvage import check_salvage_path, salvaging
from provisioner.cli.sandbox import SANDBOX_TARGET, sandbox_api, sandbox_faults
from provisioner.core.service import Provisioner, ProvisionerConfig
from provisioner.core.summary import Summary, describe, utcnow
from provisioner.errors import ProvisionerError
from provisioner.files.sources import STDIN, JobFiles, ScanReport, scan
from provisioner.observe import log
from provisioner.observe.progress import ProgressMode, make_progress, progress_mode
from provisioner.pacing.choice import make_limiter
from provisioner.pacing.retry import RetryPolicy
from provisioner.pacing.stopping import StopController
from provisioner.redact import Scrubber
from provisioner.results import (
    LogState,
    ResultSink,
    ResumeState,
    new_run_id,
    prepare_resume,
    read_log,
    set_aside,
)
from provisioner.results.lock import LogLock, lock_path
from provisioner.settings import (
    ApiSettings,
    LastRunSettings,
    MetricsSettings,
    RunSettings,
)

if TYPE_CHECKING:  # prometheus-client only with a metrics flag
    from provisioner.observe.metrics import Metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``provisioner`` console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        from provisioner.emulator.cli import main as emulator_main  # noqa: PLC0415 - only this command needs it

        return emulator_main(args_list[1:])
    # A context of its own: the log format and the run_id a command binds end with it.
    return contextvars.copy_context().run(_main, args_list)


def _main(args_list: list[str]) -> int:
    try:
        with _terminate_raises_interrupt():
            return _dispatch(args_list)
    except KeyboardInterrupt:
        say("interrupted; nothing was left half-done", event="command.interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.PIPE
    except SystemExit as exc:  # argparse: --help, --version, a usage error
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE


# Commands whose module is imported only when they run (queue commands bring in Redis,
# report its figures): command -> (module, function).
_LAZY: dict[str, tuple[str, str]] = {
    "plan": ("provisioner.cli.plan", "cmd_plan"),
    "import": ("provisioner.cli.adopt", "cmd_import"),
    "doctor": ("provisioner.cli.doctor", "cmd_doctor"),
    "report": ("provisioner.cli.report", "cmd_report"),
    "archive": ("provisioner.cli.teardown", "cmd_teardown"),
    "delete": ("provisioner.cli.teardown", "cmd_teardown"),
    "dead-letters": ("provisioner.cli.deadletters", "cmd_dead_letters"),
}


def _lazy_command(command: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs ``command``, its module imported now."""
    if command in _LAZY:
        module, name = _LAZY[command]
        function: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(module), name
        )
        return function
    from provisioner.cli.queue import COMMANDS  # noqa: PLC0415 - only queue commands need Redis

    return COMMANDS[command]


def _dispatch(args_list: list[str]) -> int:
    args = build_parser().parse_args(args_list)
    try:
        if args.command == "validate":
            resolve_env(args, os.environ)
            return _cmd_validate(args.jobs, as_json=args.format == "json")
        if args.command == "completion":
            from provisioner.cli.completion import script  # noqa: PLC0415 - only completion needs it

            print(script(args.shell), end="")
            return ExitCode.OK
        given = resolve_env(args, os.environ)
        _configure_logs(args)
        check_combinations(args, given)
        if args.command == "run":
            return _cmd_run(args)
        return _lazy_command(args.command)(args)
    except (ProvisionerError, UsageError) as exc:
        say(f"error: {exc}", error_type=type(exc).__name__)
        return ExitCode.USAGE


def _configure_logs(args: argparse.Namespace) -> None:
    """Logs as the flags say, from the first message on, each event with the run's id.

    ``args.run_id`` names this run (a worker's: this process) in its events and
    records; commands configure again once they know the token to redact.
    """
    args.run_id = new_run_id()
    if getattr(args, "log_format", None) is not None:
        log.configure(fmt=args.log_format, level=args.log_level, run_id=args.run_id)


@contextlib.contextmanager
def _terminate_raises_interrupt() -> Iterator[None]:
    """SIGTERM stops the reading and checking phases as SIGINT does (the run has its own handlers)."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not complain."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _cmd_validate(paths: Sequence[str], *, as_json: bool = False) -> int:
    with JobFiles(paths, stdin=stdin_stream()) as files:
        report = scan(files)
    invalid = report.total - report.valid
    if as_json:  # the errors are in the document, not on stderr
        print_json(validation_document(report))
        return ExitCode.USAGE if invalid else ExitCode.OK
    print_errors(report.errors)
    if invalid:
        count = len(report.errors)
        noun = "error" if count == 1 else "errors"
        say(f"{invalid} of {report.total} specs are invalid ({count} {noun})")
        return ExitCode.USAGE
    print(f"ok: {report.total} specs are valid")
    return ExitCode.OK


def _run_settings(args: argparse.Namespace) -> tuple[RunSettings, RetryPolicy]:
    with warnings_to_stderr():
        settings = RunSettings(
            concurrency=int(args.concurrency),
            **pacing(args),
            results_path=args.results
            or (SANDBOX_RESULTS if args.sandbox else _default_results()),
            summary_path=args.summary,
            salvage_path=args.salvage,
            on_conflict=args.on_conflict,
            skip_invalid=bool(args.skip_invalid),
            resume=bool(args.resume),
            retry_failed=bool(args.retry_failed),
            grace_s=float(args.grace),
            progress_interval_s=float(args.progress_interval),
        )
        policy = retry_policy(args)
    return settings, policy


def _cmd_run(args: argparse.Namespace) -> int:
    settings, policy = _run_settings(args)
    api = api_settings(args)
    if args.preflight:
        log.configure(
            fmt=args.log_format, level=args.log_level, secrets=[api.token.reveal()]
        )
        checked = _preflight(api, args)
        if checked is None:
            return ExitCode.FAILED
        api = checked
    config = ProvisionerConfig(
        api=api,
        policy=policy,
        concurrency=settings.concurrency,
        on_conflict=settings.on_conflict,
        update=bool(args.update),
        target=SANDBOX_TARGET if args.sandbox else None,
        run_id=args.run_id,
        max_failures=args.max_failures,
    )
    faults = sandbox_faults(args.sandbox_faults) if args.sandbox else None
    log.configure(
        fmt=args.log_format, level=args.log_level, secrets=[api.token.reveal()]
    )
    plan = _Plan(
        config=config,
        settings=settings,
        scrub=Scrubber([api.token.reveal()]),
        progress=progress_mode(
            enabled=not args.no_progress, stream=sys.stderr, log_format=args.log_format
        ),
        metrics=metrics_settings(args),
        last_run=last_run_settings(args),
        sandbox=faults,
        run_id=args.run_id,
    )
    _check_summary_path(settings, args.jobs)
    check_salvage_path(settings, args.jobs)
    with _log_lock(settings), JobFiles(args.jobs, stdin=stdin_stream()) as files:
        logged = _read_log(settings, config.target_name)
        report = scan(files, keys_for=logged.last)
        if report.errors and not settings.skip_invalid:
            print_errors(report.errors)
            invalid = report.total - report.valid
            say(
                f"{invalid} of {report.total} specs are invalid; nothing was sent "
                "(--skip-invalid runs the valid ones)",
                event="run.refused",
                level="error",
                invalid=invalid,
                total=report.total,
            )
            return ExitCode.USAGE
        resume = _prepare_log(settings, logged, report, config)
        _warn_foreign(resume, settings, config.target_name, plan.scrub)
        started_s = time.time()
        series = None if plan.last_run is None else new_metrics()
        summary = eventloop.run(_run(plan, files, report, resume, series))
    _report(summary, plan, report)
    code = _exit_code(summary)
    if plan.last_run is not None and series is not None:
        leave_last_run(plan.last_run, series, started_s=started_s, exit_code=code)
    return code


def _preflight(api: ApiSettings, args: argparse.Namespace) -> ApiSettings | None:
    """``run --preflight``: ``api`` as the checks found it, or ``None`` when one failed."""
    from provisioner.cli.doctor import preflight  # noqa: PLC0415 - only --preflight needs it

    diagnosis = preflight(api, args)
    if diagnosis.has_failure:
        failed = ", ".join(c.name for c in diagnosis.checks if c.level == "fail")
        say(
            f"error: preflight failed ({failed}); nothing was created "
            "(provisioner doctor shows the checks)",
            event="run.refused",
            level="error",
            failed=failed,
        )
        return None
    method = diagnosis.learnt.update_method
    if method is None or method == api.update_method:
        return api
    return replace(api, update_method=method)


def _default_results() -> str:
    return RunSettings().results_path


def _check_summary_path(settings: RunSettings, jobs: Sequence[str]) -> None:
    """``--summary`` must not overwrite the result log, its lock or a job file."""
    if not settings.summary_path:
        return
    if settings.summary_path == STDIO:
        if settings.is_stdout_results:
            raise UsageError("--summary - and --results - would both write to stdout")
        return
    guarded = {"the result log": settings.results_path}
    if not settings.is_stdout_results:
        guarded["the result log's lock"] = lock_path(settings.results_path)
    guarded.update({f"job file {job}": job for job in jobs if job != STDIN})
    for what, path in guarded.items():
        if path != "-" and same_file(settings.summary_path, path):
            raise UsageError(
                f"--summary {settings.summary_path} would overwrite {what}"
            )


def _log_lock(settings: RunSettings) -> contextlib.AbstractContextManager[object]:
    if settings.is_stdout_results:
        return contextlib.nullcontext()
    return LogLock(settings.results_path, command="provisioner run")


def _read_log(settings: RunSettings, target: str) -> LogState:
    """What the result log already says (nothing for stdout or ``--no-resume``)."""
    if settings.is_stdout_results or not settings.resume:
        return LogState()
    return read_log(settings.results_path, target=target)


def _prepare_log(
    settings: RunSettings,
    logged: LogState,
    report: ScanReport,
    config: ProvisionerConfig,
) -> ResumeState:
    if settings.is_stdout_results:
        return ResumeState(done={})
    if not settings.resume:
        aside = set_aside(settings.results_path, now=utcnow())
        if aside:
            say(
                f"earlier result log moved to {aside}",
                event="results.set_aside",
                results=settings.results_path,
                moved_to=aside,
            )
        return ResumeState(done={})
    return prepare_resume(
        settings.results_path,
        logged,
        target=config.target_name,
        input_names=report.found,
        input_keys=report.keys,
        retry_failed=settings.retry_failed,
        redo_drifted=config.update,
    )


def _warn_foreign(
    resume: ResumeState, settings: RunSettings, target: str, scrub: Scrubber
) -> None:
    for other, count in resume.foreign.items():
        say(
            f"warning: {settings.results_path} holds {count} records made against {other}; "
            f"ignored for this run against {target}",
            scrub,
            event="results.foreign_ignored",
            results=settings.results_path,
            count=count,
            other_target=scrub(other),
        )


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything ``run`` decided from argv and the environment."""

    config: ProvisionerConfig
    settings: RunSettings
    scrub: Scrubber
    progress: ProgressMode
    metrics: MetricsSettings | None = None
    last_run: LastRunSettings | None = None
    sandbox: dict[str, Any] | None = None
    run_id: str | None = None


async def _run(
    plan: _Plan,
    files: JobFiles,
    report: ScanReport,
    resume: ResumeState,
    series: Metrics | None = None,
) -> Summary:
    settings = plan.settings
    stop = StopController(grace_s=settings.grace_s)
    limiter = make_limiter(settings.rate_per_s, adaptive=settings.adaptive_rate)
    async with (
        sandbox_api(plan.config.api, faults=plan.sandbox) as api,
        open_meter(plan.metrics, limiter=limiter, metrics=series) as meter,
        Provisioner.from_config(
            replace(plan.config, api=api),
            limiter=limiter,
            stop=stop,
            meter=meter,
            replay_is_ours=resume.log_existed,
        ) as service,
    ):
        sink = ResultSink.open(
            settings.results_path, scrub=plan.scrub, run_id=plan.run_id
        )
        skipped = len(report.found & resume.done.keys())
        bar = make_progress(
            plan.progress,
            total=report.total - skipped,
            stream=sys.stderr,
            interval_s=settings.progress_interval_s,
            retries=lambda: service.pipeline.counts.retries,
        )
        try:
            with (
                bar,
                eventloop.signals_stop(stop),
                salvaging(settings, run_id=plan.run_id, scrub=plan.scrub) as salvage,
            ):
                return await service.run_specs(
                    files,
                    sink=sink,
                    resume=resume,
                    on_result=bar.advance,
                    salvage=salvage,
                )
        finally:
            sink.close()


def _report(summary: Summary, plan: _Plan, report: ScanReport) -> None:
    settings = plan.settings
    resumable = not settings.is_stdout_results
    lines = describe(summary, total=report.total, resumable=resumable)
    if log.is_event_stream():
        # One event for the summary lines: the --summary fields, the lines as text.
        fields = _summary_fields(summary, plan, report)
        notes = [plan.scrub(line) for line in lines[1:]]
        say(lines[0], plan.scrub, event="run.finished", notes=notes, **fields)
    else:
        for line in lines:
            say(line, plan.scrub)
    if resumable:
        say(
            f"results in {settings.results_path}",
            plan.scrub,
            event="results.written",
            results=settings.results_path,
        )
    if settings.summary_path:
        _write_summary(summary, plan, report)


def _summary_fields(
    summary: Summary, plan: _Plan, report: ScanReport
) -> dict[str, Any]:
    """What ``--summary`` writes (and the ``run.finished`` event carries)."""
    settings = plan.settings
    return {
        **summary.to_dict(),
        "stopped_by": plan.scrub(summary.stopped_by or "") or None,
        "total": report.total,
        "not_started": report.total - summary.settled - summary.interrupted,
        "results": settings.results_path,
        "target": plan.config.target_name,
        "exit_code": int(_exit_code(summary)),
    }


def _write_summary(summary: Summary, plan: _Plan, report: ScanReport) -> None:
    settings = plan.settings
    data = _summary_fields(summary, plan, report)
    body = orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
    try:
        if settings.summary_path == STDIO:  # one document on stdout, logs on stderr
            sys.stdout.buffer.write(body)
            sys.stdout.flush()
        else:
            Path(settings.summary_path or "").write_bytes(body)
    except OSError as exc:
        # The run is done and its log is complete: say so, do not crash.
        say(
            f"warning: cannot write summary {settings.summary_path}: {exc.strerror}",
            plan.scrub,
        )


def _exit_code(summary: Summary) -> ExitCode:
    if summary.stop is not None:
        return STOP_EXITS[summary.stop.kind]
    if summary.failed:
        return ExitCode.FAILED
    if summary.invalid:
        return ExitCode.USAGE
    return ExitCode.OK


__all__ = ["ExitCode", "build_parser", "main"]
