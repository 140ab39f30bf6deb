"""Logging: the one ``structlog.configure`` call, and token redaction.

Events go to stderr: human-readable on a terminal, JSON lines (orjson) otherwise
or with ``--log-format json``. Redaction is a second line of defence: the token
is never logged on purpose, but any string value containing it, or anything
shaped like an ``Authorization`` value, is masked. On the console, control and
bidirectional characters in values are shown as escapes, never acted on.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, BinaryIO, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from provisioner.redact import MASK, Scrubber, printable

LogFormat = Literal["auto", "console", "json"]
_SECRET_KEYS = frozenset({"token", "authorization", "password", "secret"})


class Redactor:
    """A processor that masks given secrets and secret-named fields."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.mask = Scrubber(secrets)

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            if key.lower() in _SECRET_KEYS:
                event[key] = MASK
            elif isinstance(value, str):
                event[key] = self.mask(value)
        return event


def _printable_values(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """On a terminal, no value may move the cursor, ring the bell or flip text."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = printable(value)
    return event


def _orjson_dumps(event: MutableMapping[str, Any], **_: Any) -> bytes:
    return orjson.dumps(event, default=str)


def configure(
    *,
    fmt: LogFormat = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Configure structlog for the command line (called once, from ``cli/main.py``)."""
    out = stream or sys.stderr
    is_terminal = out.isatty()
    as_json = fmt == "json" or (fmt == "auto" and not is_terminal)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redactor(secrets),
    ]
    if is_terminal:
        shared.append(_printable_values)
    if as_json:
        renderer: Processor = structlog.processors.JSONRenderer(
            serializer=_orjson_dumps
        )
        binary: BinaryIO = out.buffer
        factory: Any = structlog.BytesLoggerFactory(file=binary)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=is_terminal)
        factory = structlog.PrintLoggerFactory(file=out)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_level(level)),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


def _level(name: str) -> int:
    value = logging.getLevelNamesMapping().get(name.upper())
    if value is None:
        raise ValueError(f"unknown log level {name!r}")
    return value
