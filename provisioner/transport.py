"""HTTP/1.1 for the API client: a pool of keep-alive connections to one origin.

Why not aiohttp's client: measured on the 2-core development machine, an
``aiohttp.ClientSession`` request costs about 80 µs of CPU on its own, which is
all a bare aiohttp loop spends per create; a run also validates, logs and records
every spec, so on aiohttp it could never cost as little per spec as that loop.
This transport does only what the client needs and costs about 17 µs a request
(see ``bench/``): one preformatted header block per request and one write, the
answer parsed by llhttp (through ``httptools``, the binding uvicorn uses; llhttp is
also what aiohttp's C parser is built on), connections kept alive and reused
first-in first-out.

What it does: ``http`` and ``https`` (the caller's verifying TLS context, SNI),
``Content-Length``, chunked and read-until-close answers, 1xx answers skipped,
a deadline per request (connecting included), and a cap on every answer: headers
above :data:`MAX_HEADER_BYTES` or a body above the caller's cap fail as they
arrive and the connection is dropped. It follows no redirect, keeps no cookies,
speaks to no proxy and asks for no compression.

Failures are the standard ones, for ``client.py`` to translate: ``TimeoutError``;
:class:`ConnectError` (no connection: nothing was sent); :class:`TlsError` (the
certificate or handshake failed); :class:`ConnectionLostError` (the connection
broke after the request may have been sent); :class:`AnswerTooLargeError`;
:class:`ProtocolError` (not HTTP).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import httptools

MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 128
CONNECT_TIMEOUT_S = 10.0


class TransportFailureError(Exception):
    """The root of this module's failures."""


class ConnectError(TransportFailureError):
    """No connection could be made: the request was not sent."""


class TlsError(TransportFailureError):
    """The TLS handshake or the server's certificate failed."""


class ConnectionLostError(TransportFailureError):
    """The connection broke after the request may have reached the server."""


class AnswerTooLargeError(TransportFailureError):
    """The answer declared or delivered more bytes than allowed."""


class ProtocolError(TransportFailureError):
    """The answer is not HTTP/1.x."""


class Headers(dict[str, str]):
    """An answer's headers: names lower-cased, looked up case-insensitively.

    A repeated header keeps its first value (as ``CIMultiDict.get`` does).
    """

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: status, headers and the whole body."""

    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the pool connects: scheme, host and port, and the ``Host`` header."""

    is_tls: bool
    host: str
    port: int
    host_header: bytes

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of an ``http`` or ``https`` URL.

        Raises:
            ValueError: another scheme, or no host.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        is_tls = parts.scheme == "https"
        port = parts.port or (443 if is_tls else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        default = port == (443 if is_tls else 80)
        header = shown if default else f"{shown}:{port}"
        return cls(is_tls, host, port, header.encode("idna"))


class HttpPool:
    """Keep-alive connections to one origin, at most ``limit`` at a time.

    Args:
        limit: connections open at most (requests beyond it wait their turn).
        timeout_s: the deadline of one request, connecting included.
        ssl_context: used for ``https`` origins.
        connect_timeout_s: the deadline for opening one connection.
    """

    def __init__(
        self,
        *,
        limit: int,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self._timeout_s = timeout_s
        self._connect_timeout_s = min(connect_timeout_s, timeout_s)
        self._ssl = ssl_context
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection; later requests fail."""
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()

    async def request(
        self,
        origin: Origin,
        head: bytes,
        body: bytes = b"",
        *,
        max_body_bytes: int,
    ) -> Answer:
        """Send ``head`` (request line and headers, without ``Host`` and
        ``Content-Length``, each line ending in CRLF) and ``body``; read the answer.

        Raises:
            TimeoutError, ConnectError, TlsError, ConnectionLostError,
            AnswerTooLargeError, ProtocolError: see the module's docstring.
        """
        if self._closed:
            raise ConnectionLostError("the connection pool is closed")
        message = b"%bHost: %b\r\nContent-Length: %d\r\n\r\n%b" % (
            head,
            origin.host_header,
            len(body),
            body,
        )
        async with self._slots:
            if self._closed:
                raise ConnectionLostError("the connection pool is closed")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._timeout_s
            conn = self._reuse(origin) or await self._connect(origin, deadline)
            try:
                answer = await conn.exchange(message, max_body_bytes, deadline)
            except BaseException:
                self._forget(conn)  # its answer may still come: never reuse it
                raise
            if conn.is_reusable:
                self._idle.setdefault(origin, deque()).append(conn)
            else:
                self._forget(conn)
            return answer

    def _reuse(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.popleft()
            if conn.is_reusable:
                return conn
            self._forget(conn)
        return None

    def _forget(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    async def _connect(self, origin: Origin, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        wait_s = min(self._connect_timeout_s, max(0.0, deadline - loop.time()))
        tls = self._ssl if origin.is_tls else None
        if origin.is_tls and tls is None:
            tls = ssl.create_default_context()
        try:
            async with asyncio.timeout(wait_s):
                _, conn = await loop.create_connection(
                    _Connection,
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError as exc:
            raise ConnectError(f"no connection within {wait_s:g} s") from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise TlsError(str(exc)) from exc
        except OSError as exc:
            raise ConnectError(str(exc)) from exc
        if self._closed:  # closed while this connection was being opened
            conn.close()
            raise ConnectionLostError("the connection pool is closed")
        self._open.add(conn)
        return conn


class _Connection(asyncio.Protocol):
    """One connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._is_lost = False
        self._max_body = 0
        self._reset()

    def _reset(self) -> None:
        self._headers = Headers()
        self._header_bytes = 0
        self._bytes_before_body = 0
        self._chunks: list[bytes] = []
        self._body_bytes = 0
        self._has_headers = False
        self._keeps_alive = False
        self._is_done = False
        self._failure: TransportFailureError | None = None

    @property
    def is_reusable(self) -> bool:
        """Idle, alive, and the last answer allows another request."""
        return (
            not self._is_lost
            and self._waiter is None
            and self._failure is None
            and self._is_done
            and self._keeps_alive
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- one exchange ----------------------------------------------------------

    async def exchange(
        self, message: bytes, max_body_bytes: int, deadline: float
    ) -> Answer:
        """Write ``message``; wait for its answer until ``deadline`` (loop time)."""
        if self._transport is None or self._is_lost:
            raise ConnectionLostError("the connection closed before the request")
        loop = asyncio.get_running_loop()
        self._reset()
        self._max_body = max_body_bytes
        waiter: asyncio.Future[Answer] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_at(deadline, self._time_out)
        try:
            self._transport.write(message)
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _time_out(self) -> None:
        self._finish(error=TimeoutError())
        self._abort()

    def _finish(
        self, answer: Answer | None = None, error: BaseException | None = None
    ) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        elif answer is not None:
            waiter.set_result(answer)

    def _fail(self, failure: TransportFailureError) -> None:
        self._failure = failure
        self._finish(error=failure)
        self._abort()

    def _abort(self) -> None:
        self._is_lost = True
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self._fail(ProtocolError("the server sent bytes nobody asked for"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            pass  # a callback recorded the failure
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server switched protocols unasked"))
            return
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"not an HTTP answer: {exc}"))
            return
        if self._failure is None and not self._has_headers:
            # llhttp holds a header line until it ends: count what came so far.
            self._bytes_before_body += len(data)
            if self._bytes_before_body > MAX_HEADER_BYTES:
                self._failure = _headers_too_large()
        if self._failure is not None:
            self._fail(self._failure)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._is_lost = True
        if (
            exc is None  # a reset may have cut the body short
            and self._has_headers
            and not self._is_done
            and self._failure is None
            and self._reads_until_close()
        ):
            self._complete()
            return
        reason = f": {exc}" if exc else ""
        self._finish(
            error=ConnectionLostError(f"the server closed the connection{reason}")
        )

    # -- httptools callbacks ---------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES or len(self._headers) >= MAX_HEADERS:
            self._failure = _headers_too_large()
            raise _StopParsingError
        key = name.decode("latin-1").lower()
        if key not in self._headers:
            dict.__setitem__(self._headers, key, value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self._has_headers = True
        self._keeps_alive = self._parser.should_keep_alive()
        declared = self._headers.get("content-length")
        if (
            declared is not None
            and declared.isdigit()
            and int(declared) > self._max_body
        ):
            self._too_large()

    def on_body(self, chunk: bytes) -> None:
        self._body_bytes += len(chunk)
        if self._body_bytes > self._max_body:
            self._too_large()
        self._chunks.append(chunk)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # noqa: PLR2004 - 1xx: the real answer follows
            self._reset()
            return
        self._complete()

    # -- helpers ---------------------------------------------------------------

    def _too_large(self) -> None:
        self._failure = AnswerTooLargeError(
            f"the answer is larger than the {self._max_body}-byte cap"
        )
        raise _StopParsingError

    def _reads_until_close(self) -> bool:
        headers = self._headers
        return "content-length" not in headers and "transfer-encoding" not in headers

    def _complete(self) -> None:
        if self._is_done:  # a second answer to one request: not HTTP as we speak it
            self._failure = ProtocolError("the server sent two answers to one request")
            raise _StopParsingError
        self._is_done = True
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        self._finish(Answer(self._parser.get_status_code(), self._headers, body))


def _headers_too_large() -> AnswerTooLargeError:
    return AnswerTooLargeError(
        f"the answer's headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} fields"
    )


class _StopParsingError(Exception):
    """Raised in a parser callback to stop at a failure recorded on the connection."""


def request_line(method: str, target: str) -> bytes:
    """``METHOD target HTTP/1.1`` and CRLF.

    Raises:
        ValueError: the method or target holds a space, CR, LF or NUL.
    """
    if _is_unsafe(method + target) or " " in method + target:
        raise ValueError("the method or target holds a space, line break or NUL")
    return f"{method} {target} HTTP/1.1\r\n".encode("latin-1")


def header_block(headers: Mapping[str, str]) -> bytes:
    """``Name: value`` lines, each ending in CRLF (build fixed ones once).

    Raises:
        ValueError: a name or value holds CR, LF or NUL (it would smuggle
            another header or request), or is not Latin-1.
    """
    for name, value in headers.items():
        if _is_unsafe(name) or _is_unsafe(value):
            raise ValueError(f"header {name!r} holds a line break or NUL")
    return "".join(f"{n}: {v}\r\n" for n, v in headers.items()).encode("latin-1")


def _is_unsafe(text: str) -> bool:
    return "\r" in text or "\n" in text or "\0" in text


__all__ = [
    "Answer",
    "AnswerTooLargeError",
    "ConnectError",
    "ConnectionLostError",
    "Headers",
    "HttpPool",
    "Origin",
    "ProtocolError",
    "TlsError",
    "TransportFailureError",
    "header_block",
    "request_line",
]
