"""``--sandbox``: the same run against an in-process emulator, with a fault plan.

The only module outside the emulator that imports it (besides completion, which
reads its flags), and only when ``--sandbox`` is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import structlog

from provisioner.errors import ConfigError
from provisioner.settings import ApiSettings

#: What records name as their API in a sandbox run.
SANDBOX_TARGET = "sandbox"
log = structlog.get_logger("provisioner.engine")


@contextlib.asynccontextmanager
async def sandbox_api(
    api: ApiSettings, *, faults: dict[str, Any] | None
) -> AsyncIterator[ApiSettings]:
    """The API to talk to: ``api`` itself, or (with ``faults``) an in-process emulator."""
    if faults is None:
        yield api
        return
    from provisioner.emulator import Emulator, EmulatorConfig, FaultPlan  # noqa: PLC0415 - only --sandbox needs it

    config = EmulatorConfig(token=api.token.reveal(), faults=FaultPlan(**faults))
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


__all__ = ["SANDBOX_TARGET", "sandbox_api", "sandbox_faults"]
