"""``ApiClient``: the Environments API on one ``aiohttp.ClientSession``.

It sends one request per call and translates every answer into a value or an
exception from :mod:`provisioner.errors`; it never retries, sleeps or logs bodies.
aiohttp's exceptions never leave this module.

:func:`open_session` sizes the pool to the run's concurrency, closes a
connection idle for :data:`IDLE_CLOSE_S` (before a NAT, load balancer or server
drops it silently), connects with happy eyeballs (RFC 8305: the next address is
tried 0.25 s after the first stays silent) and verifies TLS. The proxy, if any,
comes from :mod:`provisioner.proxy`; HTTPS goes through it with ``CONNECT``.

It believes nothing a server says (:mod:`provisioner.api.responses` reads the
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
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from yarl import URL

from provisioner.api.responses import (
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
from provisioner.errors import CONNECTION_RESET, ApiError, ConfigError, TransportError
from provisioner.redact import Scrubber
from provisioner.settings import VERSION, ApiSettings

USER_AGENT = f"provisioner/{VERSION}"
PAGE_LIMIT = 100
MAX_ANSWER_BYTES = 1024 * 1024
MAX_PAGE_BYTES = 64 * 1024 * 1024
MAX_LIST_PAGES = 10_000
LIST_DEADLINE_S = 300.0
#: Seconds a kept-alive connection may sit idle before it is closed: below the 5 s
#: of Node's servers and far below NAT and load balancer idle timeouts, so a
#: request never meets a connection that was dropped without a word.
IDLE_CLOSE_S = 4.0
#: The longest wait for one connection (each address tried within it).
CONNECT_TIMEOUT_S = 10.0
#: Caps on an answer's head, refused while reading: one line, one field, fields.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 16 * 1024
MAX_HEADERS = 128

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
class Probe:
    """A raw answer for ``provisioner doctor``: whatever its status, never raised.

    Attributes:
        http_status: the status, error statuses and redirects included.
        headers: the answer's headers, names lower-cased (the last of repeats).
        payload: the JSON body, or ``None`` for an empty or non-JSON body.
        error: the error the answer stands for (scrubbed), when it is 3xx/4xx/5xx.
    """

    http_status: int
    headers: Mapping[str, str]
    payload: object
    error: ApiError | None


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
    """A verifying TLS context: trusting only ``ca_file`` (a PEM file, or a
    hashed directory) when given, else the system's store, which honours
    ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``.

    Raises:
        ConfigError: ``ca_file`` cannot be read or holds no certificate.
    """
    try:
        if ca_file is not None and Path(ca_file).is_dir():
            return ssl.create_default_context(capath=ca_file)
        return ssl.create_default_context(cafile=ca_file)
    except OSError as exc:  # ssl.SSLError is an OSError too
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot load CA file {ca_file}: {reason}") from exc


def open_session(
    *,
    concurrency: int,
    timeout_s: float,
    ca_file: str | None = None,
    idle_close_s: float = IDLE_CLOSE_S,
    resolver: aiohttp.abc.AbstractResolver | None = None,
) -> aiohttp.ClientSession:
    """A session whose pool is sized to the run's concurrency; call it in the loop.

    Certificates are always verified (see :func:`tls_context`). A few spare
    connections serve the list calls that reconcile conflicts. Each request
    must end within ``timeout_s``, connecting included. No cookies are kept,
    no compression is asked for, answers' heads are capped while they are read.

    Args:
        idle_close_s: seconds an idle connection is kept (default
            :data:`IDLE_CLOSE_S`).
        resolver: how host names are looked up (default: the system's).

    Raises:
        ConfigError: ``ca_file`` cannot be read or holds no certificate.
    """
    connector = aiohttp.TCPConnector(
        limit=concurrency + 2,
        ssl=tls_context(ca_file),
        keepalive_timeout=idle_close_s,
        resolver=resolver,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=min(CONNECT_TIMEOUT_S, timeout_s)
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_FIELD_BYTES,
        max_headers=MAX_HEADERS,
    )


class ApiClient:
    """Create, update, get and list environments.

    Args:
        session: an open session (:func:`open_session`); the caller owns and closes it.
        settings: base URL, token, timeout and proxies.
        max_answer_bytes: the largest create or get answer read (default 1 MiB).
        max_page_bytes: the largest list page read (default 64 MiB).
        max_list_pages: pages :meth:`iter_environments` reads at most.
        list_deadline_s: seconds :meth:`iter_environments` may take in all.
        clock: monotonic seconds for the list deadline; tests inject one.

    Raises:
        ConfigError: the token holds a line break or NUL; a bad proxy URL.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
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
        self._base = settings.base_url.rstrip("/")
        token = settings.token.reveal()
        if any(c in token for c in "\r\n\0"):
            raise ConfigError("the token holds a line break or NUL")
        self._headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
        }
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        route = settings.proxy.route(self._base)
        self._via: dict[str, Any] = {}
        secrets = [token]
        if route is not None:
            self._via["proxy"] = route.url
            if route.authorization is not None:
                auth = route.authorization.reveal()
                self._via["proxy_headers"] = {"Proxy-Authorization": auth}
                secrets.append(auth)
            if route.password is not None:
                secrets.append(route.password.reveal())
        self.proxy = route
        self._scrub = Scrubber(secrets)
        self._create_url = URL(f"{self._base}/environments")
        self._update_method = settings.update_method
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
        status, payload, resp_headers = await self._send_keyed(
            "POST", "/environments", body, key=idempotency_key, attempt=attempt
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
        """``POST /environments/{id}`` (the newest docs' update; ``PUT``, the oldest
        docs', when ``ApiSettings.update_method`` says so) with an ``Idempotency-Key``.

        Only an answer that is the environment ``env_id`` is a success.

        Raises:
            ValueError: ``env_id`` is not ``env_`` + 32 hex digits.
            ApiError: (or a subclass) for an error status or a redirect.
            TransportError: no usable answer; ``bad_answer`` (ambiguous) for a
                body that is not this environment or is above the cap.
        """
        path = self._env_path(env_id)
        status, payload, resp_headers = await self._send_keyed(
            self._update_method, path, body, key=idempotency_key, attempt=attempt
        )
        if not isinstance(payload, dict) or payload.get("id") != env_id:
            raise self._bad_answer(status, "update", payload)
        return Updated(
            environment=payload,
            http_status=status,
            request_id=request_id(resp_headers, payload),
        )

    async def _send_keyed(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any],
        *,
        key: str,
        attempt: int,
    ) -> tuple[int, object, Mapping[str, str]]:
        """A JSON ``method`` to ``url`` with its ``Idempotency-Key`` and retry count."""
        # aiohttp refuses a header value holding CR or LF (no request smuggling).
        headers = {
            **self._json_headers,
            "Idempotency-Key": key,
            "X-Qoder-Retry-Count": str(attempt - 1),
        }
        url = self._create_url if path == "/environments" else URL(self._base + path)
        return await self._send(
            method, url, f"{method} {path}", headers=headers, data=orjson.dumps(body)
        )

    def _bad_answer(self, status: int, what: str, payload: object) -> TransportError:
        """A success that cannot be believed; it may have committed, so the key retries it."""
        return TransportError(
            self._scrub(f"HTTP {status} {what}: {describe_missing_id(payload)}"),
            is_ambiguous=True,
            error_type="bad_answer",
        )

    async def get(self, env_id: str) -> dict[str, Any]:
        """``GET /environments/{id}``: only an answer that is that environment.

        Raises:
            ApiError: (or a subclass) for an error status or a redirect.
            TransportError: no usable answer; ``bad_answer`` for another
                environment's answer (a confused server or connection).
        """
        _, payload, _ = await self._request("GET", f"/environments/{env_id}")
        env = expect_object(payload)
        if env.get("id") != env_id:
            raise TransportError(
                self._scrub(
                    f"GET /environments/{env_id}: the answer is not that environment"
                ),
                is_ambiguous=False,
                error_type=BAD_ANSWER,
            )
        return env

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
        url = URL(self._base + path)
        if params:
            url = url.with_query(params)
        return await self._send(
            method, url, f"{method} {path}", headers=self._headers, max_bytes=max_bytes
        )

    async def _send(
        self,
        method: str,
        url: URL,
        where: str,
        *,
        headers: Mapping[str, str],
        data: bytes | None = None,
        max_bytes: int | None = None,
    ) -> tuple[int, object, Mapping[str, str]]:
        """One request; its answer read up to ``max_bytes`` (the answer cap)."""
        status, raw, resp_headers = await self._exchange(
            method, url, where, headers=headers, data=data, max_bytes=max_bytes
        )
        if status in REDIRECT_STATUSES:  # never followed: it would hand the token on
            raise redirect_error(where, status, resp_headers, scrub=self._scrub)
        payload = parse_json(raw)
        if status >= 400:  # noqa: PLR2004 - HTTP's error boundary
            raise translate_error(status, payload, raw, resp_headers, scrub=self._scrub)
        return status, payload, resp_headers

    async def probe(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Probe:
        """One request to ``path`` under the base URL whose answer is returned, not raised.

        ``provisioner doctor`` reads the status and headers of answers that
        other calls would raise (401, 404, 405, a 400 naming a field).

        Raises:
            TransportError: no usable answer (connection, TLS, proxy, timeout).
        """
        url = URL(self._base + path)
        if params:
            url = url.with_query(params)
        headers = dict(self._headers if body is None else self._json_headers)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        data = None if body is None else orjson.dumps(body)
        where = f"{method} {path}"
        status, raw, resp_headers = await self._exchange(
            method, url, where, headers=headers, data=data
        )
        payload = parse_json(raw)
        error: ApiError | None = None
        if status in REDIRECT_STATUSES:
            error = redirect_error(where, status, resp_headers, scrub=self._scrub)
        elif status >= 400:  # noqa: PLR2004 - HTTP's error boundary
            error = translate_error(
                status, payload, raw, resp_headers, scrub=self._scrub
            )
        lowered = {k.lower(): v for k, v in resp_headers.items()}
        return Probe(http_status=status, headers=lowered, payload=payload, error=error)

    async def _exchange(
        self,
        method: str,
        url: URL,
        where: str,
        *,
        headers: Mapping[str, str],
        data: bytes | None = None,
        max_bytes: int | None = None,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """Send one request and read its answer: status, body, headers."""
        max_bytes = max_bytes or self._max_answer_bytes
        if self._session.closed:
            raise TransportError(
                f"{where}: the HTTP session is closed",
                is_ambiguous=False,
                error_type=CONNECTION_ERROR,
            )
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                **self._via,
            ) as answer:
                raw = await read_capped(answer, max_bytes)
                return answer.status, raw, answer.headers
        except (TimeoutError, aiohttp.ClientError, AnswerTooLargeError) as exc:
            raise self._transport_error(where, exc, max_bytes) from exc

    def _transport_error(
        self, where: str, exc: BaseException, max_bytes: int
    ) -> TransportError:
        kind = _failure_kind(exc)
        if kind == PROXY_ERROR:
            return self._proxy_error(where, exc)
        reason = _reason(exc)
        # kind -> (what happened, may it have reached the server, worth a retry)
        text, is_ambiguous, is_retryable = {
            _TOO_LARGE: (
                f"the answer is larger than the {max_bytes}-byte cap; not read",
                where.startswith("POST"),
                True,
            ),
            "timeout": ("no answer within the timeout", True, True),
            # A certificate the client cannot trust will not improve on a retry.
            TLS_ERROR: (f"TLS check failed: {exc}", False, False),
            CONNECTION_ERROR: (f"cannot connect: {reason}", False, True),
            BAD_ANSWER: (f"not an HTTP answer we can read: {reason}", True, True),
        }.get(kind, (f"connection lost: {reason}", True, True))
        return TransportError(
            self._scrub(f"{where}: {text}"),
            is_ambiguous=is_ambiguous,
            error_type=BAD_ANSWER if kind == _TOO_LARGE else kind,
            is_retryable=is_retryable,
        )

    def _proxy_error(self, where: str, exc: BaseException) -> TransportError:
        """The proxy refused the ``CONNECT`` or could not reach the API: nothing was sent."""
        status = getattr(exc, "status", 0)
        shown = self.proxy.url if self.proxy is not None else "the proxy"
        if status == 407:  # noqa: PLR2004 - Proxy Authentication Required
            return TransportError(
                f"{where}: proxy {shown} asks for credentials (HTTP 407): put "
                "them in the proxy URL (user:password@) of PROVISIONER_PROXY, "
                "--proxy-file or HTTPS_PROXY",
                is_ambiguous=False,
                error_type=PROXY_ERROR,
                is_retryable=False,
            )
        reason = f"HTTP {status}" if status else _reason(exc)
        return TransportError(
            self._scrub(f"{where}: proxy {shown} failed: {reason}"),
            is_ambiguous=False,
            error_type=PROXY_ERROR,
        )


class AnswerTooLargeError(Exception):
    """An answer declared or delivered more bytes than its cap (never leaves this module)."""


async def read_capped(answer: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body of ``answer``, refused as soon as it passes ``max_bytes``.

    Raises:
        AnswerTooLargeError: the declared length or the bytes so far pass the cap;
            the connection is closed, never reused.
    """
    declared = answer.content_length
    if declared is not None and declared > max_bytes:
        answer.close()
        raise AnswerTooLargeError
    if declared is not None:
        return await answer.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            answer.close()
            raise AnswerTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


#: ``TransportError.error_type`` values besides ``timeout`` and ``connection_reset``.
CONNECTION_ERROR = "connection_error"
PROXY_ERROR = "proxy_error"
BAD_ANSWER = "bad_answer"


_TOO_LARGE = "too_large"
# aiohttp's exceptions, most specific first, and the error type each one is.
_FAILURE_KINDS: tuple[
    tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...
] = (
    (AnswerTooLargeError, _TOO_LARGE),
    ((aiohttp.ClientHttpProxyError, aiohttp.ClientProxyConnectionError), PROXY_ERROR),
    ((aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch), TLS_ERROR),
    (aiohttp.ConnectionTimeoutError, CONNECTION_ERROR),  # nothing was sent
    (TimeoutError, "timeout"),
    (aiohttp.ClientConnectorError, CONNECTION_ERROR),
    # A head aiohttp would not parse: too long, too many fields, not HTTP.
    (aiohttp.ClientResponseError, BAD_ANSWER),
)


def _failure_kind(exc: BaseException) -> str:
    """What went wrong, from aiohttp's exception: one of this module's error types."""
    return next(
        (kind for types, kind in _FAILURE_KINDS if isinstance(exc, types)),
        CONNECTION_RESET,
    )


def _reason(exc: BaseException) -> str:
    """aiohttp's words for ``exc``, or its type when it has none."""
    return str(exc) or type(exc).__name__


__all__ = [
    "CONNECTION_ERROR",
    "IDLE_CLOSE_S",
    "PROXY_ERROR",
    "TLS_ERROR",
    "WALK_LIMIT",
    "Answered",
    "ApiClient",
    "Created",
    "ListWalk",
    "Page",
    "Probe",
    "Updated",
    "WalkLimits",
    "next_cursor",
    "open_session",
    "parse_retry_after",
    "tls_context",
    "translate_error",
]
