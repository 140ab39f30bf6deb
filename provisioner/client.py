"""``ApiClient``: the Environments API over one ``aiohttp.ClientSession``.

It sends one request per call and translates every answer into a value or an
exception from :mod:`provisioner.errors`; it never retries, sleeps or logs bodies.
aiohttp's exceptions never leave this module.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from provisioner import __version__
from provisioner.errors import (
    ApiError,
    AuthError,
    ConflictError,
    RetryableApiError,
    TransportError,
)
from provisioner.settings import ApiSettings

USER_AGENT = f"provisioner/{__version__}"
PAGE_LIMIT = 100
RETRYABLE_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
_EXCERPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class Created:
    """A successful create: the Environment as the server returned it."""

    environment: dict[str, Any]
    http_status: int
    request_id: str | None
    is_replay: bool

    @property
    def env_id(self) -> str:
        """The new environment's id."""
        return str(self.environment["id"])


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the list endpoint."""

    data: list[dict[str, Any]]
    has_more: bool
    next_page: str | None
    last_id: str | None


def open_session(*, concurrency: int, timeout_s: float) -> aiohttp.ClientSession:
    """A session whose connection pool matches the run's concurrency.

    A few spare connections serve the list calls that reconcile conflicts.
    """
    connector = aiohttp.TCPConnector(limit=concurrency + 2, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 10.0))
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers={"User-Agent": USER_AGENT}
    )


class ApiClient:
    """Create, get and list environments.

    Args:
        session: an open session; the caller owns and closes it.
        settings: base URL, token and timeout.
    """

    def __init__(
        self, session: aiohttp.ClientSession, *, settings: ApiSettings
    ) -> None:
        self._session = session
        self._base = settings.base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {settings.token.reveal()}"}

    async def create(
        self, body: Mapping[str, Any], *, idempotency_key: str, attempt: int = 1
    ) -> Created:
        """``POST /environments`` with an ``Idempotency-Key``.

        Raises:
            ApiError: (or a subclass) for an error status.
            TransportError: no usable answer.
        """
        headers = {
            **self._auth,
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            "X-Qoder-Retry-Count": str(attempt - 1),
        }
        status, payload, resp_headers = await self._request(
            "POST", "/environments", data=orjson.dumps(body), headers=headers
        )
        if not isinstance(payload, dict) or "id" not in payload:
            # A success we cannot read may still have committed: retry with the key.
            raise TransportError(
                f"HTTP {status} without an environment in the body",
                is_ambiguous=True,
                error_type="bad_answer",
            )
        return Created(
            environment=payload,
            http_status=status,
            request_id=_request_id(resp_headers, payload),
            is_replay=resp_headers.get("Idempotent-Replayed", "").lower() == "true",
        )

    async def get(self, env_id: str) -> dict[str, Any]:
        """``GET /environments/{id}``."""
        _, payload, _ = await self._request(
            "GET", f"/environments/{env_id}", headers=self._auth
        )
        return _expect_object(payload)

    async def list_page(
        self,
        *,
        cursor: str | None = None,
        use_page: bool = True,
        limit: int = PAGE_LIMIT,
    ) -> Page:
        """One page of ``GET /environments``, archived ones included, newest first.

        ``cursor`` is a ``next_page`` value (``use_page``) or an id for ``after_id``.
        """
        params = {"limit": str(limit), "include_archived": "true"}
        if cursor is not None:
            params["page" if use_page else "after_id"] = cursor
        _, payload, _ = await self._request(
            "GET", "/environments", headers=self._auth, params=params
        )
        page = _expect_object(payload)
        data = page.get("data")
        if not isinstance(data, list):
            raise TransportError(
                "list answer without a data array",
                is_ambiguous=False,
                error_type="bad_answer",
            )
        next_page = page.get("next_page")
        return Page(
            data=[d for d in data if isinstance(d, dict)],
            has_more=bool(page.get("has_more")),
            next_page=next_page if isinstance(next_page, str) and next_page else None,
            last_id=page.get("last_id") or (data[-1].get("id") if data else None),
        )

    async def iter_environments(self) -> AsyncIterator[dict[str, Any]]:
        """Every environment, newest first, following ``next_page`` or ``after_id``."""
        cursor: str | None = None
        use_page = True
        while True:
            page = await self.list_page(cursor=cursor, use_page=use_page)
            for env in page.data:
                yield env
            following, use_page = next_cursor(page, use_page=use_page)
            if not page.has_more or following is None or following == cursor:
                return
            cursor = following

    async def _request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, object, Mapping[str, str]]:
        url = self._base + path
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, params=params
            ) as resp:
                raw = await resp.read()
                status, resp_headers = resp.status, resp.headers
        except TimeoutError as exc:
            raise TransportError(
                f"{method} {path}: no answer within the timeout",
                is_ambiguous=True,
                error_type="timeout",
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(
                f"{method} {path}: cannot connect: {exc.os_error}",
                is_ambiguous=False,
                error_type="connection_error",
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"{method} {path}: connection lost: {type(exc).__name__}",
                is_ambiguous=True,
            ) from exc
        payload = _parse_json(raw)
        if status >= 400:  # noqa: PLR2004 - HTTP's error boundary
            raise translate_error(status, payload, raw, resp_headers)
        return status, payload, resp_headers


def next_cursor(page: Page, *, use_page: bool) -> tuple[str | None, bool]:
    """The cursor after ``page`` and whether it is a ``next_page`` value.

    Never mix cursor kinds: follow ``next_page`` while the server gives one,
    else fall back to ``last_id`` as ``after_id`` for good.
    """
    if use_page and page.next_page:
        return page.next_page, True
    return page.last_id, False


def _parse_json(raw: bytes) -> object:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _expect_object(payload: object) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise TransportError(
            "answer is not a JSON object", is_ambiguous=False, error_type="bad_answer"
        )
    return payload


def translate_error(
    status: int, payload: object, raw: bytes, headers: Mapping[str, str]
) -> ApiError:
    """The exception for an error answer, read defensively (the body may be HTML)."""
    error_type, message = _error_fields(status, payload, raw)
    fields: dict[str, Any] = {
        "status": status,
        "error_type": error_type,
        "request_id": _request_id(headers, payload),
        "retry_after_s": parse_retry_after(headers),
        "should_retry": _should_retry(headers),
    }
    if status in {401, 403}:
        return AuthError(message, **fields)
    if status == 409:  # noqa: PLR2004 - conflict
        return _conflict(message, fields)
    if status in RETRYABLE_STATUSES:
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
        return RetryableApiError(message, **fields)
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
    excerpt = " ".join(raw[:_EXCERPT_CHARS].decode("utf-8", "replace").split())
    return f"http_{status}", excerpt or f"HTTP {status} with an empty body"


def _request_id(headers: Mapping[str, str], payload: object) -> str | None:
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


def parse_retry_after(
    headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """Seconds to wait from ``retry-after-ms``, else ``Retry-After`` (seconds or a date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


__all__ = [
    "ApiClient",
    "Created",
    "Page",
    "next_cursor",
    "open_session",
    "parse_retry_after",
    "translate_error",
]
