"""``provisioner emulator``: serve the emulated API until SIGINT or SIGTERM.

Exit codes: 0 stopped by a signal, 1 an OS error (cannot bind the port, cannot write
the state file), 2 bad flags or an unreadable state file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from provisioner.emulator.config import DEFAULT_MAX_BODY_BYTES, EmulatorConfig
from provisioner.emulator.faults import FaultPlan
from provisioner.emulator.server import Emulator

PROG = "provisioner emulator"
EXIT_OK, EXIT_OS, EXIT_USAGE = 0, 1, 2

_DEFAULTS = FaultPlan()


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _number(kind: str, check: Callable[[float], bool]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
        return value

    return parse


_probability = _number("a probability from 0 to 1", lambda v: 0 <= v <= 1)
_non_negative = _number("a number >= 0", lambda v: 0 <= v < float("inf"))
_positive = _number("a number > 0", lambda v: 0 < v < float("inf"))


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}"
            )
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``provisioner emulator`` flags."""
    parser = _Parser(
        prog=PROG,
        description="Serve a faithful, fault-injecting emulator of the Environments API.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _server_flags(parser.add_argument_group("server"))
    _fault_flags(
        parser.add_argument_group(
            "faults (per API request; admin routes are never faulted)"
        )
    )
    return parser


def _server_flags(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--host", default="127.0.0.1", help="address to bind")
    add(
        "--port",
        type=_integer(0),
        default=8080,
        help="port to bind; 0 picks a free one",
    )
    add(
        "--token",
        default=argparse.SUPPRESS,  # never show a token in --help
        help="accepted bearer token (default: $QODER_PAT; with neither, one is made up and printed)",
    )
    add(
        "--forbidden-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a token answered 403 permission_error (repeatable)",
    )
    add("--no-unique-names", action="store_true", help="allow duplicate names (no 409)")
    add("--no-idempotency", action="store_true", help="ignore Idempotency-Key headers")
    add(
        "--idempotency-ttl",
        type=_positive,
        default=86400.0,
        metavar="S",
        help="how long answers are kept for replay",
    )
    add(
        "--limit-over-max",
        choices=("reject", "cap"),
        default="reject",
        help="list limit > 100: 400 or cap to 100",
    )
    add(
        "--max-body-bytes",
        type=_integer(1),
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="N",
        help="larger bodies get 400",
    )
    add(
        "--state",
        metavar="FILE",
        default=None,
        help="JSON state file, loaded at start and saved while running",
    )


def _fault_flags(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add(
        "--seed",
        type=int,
        default=_DEFAULTS.seed,
        help="seed of the fault dice (same seed, same faults)",
    )
    add(
        "--latency-ms",
        type=_non_negative,
        default=_DEFAULTS.latency_ms,
        metavar="MS",
        help="added to every request",
    )
    add(
        "--jitter-ms",
        type=_non_negative,
        default=_DEFAULTS.jitter_ms,
        metavar="MS",
        help="plus uniform 0..MS",
    )
    add(
        "--error-500",
        type=_probability,
        default=_DEFAULTS.error_500,
        metavar="P",
        help="500 api_error (JSON)",
    )
    add(
        "--error-502",
        type=_probability,
        default=_DEFAULTS.error_502,
        metavar="P",
        help="502 with an HTML body",
    )
    add(
        "--error-503",
        type=_probability,
        default=_DEFAULTS.error_503,
        metavar="P",
        help="503 without a body",
    )
    add(
        "--rate-limit",
        type=_non_negative,
        default=_DEFAULTS.rate_limit_per_s,
        metavar="R",
        help="requests per second (token bucket); 0 = off",
    )
    add(
        "--rate-limit-burst",
        type=_integer(1),
        default=_DEFAULTS.rate_limit_burst,
        metavar="N",
        help="bucket capacity",
    )
    add(
        "--rate-limit-no-body",
        action="store_true",
        help="send 429 without the JSON error body",
    )
    add(
        "--retry-after",
        type=_non_negative,
        default=_DEFAULTS.retry_after_s,
        metavar="S",
        help="Retry-After on 429/503 (rounded up)",
    )
    add("--no-retry-after", action="store_true", help="send no Retry-After header")
    add(
        "--reset-before-commit",
        type=_probability,
        default=_DEFAULTS.reset_before_commit,
        metavar="P",
        help="reset the connection before doing anything",
    )
    add(
        "--reset-after-commit",
        type=_probability,
        default=_DEFAULTS.reset_after_commit,
        metavar="P",
        help="do the request, then reset the connection",
    )
    add(
        "--slow",
        type=_probability,
        default=_DEFAULTS.slow,
        metavar="P",
        help="do the request, then wait --slow-s before answering",
    )
    add(
        "--slow-s",
        type=_non_negative,
        default=_DEFAULTS.slow_s,
        metavar="S",
        help="the wait of a slow answer",
    )


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    """The ``EmulatorConfig`` the parsed flags describe."""
    plan = FaultPlan(
        seed=args.seed,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        error_500=args.error_500,
        error_502=args.error_502,
        error_503=args.error_503,
        rate_limit_per_s=args.rate_limit,
        rate_limit_burst=args.rate_limit_burst,
        rate_limit_body=not args.rate_limit_no_body,
        retry_after_s=None if args.no_retry_after else args.retry_after,
        reset_before_commit=args.reset_before_commit,
        reset_after_commit=args.reset_after_commit,
        slow=args.slow,
        slow_s=args.slow_s,
    )
    return EmulatorConfig(
        token=getattr(args, "token", None) or os.environ.get("QODER_PAT") or None,
        forbidden_tokens=frozenset(args.forbidden_token),
        unique_names=not args.no_unique_names,
        idempotency=not args.no_idempotency,
        idempotency_ttl_s=args.idempotency_ttl,
        limit_over_max=args.limit_over_max,
        max_body_bytes=args.max_body_bytes,
        state_path=args.state,
        faults=plan,
    )


async def serve(emulator: Emulator) -> None:
    """Run ``emulator``, announce it on stdout, and stop on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with emulator:
        line = f"{PROG} listening on {emulator.url}"
        if emulator.config.token is None:
            line += f" token={emulator.token}"
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve until a signal, and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        emulator = _emulator(parser, args)
    except SystemExit as exc:  # --help, or a bad flag already reported on stderr
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        asyncio.run(serve(emulator))
    except ValueError as exc:  # an unreadable state file
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:  # cannot bind, or cannot write the state file
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_OS
    return EXIT_OK


def _emulator(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Emulator:
    try:
        return Emulator(config_from(args), host=args.host, port=args.port)
    except ValueError as exc:
        parser.error(str(exc))
