"""``ApiClient``: the Environments API over one connection pool (:mod:`provisioner.transport`).

It sends one request per call and translates every answer into a value or an
exception from :mod:`provisioner.errors`; it never retries, sleeps or logs bodies.
The transport's exceptions never leave this module.

It believes nothing a server says (:mod:`provisioner.answers` reads the
answers): a create without a well-formed id, a body above its size cap and an
endless list are failures, redirects are never followed, TLS is always
verified, and every message built from an answer or an exception is scrubbed
of the token.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from provisioner import __version__
from provisioner.answers import (
    REDIRECT_STATUSES,
    describe_missing_id,
    expect_object,
    is_env_id,
    parse_json,
    parse_retry_after,
    redirect_error,
    request_id,
    translate_error,
)
from provisioner.errors import ConfigError, TransportError
from provisioner.redact import Scrubber
from provisioner.settings import ApiSettings
from provisioner.transport import (
    AnswerTooLargeError,
    ConnectError,
    HttpPool,
    Origin,
    TlsError,
    TransportFailureError,
    header_block,
    request_line,
)

USER_AGENT = f"provisioner/{__version__}"
PAGE_LIMIT = 100
MAX_ANSWER_BYTES = 1024 * 1024
MAX_PAGE_BYTES = 64 * 1024 * 1024
MAX_LIST_PAGES = 10_000
LIST_DEADLINE_S = 300.0

Clock = Callable[[], float]


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

    @property
    def status(self) -> str:
        """The environment's ``status`` (``"ready"``, ``"archived"``, ...) as answered.

        A server that omits it (the newest docs do) or sends a non-string gets
        ``"archived"`` when ``archived_at`` is set, else ``"ready"``.
        """
        status = self.environment.get("status")
        if isinstance(status, str) and status:
            return status
        return "ready" if self.environment.get("archived_at") is None else "archived"


@dataclass(frozen=True, slots=True)
class Updated:
    """A successful update: the Environment as the server returned it."""

    environment: dict[str, Any]
    http_status: int
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Answered:
    """The answer to an archive or a delete: its JSON object, status and request id."""

    body: dict[str, Any]
    http_status: int
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the list endpoint."""

    data: list[dict[str, Any]]
    has_more: bool
    next_page: str | None
    last_id: str | None


@dataclass(frozen=True, slots=True)
class WalkLimits:
    """How far one walk of the list endpoint may go before it is a failure.

    Attributes:
        max_pages: pages fetched at most.
        deadline_s: seconds after the walk starts when no further page is fetched.
        clock: monotonic seconds; tests inject one.
    """

    max_pages: int = MAX_LIST_PAGES
    deadline_s: float = LIST_DEADLINE_S
    clock: Clock = time.monotonic

    def __post_init__(self) -> None:
        if self.max_pages < 1 or not self.deadline_s > 0:
            raise ConfigError(
                "a list walk needs at least 1 page and a positive deadline"
            )

    def start(self) -> ListWalk:
        """A new walk, its deadline counted from now."""
        return ListWalk(self)


#: ``TransportError.error_type`` of a certificate or handshake failure (not retried).
TLS_ERROR = "tls_error"
#: ``TransportError.error_type`` of a list walk that hit its page cap or deadline.
WALK_LIMIT = "list_walk_limit"


class ListWalk:
    """One walk of the list endpoint: counts pages and watches the clock."""

    def __init__(self, limits: WalkLimits) -> None:
        self._limits = limits
        self._started = limits.clock()
        self.pages = 0

    def next_page(self) -> None:
        """Count the page about to be fetched.

        Raises:
            TransportError: ``list_walk_limit`` (not retryable) once the walk has
                fetched ``max_pages`` pages or run past its deadline.
        """
        limits = self._limits
        if self.pages >= limits.max_pages:
            raise _walk_limit(f"the list did not end within {limits.max_pages} pages")
        if limits.clock() - self._started > limits.deadline_s:
            raise _walk_limit(
                f"the list did not end within the {limits.deadline_s:g} s deadline "
                f"({self.pages} pages read)"
            )
        self.pages += 1


def _walk_limit(reason: str) -> TransportError:
    return TransportError(
        f"list walk stopped: {reason}; the server keeps answering has_more",
        is_ambiguous=False,
        error_type=WALK_LIMIT,
        is_retryable=False,
    )


def next_cursor(page: Page, *, use_page: bool) -> tuple[str | None, bool]:
    """The cursor after ``page`` and whether it is a ``next_page`` value.

    Never mix cursor kinds: follow ``next_page`` while the server gives one,
    else fall back to ``last_id`` as ``after_id`` for good.
    """
    if use_page and page.next_page:
        return page.next_page, True
    return page.last_id, False


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying TLS context: trusting only ``ca_file`` when given, else the
    system's store (which honours ``SSL_CERT_FILE``).

    Raises:
        ConfigError: ``ca_file`` cannot be read or holds no certificate.
    """
    try:
        return ssl.create_default_context(cafile=ca_file)
    except OSError as exc:  # ssl.SSLError is an OSError too
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot load CA file {ca_file}: {reason}") from exc


def open_session(
    *, concurrency: int, timeout_s: float, ca_file: str | None = None
) -> HttpPool:
    """A connection pool sized to the run's concurrency (see :mod:`provisioner.transport`).

    Certificates are always verified (see :func:`tls_context`). A few spare
    connections serve the list calls that reconcile conflicts.

    Raises:
        ConfigError: ``ca_file`` cannot be read or holds no certificate.
    """
    return HttpPool(
        limit=concurrency + 2, timeout_s=timeout_s, ssl_context=tls_context(ca_file)
    )


class ApiClient:
    """Create, update, get and list environments.

    Args:
        session: an open connection pool; the caller owns and closes it.
        settings: base URL, token and timeout.
        max_answer_bytes: the largest create or get answer read (default 1 MiB).
        max_page_bytes: the largest list page read (default 64 MiB).
        max_list_pages: pages :meth:`iter_environments` reads at most.
        list_deadline_s: seconds :meth:`iter_environments` may take in all.
        clock: monotonic seconds for the list deadline; tests inject one.
    """

    def __init__(
        self,
        session: HttpPool,
        *,
        settings: ApiSettings,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_page_bytes: int = MAX_PAGE_BYTES,
        max_list_pages: int = MAX_LIST_PAGES,
        list_deadline_s: float = LIST_DEADLINE_S,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_answer_bytes < 1 or max_page_bytes < 1:
            raise ConfigError("answer size caps must be at least 1 byte")
        self._session = session
        base = settings.base_url.rstrip("/")
        try:
            self._origin = Origin.of(base)
        except ValueError as exc:
            raise ConfigError(f"the API URL is not an http(s) URL: {base}") from exc
        self._prefix = urlsplit(base).path
        token = settings.token.reveal()
        self._scrub = Scrubber([token])
        common = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        try:
            self._headers = header_block({**common, "Authorization": f"Bearer {token}"})
        except ValueError as exc:
            raise ConfigError("the token holds a line break or NUL") from exc
        self._create_line = request_line("POST", f"{self._prefix}/environments")
        self._json = b"Content-Type: application/json\r\n"
        self._max_answer_bytes = max_answer_bytes
        self._max_page_bytes = max_page_bytes
        self._walk = WalkLimits(
            max_pages=max_list_pages, deadline_s=list_deadline_s, clock=clock
        )

    async def create(
        self, body: Mapping[str, Any], *, idempotency_key: str, attempt: int = 1
    ) -> Created:
        """``POST /environments`` with an ``Idempotency-Key``.

        Only an answer whose ``id`` is ``env_`` + 32 hex digits is a success.

        Raises:
            ApiError: (or a subclass) for an error status or a redirect.
            TransportError: no usable answer; ``bad_answer`` (ambiguous: it may
                have committed) for a body without a valid id or above the cap.
        """
        status, payload, resp_headers = await self._post_keyed(
            "/environments", self._create_line, body, idempotency_key, attempt
        )
        if not isinstance(payload, dict) or not is_env_id(payload.get("id")):
            raise self._bad_answer(status, "create", payload)
        return Created(
            environment=payload,
            http_status=status,
            request_id=request_id(resp_headers, payload),
            is_replay=resp_headers.get("Idempotent-Replayed", "").lower() == "true",
        )

    async def update(
        self,
        env_id: str,
        body: Mapping[str, Any],
        *,
        idempotency_key: str,
        attempt: int = 1,
    ) -> Updated:
        """``POST /environments/{id}`` (the newest docs' update) with an ``Idempotency-Key``.

        Only an answer that is the environment ``env_id`` is a success.

        Raises:
            ValueError: ``env_id`` is not ``env_`` + 32 hex digits.
            ApiError: (or a subclass) for an error status or a redirect.
            TransportError: no usable answer; ``bad_answer`` (ambiguous) for a
                body that is not this environment or is above the cap.
        """
        if not is_env_id(env_id):
            raise ValueError(f"not an environment id: {env_id!r}")
        path = f"/environments/{env_id}"
        line = request_line("POST", self._prefix + path)
        status, payload, resp_headers = await self._post_keyed(
            path, line, body, idempotency_key, attempt
        )
        if not isinstance(payload, dict) or payload.get("id") != env_id:
            raise self._bad_answer(status, "update", payload)
        return Updated(
            environment=payload,
            http_status=status,
            request_id=request_id(resp_headers, payload),
        )

    async def _post_keyed(
        self,
        path: str,
        line: bytes,
        body: Mapping[str, Any],
        idempotency_key: str,
        attempt: int,
    ) -> tuple[int, object, Mapping[str, str]]:
        """A JSON ``POST`` (request ``line``) with its ``Idempotency-Key`` and retry count."""
        extra = header_block(
            {
                "Idempotency-Key": idempotency_key,
                "X-Qoder-Retry-Count": str(attempt - 1),
            }
        )
        head = line + self._headers + self._json + extra
        return await self._send(f"POST {path}", head, orjson.dumps(body))

    def _bad_answer(self, status: int, what: str, payload: object) -> TransportError:
        """A success that cannot be believed; it may have committed, so the key retries it."""
        return TransportError(
            self._scrub(f"HTTP {status} {what}: {describe_missing_id(payload)}"),
            is_ambiguous=True,
            error_type="bad_answer",
        )

    async def get(self, env_id: str) -> dict[str, Any]:
        """``GET /environments/{id}``."""
        _, payload, _ = await self._request("GET", f"/environments/{env_id}")
        return expect_object(payload)

    async def archive(self, env_id: str) -> Answered:
        """``POST /environments/{id}/archive`` (no body, no idempotency key).

        Archiving twice changes nothing (the older docs answer 409), so a retry
        needs no key.

        Raises:
            ValueError: ``env_id`` is not ``env_`` + 32 hex digits.
            ApiError: (or a subclass) for an error status or a redirect.
            TransportError: no usable answer.
        """
        return await self._answered("POST", self._env_path(env_id, "/archive"))

    async def delete(self, env_id: str) -> Answered:
        """``DELETE /environments/{id}`` (no idempotency key: a repeat answers 404).

        Raises:
            ValueError: ``env_id`` is not ``env_`` + 32 hex digits.
            ApiError: (or a subclass) for an error status (409: still in use).
            TransportError: no usable answer.
        """
        return await self._answered("DELETE", self._env_path(env_id))

    async def _answered(self, method: str, path: str) -> Answered:
        status, payload, headers = await self._request(method, path)
        return Answered(
            body=expect_object(payload),
            http_status=status,
            request_id=request_id(headers, payload),
        )

    @staticmethod
    def _env_path(env_id: str, suffix: str = "") -> str:
        if not is_env_id(env_id):
            raise ValueError(f"not an environment id: {env_id!r}")
        return f"/environments/{env_id}{suffix}"

    async def list_page(
        self,
        *,
        cursor: str | None = None,
        use_page: bool = True,
        limit: int = PAGE_LIMIT,
    ) -> Page:
        """One page of ``GET /environments``, archived ones included, newest first.

        ``cursor`` is a ``next_page`` value (``use_page``) or an id for ``after_id``.
        Entries whose id is not ``env_`` + 32 hex digits are left out.
        """
        params = {"limit": str(limit), "include_archived": "true"}
        if cursor is not None:
            params["page" if use_page else "after_id"] = cursor
        _, payload, _ = await self._request(
            "GET", "/environments", params=params, max_bytes=self._max_page_bytes
        )
        page = expect_object(payload)
        data = page.get("data")
        if not isinstance(data, list):
            raise TransportError(
                "list answer without a data array",
                is_ambiguous=False,
                error_type="bad_answer",
            )
        entries = [d for d in data if isinstance(d, dict) and is_env_id(d.get("id"))]
        next_page, last_id = page.get("next_page"), page.get("last_id")
        if not is_env_id(last_id):
            last_id = entries[-1]["id"] if entries else None
        return Page(
            data=entries,
            has_more=bool(page.get("has_more")),
            next_page=next_page if isinstance(next_page, str) and next_page else None,
            last_id=last_id,
        )

    async def iter_environments(self) -> AsyncIterator[dict[str, Any]]:
        """Every environment, newest first, following ``next_page`` or ``after_id``.

        Raises:
            TransportError: ``list_walk_limit`` (not retryable) when the list does
                not end within ``max_list_pages`` pages or ``list_deadline_s``.
        """
        walk = self._walk.start()
        cursor: str | None = None
        use_page = True
        while True:
            walk.next_page()
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
        params: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> tuple[int, object, Mapping[str, str]]:
        """A request without a body to ``path`` under the base URL."""
        target = self._prefix + path
        if params:
            target += "?" + urlencode(params)
        head = request_line(method, target) + self._headers
        return await self._send(f"{method} {path}", head, b"", max_bytes=max_bytes)

    async def _send(
        self, where: str, head: bytes, body: bytes, *, max_bytes: int | None = None
    ) -> tuple[int, object, Mapping[str, str]]:
        """One request; its answer read up to ``max_bytes`` (the answer cap)."""
        max_bytes = max_bytes or self._max_answer_bytes
        try:
            answer = await self._session.request(
                self._origin, head, body, max_body_bytes=max_bytes
            )
        except (TimeoutError, TransportFailureError) as exc:
            raise self._transport_error(where, exc, max_bytes) from exc
        status, resp_headers = answer.status, answer.headers
        if status in REDIRECT_STATUSES:  # never followed: it would hand the token on
            raise redirect_error(where, status, resp_headers, scrub=self._scrub)
        payload = parse_json(answer.body)
        if status >= 400:  # noqa: PLR2004 - HTTP's error boundary
            raise translate_error(
                status, payload, answer.body, resp_headers, scrub=self._scrub
            )
        return status, payload, resp_headers

    def _transport_error(
        self, where: str, exc: BaseException, max_bytes: int
    ) -> TransportError:
        is_post = where.startswith("POST")
        if isinstance(exc, TimeoutError):
            return TransportError(
                f"{where}: no answer within the timeout",
                is_ambiguous=True,
                error_type="timeout",
            )
        if isinstance(exc, TlsError):
            # A certificate the client cannot trust will not improve on a retry.
            return TransportError(
                self._scrub(f"{where}: TLS check failed: {exc}"),
                is_ambiguous=False,
                error_type=TLS_ERROR,
                is_retryable=False,
            )
        if isinstance(exc, ConnectError):
            return TransportError(
                self._scrub(f"{where}: cannot connect: {exc}"),
                is_ambiguous=False,
                error_type="connection_error",
            )
        if isinstance(exc, AnswerTooLargeError):
            return TransportError(
                f"{where}: the answer is larger than the {max_bytes}-byte cap; not read",
                is_ambiguous=is_post,
                error_type="bad_answer",
            )
        return TransportError(
            self._scrub(f"{where}: connection lost: {exc}"), is_ambiguous=True
        )


__all__ = [
    "TLS_ERROR",
    "WALK_LIMIT",
    "Answered",
    "ApiClient",
    "Created",
    "ListWalk",
    "Page",
    "Updated",
    "WalkLimits",
    "next_cursor",
    "open_session",
    "parse_retry_after",
    "tls_context",
    "translate_error",
]
