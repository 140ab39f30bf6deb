"""Logging: the one ``structlog.configure`` call, and token redaction.

Events go to stderr: human-readable on a terminal, JSON lines (orjson) otherwise
or with ``--log-format json``. With ``--log-format json`` stderr is an event
stream and nothing else: the commands' one-line messages (summary, warnings,
errors) go through :func:`message` as events too, not as text. Every event of a
run carries its ``run_id`` (bound with structlog's contextvars), the same one its
result records hold.

Console colours follow the progress bar's rule (rich's): ``NO_COLOR`` (not
empty) turns them off, ``FORCE_COLOR`` (not empty) turns them on off a terminal.
Redaction is a second line of defence: the token is never logged on purpose, but
any string value containing it, or anything shaped like an ``Authorization``
value, is masked. On the console, control and bidirectional characters in
values are shown as escapes, never acted on.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any, BinaryIO, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from provisioner.redact import MASK, Scrubber, printable

LogFormat = Literal["auto", "console", "json"]
_SECRET_KEYS = frozenset({"token", "authorization", "password", "secret"})
#: Whether stderr is an event stream (``--log-format json``), set by :func:`configure`.
#: A context variable, as structlog's bound values are: ``main()`` runs each command
#: in a copy of the context, so one command's choice never leaks into the next.
_EVENT_STREAM: ContextVar[bool] = ContextVar("provisioner_event_stream", default=False)
#: A command's messages are printed whatever ``--log-level`` says, as their text lines are.
_messages = structlog.wrap_logger(
    None,
    wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
    logger_factory_args=("provisioner.cli",),
)


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


def wants_color(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Colours on ``stream``: off with ``NO_COLOR``, on with ``FORCE_COLOR``, else on a terminal.

    The rule of no-color.org and force-color.org (a variable counts when it is
    set and not empty), and rich's, so the log lines and the progress bar agree.
    """
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR", ""):
        return False
    if env.get("FORCE_COLOR", ""):
        return True
    return stream.isatty()


def is_event_stream() -> bool:
    """Whether stderr carries JSON events only (``--log-format json`` was configured)."""
    return _EVENT_STREAM.get()


def message(event: str, text: str, *, level: str = "info", **fields: Any) -> None:
    """A command's one-line message as the event ``event`` (``text`` in ``message``).

    Not filtered by ``--log-level``: a summary or an error is printed at any level.
    """
    getattr(_messages, level)(event, message=text, **fields)


def configure(
    *,
    fmt: LogFormat = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
    run_id: str | None = None,
) -> None:
    """Configure structlog for the command line (once per command, from ``cli/``).

    ``run_id`` is bound to every event from now on (structlog's contextvars).
    """
    out = stream or sys.stderr
    is_terminal = out.isatty()
    as_json = fmt == "json" or (fmt == "auto" and not is_terminal)
    colors = not as_json and wants_color(out)
    _EVENT_STREAM.set(fmt == "json")
    if run_id is not None:
        structlog.contextvars.bind_contextvars(run_id=run_id)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redactor(secrets),
    ]
    if is_terminal or colors:
        shared.append(_printable_values)
    if as_json:
        renderer: Processor = structlog.processors.JSONRenderer(
            serializer=_orjson_dumps
        )
        binary: BinaryIO = out.buffer
        factory: Any = structlog.BytesLoggerFactory(file=binary)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
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
