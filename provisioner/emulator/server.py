"""``Emulator``: the emulated API as an async context manager around one aiohttp server."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from provisioner.emulator.admin import Admin
from provisioner.emulator.app import Api, unknown_route
from provisioner.emulator.config import EmulatorConfig
from provisioner.emulator.faults import FaultInjector
from provisioner.emulator.ledger import Ledger
from provisioner.emulator.statefile import encode_state, read_state, write_state
from provisioner.emulator.stats import Stats
from provisioner.emulator.store import Store

SAVE_INTERVAL_S = 1.0
SHUTDOWN_TIMEOUT_S = 2.0


def _server_tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server's TLS context, or ``None`` for plain HTTP."""
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise ValueError(
            f"cannot load TLS certificate {cert} / key {key}: {exc}"
        ) from exc
    return context


def make_token() -> str:
    """A made-up personal access token: ``pt-emu-`` + 24 hex digits."""
    return "pt-emu-" + secrets.token_hex(12)


class Emulator:
    """A faithful, fault-injecting emulator of the Environments API on one local port.

    ``async with Emulator(EmulatorConfig(token="pt-…")) as emu:`` serves the API at
    ``emu.url`` until the block ends. ``emu.faults`` is the live ``FaultPlan``: a change
    takes effect on the next request. ``port=0`` picks a free port. With
    ``EmulatorConfig(tls_cert=..., tls_key=...)`` it serves HTTPS.

    Raises:
        ValueError: the TLS certificate or key cannot be loaded.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.token = self.config.token or make_token()
        self.faults = self.config.faults
        self.host = host
        self.port = port
        self._store = Store(unique_names=self.config.unique_names)
        self._ledger = Ledger(self.config.idempotency_ttl_s)
        self._stats = Stats()
        self._injector = FaultInjector(self.faults)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._saver: asyncio.Task[None] | None = None
        self._ssl = _server_tls(self.config.tls_cert, self.config.tls_key)

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT``, or ``https://`` when serving TLS."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "http" if self._ssl is None else "https"
        return f"{scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL clients use: ``http(s)://HOST:PORT/api/v1/cloud``."""
        return f"{self.root_url}/api/v1/cloud"

    async def __aenter__(self) -> Emulator:
        self._load()
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            self._application(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, ssl_context=self._ssl)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        if self.config.state_path is not None:
            self._saver = asyncio.create_task(self._autosave())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()  # ends latency and slow waits at once
        saver, self._saver = self._saver, None
        runner, self._runner = self._runner, None
        try:
            if saver is not None:
                await saver
        finally:
            if runner is not None:
                await runner.cleanup()
        if self.config.state_path is not None:
            await self._save()

    def _application(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        api = Api(
            config=self.config,
            token=self.token,
            store=self._store,
            ledger=self._ledger,
            injector=self._injector,
            stats=self._stats,
            stopping=self._stopping,
        )
        api.add_routes(app)
        Admin(api).add_routes(app)
        app.router.add_route("*", "/{tail:.*}", unknown_route)
        return app

    def stats(self) -> dict[str, Any]:
        """The counters, as ``GET /_emulator/stats`` shows them."""
        return self._stats.to_dict()

    def environments(self) -> list[dict[str, Any]]:
        """Every stored environment (archived too, of every token), oldest first."""
        envs: list[dict[str, Any]] = orjson.loads(
            orjson.dumps(self._store.all_environments())
        )
        return envs

    def creation_counts(self) -> dict[str, int]:
        """Name -> how many creates with that name committed (deletes do not lower it)."""
        return dict(self._store.creation_counts)

    def reset_stats(self) -> None:
        """Zero the counters and restart the fault plan's random sequence from its seed."""
        self._stats.reset()
        self._injector.reseed()

    def _load(self) -> None:
        path = self.config.state_path
        data = None if path is None else read_state(path)
        if data is not None:
            self._store.restore(data["store"])
            self._ledger.restore(data["idempotency"])
        self._store.dirty = self._ledger.dirty = False

    async def _autosave(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SAVE_INTERVAL_S):
                    await self._stopping.wait()
            self._ledger.sweep()
            if self._store.dirty or self._ledger.dirty:
                # a failed write is retried next time; the save on stop reports it
                with contextlib.suppress(OSError):
                    await self._save()

    async def _save(self) -> None:
        path = self.config.state_path
        assert path is not None  # noqa: S101  # only called when a state file is configured
        self._store.dirty = self._ledger.dirty = False
        data = encode_state(self._store.snapshot(), self._ledger.snapshot())
        try:
            await asyncio.to_thread(write_state, path, data)
        except OSError:
            self._store.dirty = True
            raise
