"""Admin routes under ``/_emulator``: stats, the live fault plan, reset, session references.

They need the same bearer token as the API, answer errors in the same envelope, and are
never faulted or counted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from provisioner.emulator.app import Api, envelope, request_id
from provisioner.emulator.errors import ApiError, invalid
from provisioner.emulator.faults import FaultPlan, FaultPlanError
from provisioner.emulator.store import check_reference_count
from provisioner.emulator.validation import parse_body

ADMIN_PREFIX = "/_emulator"

AdminOp = Callable[[web.Request], Awaitable[Any]]


class Admin:
    """The admin handlers, bound to the same state as the ``Api``."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.plan = api.injector.plan

    def add_routes(self, app: web.Application) -> None:
        """Register the admin routes."""
        add = app.router.add_route
        add("GET", f"{ADMIN_PREFIX}/stats", self._wrap(self._stats))
        add("GET", f"{ADMIN_PREFIX}/faults", self._wrap(self._faults))
        add("PUT", f"{ADMIN_PREFIX}/faults", self._wrap(self._replace_faults))
        add("PATCH", f"{ADMIN_PREFIX}/faults", self._wrap(self._merge_faults))
        add("POST", f"{ADMIN_PREFIX}/reset", self._wrap(self._reset))
        add(
            "POST",
            f"{ADMIN_PREFIX}/environments/{{env_id}}/references",
            self._wrap(self._references),
        )

    def _wrap(self, op: AdminOp) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            rid = request_id(request)
            headers = {"Content-Type": "application/json", "request-id": rid}
            try:
                self.api.authorise(request)
                body = orjson.dumps(await op(request))
            except ApiError as exc:
                return web.Response(
                    status=exc.status, body=envelope(exc, rid), headers=headers
                )
            return web.Response(status=200, body=body, headers=headers)

        return handle

    async def _stats(self, request: web.Request) -> Any:
        return self.api.stats.to_dict()

    async def _faults(self, request: web.Request) -> Any:
        return self.plan.to_dict()

    async def _replace_faults(self, request: web.Request) -> Any:
        self.plan.replace_with(await _checked_plan(request))
        self.api.injector.reseed()
        return self.plan.to_dict()

    async def _merge_faults(self, request: web.Request) -> Any:
        fields = await _checked_plan(request)
        self.plan.update(fields)
        if "seed" in fields:
            self.api.injector.reseed()
        return self.plan.to_dict()

    async def _reset(self, request: web.Request) -> Any:
        value = request.query.get("state", "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise invalid("state", f"expected true or false, got {value!r}")
        self.api.stats.reset()
        self.api.injector.reseed()
        with_state = value in ("true", "1")
        if with_state:
            self.api.store.clear()
            self.api.ledger.clear()
        return {"reset": True, "state": with_state}

    async def _references(self, request: web.Request) -> Any:
        body = parse_body(await request.read())
        if "count" not in body:
            raise invalid("count", "field required")
        count = check_reference_count(body["count"])
        env_id = request.match_info["env_id"]
        self.api.store.set_references(self.api.scope, env_id, count)
        return {"id": env_id, "references": count}


async def _checked_plan(request: web.Request) -> dict[str, Any]:
    body = parse_body(await request.read())
    try:
        return FaultPlan.check(body)
    except FaultPlanError as exc:
        raise invalid(exc.field, exc.reason) from None
