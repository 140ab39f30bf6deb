"""What every driver needs to provision: the API (real or a sandbox), a session, a pipeline.

``run`` and ``worker`` both open a :class:`Pipeline` here, so they talk to the
API in exactly the same way: one session sized to the concurrency, the same
retry policy, budget, rate limiter and stop controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from provisioner.client import ApiClient, open_session
from provisioner.errors import ConfigError
from provisioner.meter import NO_METER, Meter
from provisioner.outcome import OnConflict
from provisioner.pipeline import Pipeline
from provisioner.ratelimit import RateLimiter
from provisioner.retry import RetryBudget, RetryPolicy
from provisioner.settings import ApiSettings
from provisioner.stopping import StopController

SANDBOX_TARGET = "sandbox"
log = structlog.get_logger("provisioner.engine")


@dataclass(frozen=True, slots=True)
class Engine:
    """How to reach the API and how hard to try.

    Attributes:
        api: the API's URL, token, timeout and TLS settings.
        policy: the retry policy.
        concurrency: requests in flight at most (sizes the connection pool).
        on_conflict: a name that exists already is ``exists`` or ``failed``.
        sandbox: the fault plan of an in-process emulator to run against, if any.
        update: environments that exist with another description, config or
            metadata are updated in place (``run --update``).
    """

    api: ApiSettings
    policy: RetryPolicy
    concurrency: int
    on_conflict: OnConflict = "exists"
    sandbox: dict[str, Any] | None = None
    update: bool = False

    @property
    def target(self) -> str:
        """What records name as their API: the base URL, or ``sandbox``."""
        return SANDBOX_TARGET if self.sandbox is not None else self.api.base_url


@contextlib.asynccontextmanager
async def open_pipeline(
    engine: Engine,
    *,
    limiter: RateLimiter,
    stop: StopController,
    replay_is_ours: bool,
    meter: Meter = NO_METER,
) -> AsyncIterator[Pipeline]:
    """A pipeline on a fresh session, closed (with the sandbox, if any) on exit."""
    async with (
        _api_target(engine.api, sandbox=engine.sandbox) as api,
        open_session(
            concurrency=engine.concurrency, timeout_s=api.timeout_s, ca_file=api.ca_file
        ) as session,
    ):
        client = ApiClient(session, settings=api)
        if client.proxy is not None:
            log.info(
                "proxy.selected", proxy=client.proxy.url, source=client.proxy.source
            )
        yield Pipeline(
            client=client,
            policy=engine.policy,
            budget=RetryBudget(),
            limiter=limiter,
            stop=stop,
            target=engine.target,
            on_conflict=engine.on_conflict,
            replay_is_ours=replay_is_ours,
            update=engine.update,
            meter=meter,
        )


@contextlib.asynccontextmanager
async def _api_target(
    api: ApiSettings, *, sandbox: dict[str, Any] | None
) -> AsyncIterator[ApiSettings]:
    """The API to talk to: the configured one, or an in-process emulator."""
    if sandbox is None:
        yield api
        return
    from provisioner.emulator import Emulator, EmulatorConfig, FaultPlan  # noqa: PLC0415 - only --sandbox needs it

    config = EmulatorConfig(token=api.token.reveal(), faults=FaultPlan(**sandbox))
    async with Emulator(config) as emulator:
        log.info("sandbox.started", api_url=emulator.url)
        yield ApiSettings(
            token=api.token, base_url=emulator.url, timeout_s=api.timeout_s
        )


def sandbox_faults(text: str | None) -> dict[str, Any]:
    """``error_503=0.05,seed=7`` -> checked fault-plan fields for the sandbox.

    Raises:
        ConfigError: an unknown field or an impossible value.
    """
    from provisioner.emulator import FaultPlan  # noqa: PLC0415 - only --sandbox needs it

    fields: dict[str, Any] = {}
    for item in filter(None, (text or "").split(",")):
        name, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--sandbox-faults: expected name=value, got {item!r}")
        try:
            fields[name.strip()] = orjson.loads(raw.strip())
        except orjson.JSONDecodeError:
            fields[name.strip()] = raw.strip()
    try:
        return FaultPlan.check(fields)
    except ValueError as exc:
        raise ConfigError(f"--sandbox-faults: {exc}") from exc


@contextlib.contextmanager
def signals_stop(stop: StopController) -> Iterator[None]:
    """First SIGINT/SIGTERM drains; a second one cancels what is in flight."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.interrupt)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


__all__ = [
    "SANDBOX_TARGET",
    "Engine",
    "open_pipeline",
    "sandbox_faults",
    "signals_stop",
]
