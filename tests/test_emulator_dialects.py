"""The emulator's dialect switches: one generation's update verb, spellings and rate headers."""

from __future__ import annotations

import aiohttp
import pytest

from provisioner.emulator import EmulatorConfig, FaultPlan
from provisioner.emulator.cli import build_parser, config_from
from tests.helpers import CLOUD, Caller, MakeEmulator, assert_error, create


async def test_a_put_only_emulator_refuses_a_post_update(
    make_emulator: MakeEmulator,
) -> None:
    """With update_methods=("PUT",) a POST update is 405 and a PUT update works."""
    emulator = await make_emulator(update_methods=("PUT",))
    async with aiohttp.ClientSession() as session:
        api = Caller(session, emulator)
        env = await create(api, "team-a")
        post = await api(
            "POST", f"/environments/{env['id']}", json={"description": "x"}
        )
        assert post.status == 405
        assert post.headers["Allow"] == "DELETE, GET, PUT"
        put = await api("PUT", f"/environments/{env['id']}", json={"description": "x"})
        assert put.status == 200
        assert put.json()["description"] == "x"


async def test_a_spelling_left_out_is_refused_at_networking_type(
    make_emulator: MakeEmulator,
) -> None:
    """networking_types narrows the spellings: another is 400 at config.networking.type."""
    emulator = await make_emulator(networking_types=("limited",))
    async with aiohttp.ClientSession() as session:
        api = Caller(session, emulator)
        body = {
            "name": "team-a",
            "config": {
                "type": "cloud",
                "networking": {"type": "allowlist", "allowed_hosts": ["a.example"]},
            },
        }
        answer = await api("POST", "/environments", json=body)
        error = assert_error(
            answer, 400, "invalid_request_error", "config.networking.type"
        )
        assert "must be one of limited" in error["message"]
        await create(
            api, "team-b", config={**CLOUD, "networking": {"type": "unrestricted"}}
        )
        await create(api, "team-c", config={**CLOUD, "networking": {"type": "limited"}})


async def test_rate_limit_headers_come_with_the_bucket(
    make_emulator: MakeEmulator,
) -> None:
    """With rate_limit_headers and a rate limit every answer carries X-RateLimit-*."""
    faults = FaultPlan(rate_limit_per_s=4, rate_limit_burst=3)
    emulator = await make_emulator(rate_limit_headers=True, faults=faults)
    async with aiohttp.ClientSession() as session:
        answer = await Caller(session, emulator)("GET", "/environments")
    assert answer.status == 200
    assert answer.headers["X-RateLimit-Limit"] == "4"
    assert answer.headers["X-RateLimit-Remaining"] == "2"
    assert answer.headers["X-RateLimit-Reset"] == "1"


def test_the_dialect_flags_build_the_config() -> None:
    """--update-method, --networking-type and --rate-limit-headers set the switches."""
    args = build_parser().parse_args(
        [
            "--update-method",
            "put",
            "--networking-type",
            "limited",
            "--rate-limit-headers",
        ]
    )
    config = config_from(args)
    assert config.update_methods == ("PUT",)
    assert config.networking_types == ("limited",)
    assert config.rate_limit_headers is True


def test_an_unknown_dialect_is_refused() -> None:
    """An update verb or a spelling no generation has is refused at construction."""
    with pytest.raises(ValueError, match="update_methods"):
        EmulatorConfig(update_methods=("PATCH",))
    with pytest.raises(ValueError, match="networking_types"):
        EmulatorConfig(networking_types=("open",))
