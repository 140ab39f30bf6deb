"""The API surface: routes under both prefixes, auth, the error envelope, request ids,
idempotency, and the per-request fault pipeline.

Pipeline of one API request: count in flight, draw the faults, reserve the idempotency
key, latency (+ jitter), rate limit (429), reset before commit, injected 500/502/503,
auth + handler (the answer is stored for replay), then reset after commit or a slow
answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
import struct
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from provisioner.emulator.config import EmulatorConfig
from provisioner.emulator.errors import ApiError, invalid
from provisioner.emulator.faults import Draw, FaultInjector
from provisioner.emulator.ledger import Ledger, Reservation
from provisioner.emulator.pagination import parse_list_query
from provisioner.emulator.stats import Stats
from provisioner.emulator.store import Store
from provisioner.emulator.validation import parse_body, validate_create, validate_update

API_PREFIXES = ("/api/v1/cloud", "/v1")
AUTH_MESSAGE = "Invalid API key or token."
FORBIDDEN_MESSAGE = "This token does not have permission to access this resource."
IDEMPOTENT_METHODS = frozenset({"POST", "PUT", "DELETE"})
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_BAD_GATEWAY = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Call:
    """What an operation needs from its request."""

    scope: str
    env_id: str
    raw: bytes
    query: Mapping[str, str]


Op = Callable[[Call], tuple[int, Any]]


def scope_key(token: str) -> str:
    """The state scope of ``token``: a hash, so state files never hold a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def envelope(error: ApiError, request_id: str) -> bytes:
    """The API's error body."""
    detail = {"type": error.error_type, "message": error.message}
    if error.param is not None:
        detail["param"] = error.param
    return orjson.dumps({"type": "error", "request_id": request_id, "error": detail})


def request_id(request: web.BaseRequest) -> str:
    """The caller's ``x-request-id``, else a new uuid4."""
    return request.headers.get("x-request-id") or str(uuid.uuid4())


def bearer(request: web.BaseRequest) -> str | None:
    """The bearer token of ``Authorization``, or None when it is missing or malformed."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def drop_connection(request: web.BaseRequest) -> web.Response:
    """Reset the TCP connection without answering; the returned response is never sent."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()
    return web.Response()


class Api:
    """The emulated Environments API, bound to its state, plan and counters."""

    def __init__(
        self,
        *,
        config: EmulatorConfig,
        token: str,
        store: Store,
        ledger: Ledger,
        injector: FaultInjector,
        stats: Stats,
        stopping: asyncio.Event,
    ) -> None:
        self.config = config
        self.store = store
        self.ledger = ledger
        self.injector = injector
        self.stats = stats
        self.stopping = stopping
        self.scope = scope_key(token)
        self._token = token.encode()
        self._forbidden = {t.encode() for t in config.forbidden_tokens}

    def add_routes(self, app: web.Application) -> None:
        """Register every API route under both prefixes."""
        collection = {"POST": self._create, "GET": self._list}
        item = {"GET": self._get, "DELETE": self._delete}
        item.update(dict.fromkeys(self.config.update_methods, self._update))
        for prefix in API_PREFIXES:
            self._resource(app, f"{prefix}/environments", collection)
            self._resource(app, f"{prefix}/environments/{{env_id}}", item)
            self._resource(
                app,
                f"{prefix}/environments/{{env_id}}/archive",
                {"POST": self._archive},
            )

    def _resource(self, app: web.Application, path: str, ops: Mapping[str, Op]) -> None:
        resource = app.router.add_resource(path)
        for method, op in ops.items():
            resource.add_route(method, self._route(op))
        resource.add_route("*", method_not_allowed(sorted(ops)))

    def _route(self, op: Op) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, op)

        return handle

    def authorise(self, request: web.BaseRequest) -> str:
        """The caller's state scope; 401 or 403 otherwise."""
        token = (bearer(request) or "").encode()
        if token and hmac.compare_digest(token, self._token):
            return self.scope
        if token in self._forbidden:
            raise ApiError(403, "permission_error", FORBIDDEN_MESSAGE)
        raise ApiError(401, "authentication_error", AUTH_MESSAGE)

    # -- the pipeline -------------------------------------------------------------

    async def _serve(self, request: web.Request, op: Op) -> web.StreamResponse:
        stats = self.stats
        stats.begin()
        try:
            response = await self._pipeline(request, op)
        finally:
            stats.in_flight -= 1
        transport = request.transport
        if transport is not None and not transport.is_closing():
            stats.by_status[response.status] += 1
        return response

    async def _pipeline(self, request: web.Request, op: Op) -> web.StreamResponse:
        draw = self.injector.draw()
        rid = request_id(request)
        reservation = self._reserve(request)
        try:
            early = await self._before(request, draw, rid)
            if early is not None:
                return early
            response = await self._answer(request, op, rid, reservation)
            if draw.slow:
                # Still being processed until it answers: the key stays reserved,
                # so a retry meanwhile gets the 409 "still being processed".
                self.stats.faults["slow"] += 1
                if not await self._sleep(self.injector.plan.slow_s):
                    return drop_connection(request)
        finally:
            if reservation is not None:
                reservation.release()
        if draw.reset_after:
            self.stats.faults["reset_after_commit"] += 1
            return drop_connection(request)
        return response

    async def _before(
        self, request: web.Request, draw: Draw, rid: str
    ) -> web.StreamResponse | None:
        """The gateway's faults, in order; None lets the request through."""
        faults = self.stats.faults
        if draw.delay_s > 0:
            faults["latency"] += 1
            if not await self._sleep(draw.delay_s):
                return drop_connection(request)
        if not self.injector.take_token(asyncio.get_running_loop().time()):
            faults["rate_limited"] += 1
            return self._rate_limited(rid)
        if draw.reset_before:
            faults["reset_before_commit"] += 1
            return drop_connection(request)
        if draw.error_status:
            faults[f"error_{draw.error_status}"] += 1
            return self._gateway_error(draw.error_status, rid)
        return None

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False when the server started stopping meanwhile."""
        try:
            async with asyncio.timeout(seconds):
                await self.stopping.wait()
        except TimeoutError:
            return True
        return False

    def _reserve(self, request: web.Request) -> Reservation | None:
        if not self.config.idempotency or request.method not in IDEMPOTENT_METHODS:
            return None
        headers = request.headers
        key = headers.get("Idempotency-Key") or headers.get("X-Idempotency-Key")
        if not key:
            return None
        token = bearer(request) or ""
        scope = self.scope if token.encode() == self._token else scope_key(token)
        return self.ledger.reserve((scope, request.method, api_path(request.path), key))

    async def _answer(
        self, request: web.Request, op: Op, rid: str, reservation: Reservation | None
    ) -> web.Response:
        """Auth, body, idempotency, then the operation; stores what it answers."""
        try:
            scope = self.authorise(request)
            raw = await self._read(request)
            stored = None if reservation is None else reservation.check(raw)
        except ApiError as exc:
            return self.json(exc.status, envelope(exc, rid), rid)
        if stored is not None:
            self.stats.replays += 1
            return self.json(stored.status, stored.body, rid, replayed=True)
        call = Call(scope, request.match_info.get("env_id", ""), raw, request.query)
        try:
            status, payload = op(call)
            body = orjson.dumps(payload)
        except ApiError as exc:
            status, body = exc.status, envelope(exc, rid)
        if reservation is not None:
            reservation.store(status, body)
        return self.json(status, body, rid)

    async def _read(self, request: web.Request) -> bytes:
        if not request.body_exists:
            return b""
        limit = self.config.max_body_bytes
        if (request.content_length or 0) > limit:
            raise invalid(
                None, f"Request body is larger than the limit of {limit} bytes"
            )
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise invalid(
                None, f"Request body is larger than the limit of {limit} bytes"
            ) from None

    # -- answers ------------------------------------------------------------------

    def json(
        self, status: int, body: bytes, rid: str, *, replayed: bool = False
    ) -> web.Response:
        """A JSON answer with ``request-id`` (a fresh 409 counts as a conflict)."""
        headers = {"Content-Type": "application/json", "request-id": rid}
        if self.config.rate_limit_headers:
            headers.update(self.injector.rate_headers())
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        elif status == 409:  # noqa: PLR2004  # HTTP Conflict
            self.stats.conflicts += 1
        return web.Response(status=status, body=body, headers=headers)

    def _rate_limited(self, rid: str) -> web.Response:
        headers = self.injector.rate_headers() if self.config.rate_limit_headers else {}
        retry_after = self.injector.retry_after()
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if not self.injector.plan.rate_limit_body:
            return web.Response(status=429, headers=headers)
        error = ApiError(429, "rate_limit_error", "Rate limit exceeded; retry later.")
        headers.update({"Content-Type": "application/json", "request-id": rid})
        return web.Response(status=429, body=envelope(error, rid), headers=headers)

    def _gateway_error(self, status: int, rid: str) -> web.Response:
        if status == 500:  # noqa: PLR2004  # the application's own 500
            error = ApiError(500, "api_error", "Internal server error")
            return self.json(500, envelope(error, rid), rid)
        if status == 502:  # noqa: PLR2004  # the gateway's HTML page
            return web.Response(status=502, body=_BAD_GATEWAY, content_type="text/html")
        headers = {}
        retry_after = self.injector.retry_after()
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        return web.Response(status=503, headers=headers)

    # -- operations ---------------------------------------------------------------

    def _create(self, call: Call) -> tuple[int, Any]:
        fields = validate_create(
            parse_body(call.raw),
            echo=self.config.config_echo,
            networking_types=self.config.networking_types,
        )
        env = self.store.create(call.scope, fields)
        self.stats.creations += 1
        return 201, env

    def _list(self, call: Call) -> tuple[int, Any]:
        query = parse_list_query(call.query, limit_over_max=self.config.limit_over_max)
        return 200, self.store.list_page(call.scope, query)

    def _get(self, call: Call) -> tuple[int, Any]:
        return 200, self.store.get(call.scope, call.env_id)

    def _update(self, call: Call) -> tuple[int, Any]:
        self.store.get(call.scope, call.env_id)  # 404 before 400
        patch = validate_update(
            parse_body(call.raw),
            echo=self.config.config_echo,
            networking_types=self.config.networking_types,
        )
        return 200, self.store.update(call.scope, call.env_id, patch)

    def _archive(self, call: Call) -> tuple[int, Any]:
        return 200, self.store.archive(call.scope, call.env_id)

    def _delete(self, call: Call) -> tuple[int, Any]:
        return 200, self.store.delete(call.scope, call.env_id)


def api_path(path: str) -> str:
    """``path`` without its API prefix, so both prefixes share idempotency keys."""
    for prefix in API_PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


def method_not_allowed(allowed: list[str]) -> Handler:
    """A handler answering 405 in the error envelope."""

    async def handle(request: web.Request) -> web.StreamResponse:
        rid = request_id(request)
        message = (
            f"Method {request.method} is not allowed here; use {', '.join(allowed)}"
        )
        error = ApiError(405, "invalid_request_error", message)
        headers = {"request-id": rid, "Allow": ", ".join(allowed)}
        return web.json_response(body=envelope(error, rid), status=405, headers=headers)

    return handle


async def unknown_route(request: web.Request) -> web.StreamResponse:
    """404 in the error envelope for a path the API does not have."""
    rid = request_id(request)
    error = ApiError(
        404, "not_found_error", f"Unknown route: {request.method} {request.path}"
    )
    return web.json_response(
        body=envelope(error, rid), status=404, headers={"request-id": rid}
    )
