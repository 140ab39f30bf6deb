"""What every ``provisioner`` command shares: exit codes, one-line messages, settings from flags.

``cli/main.py`` (``run``, ``validate``) and ``cli/queue.py`` (the queue commands) both use
these, so neither imports the other's internals.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from provisioner.cli.flags import AUTO_RATE
from provisioner.errors import ConfigError, SpecError
from provisioner.files.sources import ScanReport
from provisioner.observe import log
from provisioner.observe.meter import NO_METER, Meter
from provisioner.pacing.limiter import RateLimiter, rate_of
from provisioner.pacing.retry import RetryPolicy
from provisioner.pacing.stopping import StopKind
from provisioner.redact import Scrubber, Secret, printable
from provisioner.settings import ApiSettings, LastRunSettings, MetricsSettings

if TYPE_CHECKING:  # only a worker has a queue: run does not import Redis
    from provisioner.observe.metrics import Metrics
    from provisioner.queue.streams import JobQueue


class ExitCode(IntEnum):
    """What ``provisioner`` exits with (docs/exit-codes.md lists each)."""

    OK = 0  # every spec of the job is created or exists
    FAILED = 1  # a spec failed, a 401/403 or an untrusted certificate stopped the run, a doctor check failed
    USAGE = 2  # bad flags, unreadable or invalid input, a locked result log; nothing was sent
    TOO_MANY_FAILURES = 65  # past --max-failures (EX_DATAERR): fix the cause, re-run
    LOG_WRITE = 74  # the result log could not be written (EX_IOERR): re-run to resume
    INTERRUPTED = (
        130  # SIGINT or SIGTERM; the result log is consistent: re-run to resume
    )
    PIPE = 141  # the reader of --results - went away (128 + SIGPIPE, as Unix tools)


_YES = frozenset({"y", "yes"})
#: The exit code of each way a run can stop early (``run``, ``archive``, ``delete``).
STOP_EXITS = {
    StopKind.INTERRUPTED: ExitCode.INTERRUPTED,
    StopKind.AUTH: ExitCode.FAILED,
    StopKind.TLS: ExitCode.FAILED,
    StopKind.LOG_WRITE: ExitCode.LOG_WRITE,
    StopKind.PIPE: ExitCode.PIPE,
    StopKind.FAILURES: ExitCode.TOO_MANY_FAILURES,
}


#: The event of a message that names none, by its level (from its ``error:``/``warning:``).
_MESSAGE_EVENTS = {
    "error": "command.failed",
    "warning": "command.warned",
    "info": "command.noted",
}


def say(
    text: str,
    scrub: Scrubber = Scrubber(),  # noqa: B008 - immutable
    *,
    event: str | None = None,
    level: str | None = None,
    **fields: Any,
) -> None:
    """One line on stderr, secrets masked and control characters made visible.

    With ``--log-format json`` the line is the event ``event`` instead, at
    ``level`` (by default the text's ``error:``/``warning:`` prefix, else info; the
    event by default ``command.failed``, ``command.warned`` or ``command.noted``),
    the text in its ``message``, with ``fields``.
    """
    text = scrub(text)
    if not log.is_event_stream():
        print(f"provisioner: {printable(text)}", file=sys.stderr)
        return
    prefix, _, rest = text.partition(": ")
    if prefix not in _MESSAGE_EVENTS or prefix == "info":
        prefix, rest = "info", text
    level = level or prefix
    log.message(event or _MESSAGE_EVENTS[level], rest, level=level, **fields)


def confirm(
    what: str, *, yes: bool, cancelled: str, announce: str | None = None
) -> int | None:
    """Ask ``Proceed? [y/N]`` on a terminal: ``None`` to go ahead, else the exit code.

    With ``yes`` nothing is asked. Without a terminal the answer cannot be given, so
    it is a usage error naming ``--yes``; a "no" exits 1 after saying ``cancelled``.
    ``announce`` is said first, on a terminal only.
    """
    if yes:
        return None
    stdin = sys.stdin
    if stdin is None or not stdin.isatty():
        say(f"error: {what} asks for confirmation and there is no terminal: pass --yes")
        return ExitCode.USAGE
    if announce:
        say(announce)
    sys.stderr.write("Proceed? [y/N] ")
    sys.stderr.flush()
    if stdin.readline().strip().lower() in _YES:
        return None
    say(cancelled)
    return ExitCode.FAILED


#: The version of every ``--format json`` document (its first field, ``format_version``):
#: fields may be added, never renamed or given another meaning.
FORMAT_VERSION = 1


def print_json(document: Mapping[str, Any]) -> None:
    """``document`` as the one JSON document on stdout, ``format_version`` first."""
    data = {"format_version": FORMAT_VERSION, **document}
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def validation_document(report: ScanReport) -> dict[str, Any]:
    """What ``validate --format json`` prints (and ``enqueue`` for invalid specs)."""
    return {
        "valid": report.valid == report.total,
        "total": report.total,
        "invalid": report.total - report.valid,
        "errors": [
            {
                "source": e.source,
                "line": e.line,
                "column": e.column or None,
                "field": e.field,
                "reason": e.reason,
            }
            for e in report.errors
        ],
    }


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (the same path, a link, or one inode)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def stdin_stream() -> BinaryIO | None:
    """What ``-`` reads."""
    return sys.stdin.buffer if sys.stdin is not None else None


def print_errors(errors: Sequence[SpecError]) -> None:
    """Every located spec error, one line each, control characters escaped.

    With ``--log-format json`` each is a ``spec.rejected`` event: ``source``
    (``file:line``, as in a record), ``column`` (of a CSV row), ``field``,
    ``reason``, the line in ``message``.
    """
    for error in errors:
        if log.is_event_stream():
            log.message(
                "spec.rejected",
                str(error),
                level="error",
                source=error.where,
                column=error.column,
                field=error.field,
                reason=error.reason,
            )
        else:
            print(printable(str(error)), file=sys.stderr)


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Show settings' warnings (legal but suspicious values) as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        say(f"warning: {warning.message}", event="settings.warned")


def pacing(args: argparse.Namespace) -> dict[str, Any]:
    """``--rate`` as settings fields: a fixed rate, or ``auto`` (adaptive)."""
    is_auto = args.rate == AUTO_RATE
    return {
        "rate_per_s": 0.0 if is_auto else float(args.rate),
        "adaptive_rate": is_auto,
    }


def metrics_settings(args: argparse.Namespace) -> MetricsSettings | None:
    """Where to serve metrics and probes: ``None`` without ``--metrics-port``."""
    if args.metrics_port is None:
        return None
    return MetricsSettings(port=int(args.metrics_port), host=args.metrics_host)


def last_run_settings(args: argparse.Namespace) -> LastRunSettings | None:
    """Where ``run`` leaves its series when it ends: ``None`` without either flag."""
    if args.metrics_textfile is None and args.pushgateway is None:
        return None
    if args.metrics_textfile is not None:
        folder = Path(args.metrics_textfile).parent
        if not folder.is_dir():
            raise ConfigError(
                f"--metrics-textfile {args.metrics_textfile}: no folder {folder}"
            )
    with warnings_to_stderr():
        return LastRunSettings(
            textfile_path=args.metrics_textfile,
            pushgateway_url=args.pushgateway,
            pushgateway_job=args.pushgateway_job,
        )


def new_metrics() -> Metrics:
    """A fresh :class:`Metrics`; prometheus-client is imported only now."""
    from provisioner.observe.metrics import Metrics  # noqa: PLC0415 - only with metrics flags

    return Metrics()


def leave_last_run(
    settings: LastRunSettings, metrics: Metrics, *, started_s: float, exit_code: int
) -> None:
    """Write ``--metrics-textfile`` and push to ``--pushgateway``; a failure is one warning."""
    from provisioner.observe.lastrun import RunEnd, leave  # noqa: PLC0415 - only with the flags

    end = RunEnd(started_s=started_s, ended_s=time.time(), exit_code=exit_code)
    for problem in leave(settings, metrics, end):
        say(f"warning: {problem}", event="metrics.export_failed")


@contextlib.asynccontextmanager
async def open_meter(
    settings: MetricsSettings | None,
    *,
    limiter: RateLimiter,
    queue: JobQueue | None = None,
    group: str = "",
    metrics: Metrics | None = None,
) -> AsyncIterator[Meter]:
    """:data:`NO_METER` without ``--metrics-port`` or ``metrics``; else a counting meter.

    prometheus-client and the health server are imported only here, only then. With
    a ``queue``, ``/readyz`` pings Redis and each scrape reads the group's lag. With
    ``metrics`` (a run's ``--metrics-textfile`` or ``--pushgateway``) that is the
    meter, served as well with ``--metrics-port``.
    """
    if settings is None:
        if metrics is not None:
            metrics.watch_rate(lambda: rate_of(limiter))
        yield NO_METER if metrics is None else metrics
        return
    from provisioner.observe.health import exporter  # noqa: PLC0415 - only --metrics-port

    async with exporter(
        settings,
        rate=lambda: rate_of(limiter),
        ping=None if queue is None else queue.ping,
        queue_status=None if queue is None else lambda: queue.status(group),
        metrics=metrics,
    ) as meter:
        yield meter


def retry_policy(args: argparse.Namespace) -> RetryPolicy:
    """The retry policy the flags describe (``run`` and ``worker`` alike)."""
    return RetryPolicy(
        max_attempts=int(args.max_attempts),
        deadline_s=float(args.deadline),
        wait_initial_s=float(args.backoff),
        wait_max_s=float(args.backoff_max),
    )


def api_settings(args: argparse.Namespace) -> ApiSettings:
    """Where the API is and the token for it (a throwaway one with ``--sandbox``)."""
    if getattr(args, "sandbox", False):
        token = Secret("pt-sandbox-" + secrets.token_hex(12))
        return ApiSettings(
            token=token,
            base_url="http://127.0.0.1/sandbox",
            timeout_s=float(args.timeout),
        )
    with warnings_to_stderr():
        return ApiSettings.from_env(
            os.environ,
            api_url=args.api_url,
            token_file=args.token_file,
            timeout_s=float(args.timeout),
            ca_file=args.ca_file,
            allow_insecure_http=bool(args.allow_insecure_http),
            # Only run has --sandbox: plan, teardown and worker need a real API.
            token_hint=" (or use --sandbox)" if hasattr(args, "sandbox") else "",
            **proxy_setting(args),
        )


def proxy_setting(args: argparse.Namespace) -> dict[str, Any]:
    """``--proxy``, ``PROVISIONER_PROXY`` or the URL in ``--proxy-file``, and its source.

    Raises:
        ConfigError: the proxy file cannot be read or is empty.
    """
    if args.proxy_file is not None:
        path = args.proxy_file
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read proxy file {path}: {exc.strerror}") from exc
        if not value:
            raise ConfigError(f"proxy file {path} is empty")
        return {"proxy": value, "proxy_source": f"--proxy-file {path}"}
    if args.proxy is None:
        return {}
    from_env = os.environ.get("PROVISIONER_PROXY", "").strip() == args.proxy
    return {
        "proxy": args.proxy,
        "proxy_source": "PROVISIONER_PROXY" if from_env else "--proxy",
    }


__all__ = [
    "ExitCode",
    "api_settings",
    "last_run_settings",
    "leave_last_run",
    "metrics_settings",
    "new_metrics",
    "open_meter",
    "pacing",
    "print_errors",
    "print_json",
    "proxy_setting",
    "retry_policy",
    "say",
    "stdin_stream",
    "validation_document",
    "warnings_to_stderr",
]
