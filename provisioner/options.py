"""The ``provisioner`` argument parser: every flag, its environment variable and default.

Defaults come from the settings dataclasses (they live there only); each value flag
can also be set by ``PROVISIONER_<FLAG>`` in the environment.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, fields
from typing import Any

from provisioner import __version__
from provisioner.retry import RetryPolicy
from provisioner.settings import ApiSettings, RunSettings


def _default(cls: Any, name: str) -> Any:
    """The dataclass default of ``cls.name``."""
    for f in fields(cls):
        if f.name == name and f.default is not MISSING:
            return f.default
    raise KeyError(name)


def _env(flag: str, default: Any) -> Any:
    name = "PROVISIONER_" + flag.removeprefix("--").replace("-", "_").upper()
    return os.environ.get(name, default)


# flag, type, default, help ("%(default)s" is filled in by argparse)
_VALUE_FLAGS: tuple[tuple[str, type, Any, str], ...] = (
    (
        "--concurrency",
        int,
        _default(RunSettings, "concurrency"),
        "requests in flight at most (default %(default)s)",
    ),
    (
        "--rate",
        float,
        _default(RunSettings, "rate_per_s"),
        "requests per second at most; 0 = unlimited (default %(default)s)",
    ),
    (
        "--timeout",
        float,
        _default(ApiSettings, "timeout_s"),
        "seconds per request (default %(default)s)",
    ),
    (
        "--max-attempts",
        int,
        _default(RetryPolicy, "max_attempts"),
        "attempts per request, the first included (default %(default)s)",
    ),
    (
        "--deadline",
        float,
        _default(RetryPolicy, "deadline_s"),
        "seconds after a spec's first attempt when no new attempt starts (default %(default)s)",
    ),
    (
        "--backoff",
        float,
        _default(RetryPolicy, "wait_initial_s"),
        "seconds before the first retry; doubles each time, less up to 25%% jitter (default %(default)s)",
    ),
    (
        "--backoff-max",
        float,
        _default(RetryPolicy, "wait_max_s"),
        "longest backoff between attempts, in seconds (default %(default)s)",
    ),
    (
        "--grace",
        float,
        _default(RunSettings, "grace_s"),
        "seconds in-flight requests may finish after SIGINT/SIGTERM (default %(default)s)",
    ),
    (
        "--results",
        str,
        _default(RunSettings, "results_path"),
        "result log, JSON Lines; - for stdout (default %(default)s)",
    ),
    ("--summary", str, None, "also write the run summary as JSON to this file"),
    (
        "--sandbox-faults",
        str,
        None,
        "with --sandbox: faults for the emulator, e.g. error_503=0.05,reset_after_commit=0.02,latency_ms=20,seed=7",
    ),
    ("--token-file", str, None, "read the token from this file instead of $QODER_PAT"),
    ("--log-level", str, "info", "debug, info, warning or error (default %(default)s)"),
)


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    add = p.add_argument
    add(
        "jobs",
        nargs="+",
        metavar="JOB",
        help="job files (.jsonl, .json, .yaml); - reads JSONL from stdin",
    )
    add(
        "--api-url",
        default=None,
        help=f"API base URL (env QODER_API_URL or QODER_BASE_URL; default {_default(ApiSettings, 'base_url')})",
    )
    add(
        "--sandbox",
        action="store_true",
        help="run against an emulator started in-process, with a throwaway token",
    )
    for flag, kind, default, text in _VALUE_FLAGS:
        add(flag, type=kind, default=_env(flag, default), help=text)
    add(
        "--skip-invalid",
        action="store_true",
        default=_env("--skip-invalid", "") == "1",
        help="record invalid specs as 'invalid' and run the rest",
    )
    add(
        "--on-conflict",
        choices=["exists", "fail"],
        default=_env("--on-conflict", _default(RunSettings, "on_conflict")),
        help="a name that already exists is 'exists' or a failure (default %(default)s)",
    )
    add(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=_default(RunSettings, "resume"),
        help="skip specs the result log already has as created/exists (default on)",
    )
    add(
        "--retry-failed",
        action=argparse.BooleanOptionalAction,
        default=_default(RunSettings, "retry_failed"),
        help="on resume, try failed specs again (default on)",
    )
    add(
        "--log-format",
        choices=["auto", "console", "json"],
        default=_env("--log-format", "auto"),
        help="console on a terminal, JSON otherwise (default %(default)s)",
    )
    add(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``provisioner`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="provisioner",
        description="Create Qoder Cloud Agents Environments in bulk.",
    )
    parser.add_argument(
        "--version", action="version", version=f"provisioner {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="create every environment of the job files",
        description="Validate job files, then create their environments concurrently, writing one result record per spec.",
    )
    _add_run_flags(run)
    validate = sub.add_parser(
        "validate",
        help="check job files without sending anything",
        description="Check every spec of the job files; list every error with file, line and field.",
    )
    validate.add_argument("jobs", nargs="+", metavar="JOB")
    sub.add_parser(
        "emulator",
        help="serve a local emulator of the Environments API (see: provisioner emulator --help)",
        add_help=False,
    )
    return parser
