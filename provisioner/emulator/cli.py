"""``provisioner emulator``: serve the emulated API until SIGINT or SIGTERM.

The accepted token comes from ``--token`` (visible in ``ps``), ``--token-file``, or
``$QODER_PAT``, in that order; without any, one is made up and printed.
``--tls-cert``/``--tls-key`` serve HTTPS. Binding a non-loopback address prints a
warning on stderr.

Exit codes: 0 stopped by a signal, 1 an OS error (cannot bind the port, cannot write
the state file), 2 bad flags, an unreadable token, TLS or state file.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from provisioner.emulator.config import (
    DEFAULT_MAX_BODY_BYTES,
    UPDATE_METHODS,
    EmulatorConfig,
)
from provisioner.emulator.faults import FaultPlan
from provisioner.emulator.server import Emulator
from provisioner.emulator.validation import CONFIG_ECHOES, NETWORKING_TYPES

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


# (flag, parser, FaultPlan field, metavar, help) for every numeric fault flag
_FAULT_FLAGS: tuple[tuple[str, Callable[[str], Any], str, str, str], ...] = (
    ("--seed", int, "seed", "N", "seed of the fault dice (same seed, same faults)"),
    ("--latency-ms", _non_negative, "latency_ms", "MS", "added to every request"),
    ("--jitter-ms", _non_negative, "jitter_ms", "MS", "plus uniform 0..MS"),
    ("--error-500", _probability, "error_500", "P", "500 api_error (JSON)"),
    ("--error-502", _probability, "error_502", "P", "502 with an HTML body"),
    ("--error-503", _probability, "error_503", "P", "503 without a body"),
    ("--rate-limit", _non_negative, "rate_limit_per_s", "R", "requests/s; 0 = off"),
    ("--rate-limit-burst", _integer(1), "rate_limit_burst", "N", "bucket capacity"),
    ("--retry-after", _non_negative, "retry_after_s", "S", "Retry-After on 429/503"),
    (
        "--reset-before-commit",
        _probability,
        "reset_before_commit",
        "P",
        "reset the connection before doing anything",
    ),
    (
        "--reset-after-commit",
        _probability,
        "reset_after_commit",
        "P",
        "do the request, then reset the connection without answering",
    ),
    ("--slow", _probability, "slow", "P", "do the request, then answer after --slow-s"),
    ("--slow-s", _non_negative, "slow_s", "S", "the wait of a slow answer"),
)


def build_parser() -> argparse.ArgumentParser:
    """The ``provisioner emulator`` flags."""
    parser = _Parser(
        prog=PROG,
        description="Serve a faithful, fault-injecting emulator of the Environments API.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    server = parser.add_argument_group("server")
    _server_flags(server)
    _access_flags(server)
    faults = parser.add_argument_group("faults (API requests only, never admin routes)")
    for flag, parse, field, metavar, text in _FAULT_FLAGS:
        default = getattr(_DEFAULTS, field)
        faults.add_argument(
            flag, type=parse, dest=field, default=default, metavar=metavar, help=text
        )
    faults.add_argument(
        "--rate-limit-no-body", action="store_true", help="send 429 without a body"
    )
    faults.add_argument(
        "--no-retry-after", action="store_true", help="send no Retry-After header"
    )
    return parser


def _access_flags(group: argparse._ArgumentGroup) -> None:
    """Who may talk to the emulator, and over what."""
    add = group.add_argument
    add(
        "--token",
        default=argparse.SUPPRESS,  # never show a token in --help
        help="accepted bearer token; visible in ps, so prefer $QODER_PAT or --token-file "
        "(default: $QODER_PAT, else one is made up and printed)",
    )
    add(
        "--token-file",
        metavar="FILE",
        default=None,
        help="read the accepted bearer token from FILE (wins over $QODER_PAT)",
    )
    add(
        "--forbidden-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a token answered 403 permission_error (repeatable)",
    )
    add("--tls-cert", metavar="FILE", default=None, help="PEM certificate: serve HTTPS")
    add("--tls-key", metavar="FILE", default=None, help="PEM private key of --tls-cert")


def _server_flags(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--host", default="127.0.0.1", help="address to bind")
    add("--port", type=_integer(0), default=8080, help="0 picks a free port")
    add("--no-unique-names", action="store_true", help="allow duplicate names")
    add("--no-idempotency", action="store_true", help="ignore Idempotency-Key")
    add(
        "--idempotency-ttl",
        type=_positive,
        default=86400.0,
        metavar="S",
        help="how long an answer can be replayed",
    )
    add(
        "--limit-over-max",
        choices=("reject", "cap"),
        default="reject",
        help="list limit > 100: 400 or cap to 100",
    )
    add(
        "--config-echo",
        choices=CONFIG_ECHOES,
        default="as-sent",
        help="echo an environment's config as sent (the seed) or normalized (newest docs)",
    )
    add(
        "--max-body-bytes",
        type=_integer(1),
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="N",
        help="a larger body gets 400",
    )
    add("--state", metavar="FILE", default=None, help="JSON state file")
    add(
        "--update-method",
        choices=("both", "post", "put"),
        default="both",
        help="the update verb accepted: POST (newest docs), PUT (oldest) or both",
    )
    add(
        "--networking-type",
        action="append",
        choices=NETWORKING_TYPES,
        default=None,
        help="a networking.type spelling accepted (repeatable; default: all four)",
    )
    add(
        "--rate-limit-headers",
        action="store_true",
        help="send X-RateLimit-Limit/-Remaining/-Reset with --rate-limit",
    )


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    """The ``EmulatorConfig`` the parsed flags describe."""
    plan = FaultPlan(
        **{field: getattr(args, field) for _, _, field, _, _ in _FAULT_FLAGS}
    )
    plan.rate_limit_body = not args.rate_limit_no_body
    if args.no_retry_after:
        plan.retry_after_s = None
    return EmulatorConfig(
        token=_token(args),
        forbidden_tokens=frozenset(args.forbidden_token),
        unique_names=not args.no_unique_names,
        idempotency=not args.no_idempotency,
        idempotency_ttl_s=args.idempotency_ttl,
        limit_over_max=args.limit_over_max,
        max_body_bytes=args.max_body_bytes,
        config_echo=args.config_echo,
        state_path=args.state,
        faults=plan,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        update_methods=UPDATE_METHODS
        if args.update_method == "both"
        else (args.update_method.upper(),),
        networking_types=tuple(args.networking_type or NETWORKING_TYPES),
        rate_limit_headers=args.rate_limit_headers,
    )


def _token(args: argparse.Namespace) -> str | None:
    """``--token``, else ``--token-file``'s content, else ``$QODER_PAT``, else None.

    Raises:
        ValueError: the token file cannot be read or is empty.
    """
    given: str | None = getattr(args, "token", None)
    if given is not None:
        return given
    if args.token_file is not None:
        try:
            text = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"cannot read --token-file {args.token_file}: {exc.strerror}"
            ) from exc
        if not text:
            raise ValueError(f"--token-file {args.token_file} is empty")
        return text
    return os.environ.get("QODER_PAT") or None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or an address in 127.0.0.0/8 or ``::1``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(emulator: Emulator) -> None:
    """Run ``emulator``, announce it on stdout, and stop on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with emulator:
        if not is_loopback_host(emulator.host):
            sys.stderr.write(
                f"{PROG}: warning: listening on {emulator.host}, not a loopback "
                "address: anyone who can reach this port can use the emulator\n"
            )
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
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(emulator))
    except ValueError as exc:  # an unreadable state file
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:  # cannot bind, or cannot write the state file
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return EXIT_OS
    return EXIT_OK


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (more requests per core), else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return uvloop.new_event_loop


def _emulator(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Emulator:
    try:
        return Emulator(config_from(args), host=args.host, port=args.port)
    except ValueError as exc:
        parser.error(str(exc))
