"""``--metrics-port``: ``/metrics``, ``/healthz`` and ``/readyz`` on the run's own event loop.

- ``/metrics``: every series of :class:`provisioner.observe.metrics.Metrics` in the
  Prometheus text format (a worker first reads its queue's lag from Redis).
- ``/healthz``: ``200 ok`` while the process serves at all (liveness).
- ``/readyz``: ``200`` when every check passes, else ``503``; one plain line per
  check. The API check passes unless the last request got no answer at all (a
  timeout, a refused or reset connection); a worker also pings Redis.

The server is an ``aiohttp.web`` app on the same loop as the requests, so a
scrape reads the numbers as they are, with no thread and no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from provisioner.errors import ConfigError, QueueError
from provisioner.observe.metrics import ApiHealth, Meter, Metrics, QueueFigures
from provisioner.settings import MetricsSettings

#: A readiness check: ``None`` when it passes, else why not (one short phrase).
Check = Callable[[], Awaitable[str | None]]
Refresh = Callable[[], Awaitable[None]]
log = structlog.get_logger("provisioner.health")


class HealthServer:
    """The three endpoints over one :class:`Metrics`.

    Args:
        metrics: what ``/metrics`` shows.
        checks: what ``/readyz`` asks, by name, in order.
        refresh: awaited before each scrape (a worker's queue gauges).
        timeout_s: the longest a check or a refresh may take.
    """

    def __init__(
        self,
        *,
        metrics: Metrics,
        checks: Mapping[str, Check],
        refresh: Refresh | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self._metrics = metrics
        self._checks = checks
        self._refresh = refresh
        self._timeout_s = timeout_s

    def app(self) -> web.Application:
        """The aiohttp application serving the endpoints."""
        app = web.Application()
        app.router.add_get("/metrics", self.scrape)
        app.router.add_get("/healthz", self.alive)
        app.router.add_get("/readyz", self.ready)
        return app

    async def scrape(self, request: web.Request) -> web.Response:
        """``/metrics``: the series now; queue gauges keep their last values if Redis is slow."""
        if self._refresh is not None:
            try:
                await asyncio.wait_for(self._refresh(), self._timeout_s)
            except (QueueError, TimeoutError) as exc:
                log.warning("metrics.refresh_failed", error=str(exc) or "timed out")
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def alive(self, request: web.Request) -> web.Response:
        """``/healthz``: the event loop answers."""
        return web.Response(text="ok\n")

    async def ready(self, request: web.Request) -> web.Response:
        """``/readyz``: ``200`` when every check passes, ``503`` otherwise."""
        lines: list[str] = []
        is_ready = True
        for name, check in self._checks.items():
            problem = await self._ask(check)
            is_ready = is_ready and problem is None
            lines.append(f"{name}: {problem or 'ok'}")
        return web.Response(
            text="\n".join(lines) + "\n", status=200 if is_ready else 503
        )

    async def _ask(self, check: Check) -> str | None:
        try:
            return await asyncio.wait_for(check(), self._timeout_s)
        except TimeoutError:
            return f"no answer within {self._timeout_s:g} s"


def api_check(health: ApiHealth) -> Check:
    """The API answers: the last request got an HTTP answer (or none was sent yet)."""

    async def check() -> str | None:
        if health.failure is None:
            return None
        return f"the last request got no answer ({health.failure})"

    return check


def redis_check(ping: Callable[[], Awaitable[object]]) -> Check:
    """Redis answers a PING (``ping`` raises a ``QueueError`` when it does not)."""

    async def check() -> str | None:
        try:
            await ping()
        except QueueError as exc:
            return str(exc)
        return None

    return check


@contextlib.asynccontextmanager
async def serve(settings: MetricsSettings, server: HealthServer) -> AsyncIterator[int]:
    """Serve ``server`` until exit; yields the port it listens on.

    Raises:
        ConfigError: the address cannot be listened on (in use, not local).
    """
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port {settings.port}: cannot listen on {settings.host}: {exc.strerror}"
            ) from exc
        port = int(runner.addresses[0][1])
        log.info("metrics.serving", host=settings.host, port=port)
        yield port
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def exporter(
    settings: MetricsSettings,
    *,
    rate: Callable[[], float],
    ping: Callable[[], Awaitable[object]] | None = None,
    queue_status: Callable[[], Awaitable[QueueFigures]] | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[Meter]:
    """The meter to hand the pipeline, with the endpoints served meanwhile.

    Args:
        rate: the limiter's current rate, read at each scrape.
        metrics: the series to count in and serve (default: new ones).
        ping: a worker's Redis check for ``/readyz``.
        queue_status: a worker's queue snapshot, read at each scrape
            (lag, pending and dead letters).
    """
    counted = Metrics() if metrics is None else metrics
    counted.watch_rate(rate)
    checks: dict[str, Check] = {}
    refresh: Refresh | None = None
    if ping is not None:
        checks["redis"] = redis_check(ping)
    if queue_status is not None:
        status = queue_status

        async def refresh() -> None:
            counted.show_queue(await status())

    checks["api"] = api_check(counted.api)
    server = HealthServer(
        metrics=counted,
        checks=checks,
        refresh=refresh,
        timeout_s=settings.probe_timeout_s,
    )
    async with serve(settings, server):
        yield counted


__all__ = [
    "Check",
    "HealthServer",
    "api_check",
    "exporter",
    "redis_check",
    "serve",
]
