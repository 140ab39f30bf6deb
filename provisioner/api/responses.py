"""What an HTTP answer of the Environments API means, read without believing it.

Pure functions of (status, headers, body): the error an answer stands for, the
wait it asks for, whether an id has the documented shape. Every text taken from
an answer passes through a :class:`~provisioner.redact.Scrubber` before it can
reach an exception. :mod:`provisioner.api.client` sends the requests and uses these.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from provisioner.errors import (
    ApiError,
    AuthError,
    ConflictError,
    RetryableApiError,
    TransportError,
)
from provisioner.httpstatus import meaning
from provisioner.redact import Scrubber

REDIRECT_STATUSES = range(300, 400)
EXCERPT_CHARS = 200
_ENV_ID = re.compile(r"env_[0-9a-fA-F]{32}")


def is_env_id(value: object) -> bool:
    """Whether ``value`` is an environment id: ``env_`` + 32 hex digits (either case)."""
    return isinstance(value, str) and _ENV_ID.fullmatch(value) is not None


def parse_json(raw: bytes) -> object:
    """The JSON value of ``raw``, or ``None`` for an empty or non-JSON body."""
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def expect_object(payload: object) -> dict[str, Any]:
    """``payload`` if it is a JSON object, else an unambiguous ``bad_answer``."""
    if not isinstance(payload, dict):
        raise TransportError(
            "answer is not a JSON object", is_ambiguous=False, error_type="bad_answer"
        )
    return payload


def describe_missing_id(payload: object) -> str:
    """Why a create answer is not a success, quoting at most 60 characters of it."""
    if not isinstance(payload, dict):
        return "the body is not a JSON object"
    return f"no valid environment id (id {repr(payload.get('id'))[:60]})"


def redirect_error(
    where: str, status: int, headers: Mapping[str, str], *, scrub: Scrubber
) -> ApiError:
    """A 3xx as a failure that is never retried, naming the status and ``Location``."""
    location = headers.get("Location", "")[:EXCERPT_CHARS] or "nowhere"
    message = (
        f"{where}: HTTP {status} redirect to {location}; redirects are never "
        "followed: check the API URL"
    )
    return ApiError(
        scrub(message),
        status=status,
        error_type="redirect",
        request_id=_scrubbed(scrub, request_id(headers, None)),
        should_retry=False,
    )


def translate_error(
    status: int,
    payload: object,
    raw: bytes,
    headers: Mapping[str, str],
    *,
    scrub: Scrubber | None = None,
) -> ApiError:
    """The exception for an error answer, read defensively (the body may be HTML).

    Every text taken from the answer goes through ``scrub`` (by default a
    :class:`Scrubber` that masks anything shaped like a credential).
    """
    scrub = scrub or Scrubber()
    error_type, message = (scrub(text) for text in _error_fields(status, payload, raw))
    fields: dict[str, Any] = {
        "status": status,
        "error_type": error_type,
        "request_id": _scrubbed(scrub, request_id(headers, payload)),
        "retry_after_s": parse_retry_after(headers),
        "should_retry": _should_retry(headers),
    }
    what = meaning(status)
    fields["is_throttled"] = what.is_throttled
    if what.stops_run:
        return AuthError(message, **fields)
    if status == 409:  # noqa: PLR2004 - conflict
        return _conflict(message, fields)
    if what.is_retryable:
        return RetryableApiError(message, **fields)
    return ApiError(message, **fields)


_IN_FLIGHT_WORDS = ("progress", "flight", "process", "concurrent", "pending", "retry")
_KEY_MISUSE_WORDS = ("different", "mismatch", "reused", "does not match")


def _conflict(message: str, fields: dict[str, Any]) -> ApiError:
    # 409 means three things here; only the message tells them apart: a key
    # still in flight (retry later), a key reused with another body, or a name.
    text = message.lower()
    if "idempot" not in text:
        return ConflictError(message, reason="name", **fields)
    is_misuse = any(word in text for word in _KEY_MISUSE_WORDS)
    if not is_misuse and any(word in text for word in _IN_FLIGHT_WORDS):
        # The server asks us to come back once the first request has finished:
        # a wait, like a 429, not a failure.
        return RetryableApiError(message, **{**fields, "is_throttled": True})
    return ConflictError(message, reason="idempotency", **fields)


def _error_fields(status: int, payload: object, raw: bytes) -> tuple[str, str]:
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict):
            etype = err.get("type")
            msg = err.get("message")
            return (
                etype if isinstance(etype, str) and etype else f"http_{status}",
                msg if isinstance(msg, str) and msg else f"HTTP {status}",
            )
    excerpt = " ".join(raw[:EXCERPT_CHARS].decode("utf-8", "replace").split())
    return f"http_{status}", excerpt or f"HTTP {status} with an empty body"


def request_id(headers: Mapping[str, str], payload: object) -> str | None:
    """The server's request id, from a header or the body."""
    for name in ("x-request-id", "request-id"):
        value = headers.get(name)
        if value:
            return value
    if isinstance(payload, dict) and isinstance(payload.get("request_id"), str):
        return str(payload["request_id"])
    return None


def _should_retry(headers: Mapping[str, str]) -> bool | None:
    value = headers.get("x-should-retry", "").strip().lower()
    return {"true": True, "false": False}.get(value)


def _scrubbed(scrub: Scrubber, text: str | None) -> str | None:
    return None if text is None else scrub(text)


def parse_retry_after(
    headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """Seconds to wait from ``retry-after-ms``, else ``Retry-After`` (seconds or a date).

    A negative, NaN or infinite value counts as absent; a date in the past is 0.
    """
    millis = _wait_s(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _wait_s(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _wait_s(text: str | None) -> float | None:
    """``text`` as a finite number of 0 or more, else ``None``."""
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value + 0.0 if math.isfinite(value) and value >= 0 else None


__all__ = [
    "REDIRECT_STATUSES",
    "describe_missing_id",
    "expect_object",
    "is_env_id",
    "parse_json",
    "parse_retry_after",
    "redirect_error",
    "request_id",
    "translate_error",
]
