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
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from provisioner.cli.flags import AUTO_RATE
from provisioner.errors import ConfigError, SpecError
from provisioner.observe.meter import NO_METER, Meter
from provisioner.pacing.limiter import RateLimiter, rate_of
from provisioner.pacing.retry import RetryPolicy
from provisioner.pacing.stopping import StopKind
from provisioner.redact import Scrubber, Secret, printable
from provisioner.settings import ApiSettings, MetricsSettings

if TYPE_CHECKING:  # only a worker has a queue: run does not import Redis
    from provisioner.queue.streams import JobQueue


class ExitCode(IntEnum):
    """What ``provisioner`` exits with (docs/exit-codes.md lists each)."""

    OK = 0  # every spec of the job is created or exists
    FAILED = (
        1  # a spec failed, or a 401/403 or an untrusted certificate stopped the run
    )
    USAGE = 2  # bad flags, unreadable or invalid input, a locked result log; nothing was sent
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
}


def say(text: str, scrub: Scrubber = Scrubber()) -> None:  # noqa: B008 - immutable
    """One line on stderr, secrets masked and control characters made visible."""
    print(f"provisioner: {printable(scrub(text))}", file=sys.stderr)


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


def stdin_stream() -> BinaryIO | None:
    """What ``-`` reads."""
    return sys.stdin.buffer if sys.stdin is not None else None


def print_errors(errors: Sequence[SpecError]) -> None:
    """Every located spec error, one line each, control characters escaped."""
    for error in errors:
        print(printable(str(error)), file=sys.stderr)


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Show settings' warnings (legal but suspicious values) as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        print(f"provisioner: warning: {warning.message}", file=sys.stderr)


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


@contextlib.asynccontextmanager
async def open_meter(
    settings: MetricsSettings | None,
    *,
    limiter: RateLimiter,
    queue: JobQueue | None = None,
    group: str = "",
) -> AsyncIterator[Meter]:
    """:data:`NO_METER` without ``--metrics-port``; with it, the served endpoints' meter.

    prometheus-client and the health server are imported only here, only then. With
    a ``queue``, ``/readyz`` pings Redis and each scrape reads the group's lag.
    """
    if settings is None:
        yield NO_METER
        return
    from provisioner.observe.health import exporter  # noqa: PLC0415 - only --metrics-port

    async with exporter(
        settings,
        rate=lambda: rate_of(limiter),
        ping=None if queue is None else queue.ping,
        queue_status=None if queue is None else lambda: queue.status(group),
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
    "metrics_settings",
    "pacing",
    "print_errors",
    "proxy_setting",
    "retry_policy",
    "say",
    "stdin_stream",
    "warnings_to_stderr",
]
