"""``provisioner emulator`` / ``python -m provisioner.emulator``: flags, output, signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from provisioner.emulator import Emulator, EmulatorConfig, FaultPlan
from provisioner.emulator.cli import build_parser, config_from, main

GIVEN = "pt-cli-secret"
READY = re.compile(
    r"provisioner emulator listening on (http://127\.0\.0\.1:(\d+)/api/v1/cloud)( token=(\S+))?\n"
)


def cli_env(token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "QODER_PAT"}
    if token is not None:
        env["QODER_PAT"] = token
    return env


async def start(*args: str, token: str | None = GIVEN) -> asyncio.subprocess.Process:
    """The emulator as a child process on a free port."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioner.emulator", "--port", "0", *args,
        env=cli_env(token),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def ready_line(proc: asyncio.subprocess.Process) -> re.Match[str]:
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
    match = READY.fullmatch(line)
    assert match, line
    return match


async def stop(
    proc: asyncio.subprocess.Process, signum: int = signal.SIGTERM
) -> tuple[int, str, str]:
    proc.send_signal(signum)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_port_0_prints_the_url_serves_and_stops_on_sigterm(session):
    """The ready line shows the real port; the API answers; SIGTERM exits 0."""
    proc = await start()
    match = await ready_line(proc)
    assert match.group(3) is None  # a given token is never printed
    headers = {"Authorization": "Bearer pt-cli-secret"}
    async with session.post(
        match.group(1) + "/environments",
        json={"name": "a", "config": {"type": "cloud"}},
        headers=headers,
    ) as response:
        assert response.status == 201
    code, out, err = await stop(proc)
    assert code == 0
    assert out == ""
    assert "pt-cli-secret" not in err


async def test_a_made_up_token_is_printed_and_works(session):
    """Without --token or $QODER_PAT a token is made up, printed, and accepted."""
    proc = await start(token=None)
    match = await ready_line(proc)
    token = match.group(4)
    assert re.fullmatch(r"pt-emu-[0-9a-f]{24}", token)
    async with session.get(
        match.group(1) + "/environments", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 200
    code, _, _ = await stop(proc, signal.SIGINT)
    assert code == 0


async def test_the_token_flag_wins_over_the_environment(session):
    """``--token`` is the accepted token even when $QODER_PAT is set."""
    proc = await start("--token", "pt-from-flag")
    match = await ready_line(proc)
    url = match.group(2)
    for token, status in (("pt-from-flag", 200), ("pt-cli-secret", 401)):
        async with session.get(
            f"http://127.0.0.1:{url}/v1/environments",
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            assert r.status == status
    assert (await stop(proc))[0] == 0


async def test_fault_flags_set_the_live_plan(session):
    """Fault flags show up in the admin plan and act on API requests."""
    proc = await start(
        "--error-503",
        "1",
        "--retry-after",
        "2.5",
        "--seed",
        "3",
        "--rate-limit-no-body",
    )
    match = await ready_line(proc)
    root = match.group(1).removesuffix("/api/v1/cloud")
    headers = {"Authorization": "Bearer pt-cli-secret"}
    async with session.get(root + "/_emulator/faults", headers=headers) as r:
        plan = await r.json()
    assert plan == {
        **FaultPlan().to_dict(),
        "error_503": 1.0,
        "retry_after_s": 2.5,
        "seed": 3,
        "rate_limit_body": False,
    }
    async with session.get(match.group(1) + "/environments", headers=headers) as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "3"
    assert (await stop(proc))[0] == 0


async def test_sigint_saves_the_state_file(session, tmp_path):
    """On SIGINT the emulator exits 0 with its state written to --state."""
    path = tmp_path / "state.json"
    proc = await start("--state", str(path))
    match = await ready_line(proc)
    headers = {"Authorization": "Bearer pt-cli-secret"}
    async with session.post(
        match.group(1) + "/environments",
        json={"name": "kept", "config": {"type": "cloud"}},
        headers=headers,
    ) as r:
        env = await r.json()
    assert (await stop(proc, signal.SIGINT))[0] == 0
    assert env["id"].encode() in path.read_bytes()


async def test_a_port_in_use_exits_1_with_one_line():
    """When the port is taken the emulator prints one line on stderr and exits 1."""
    async with Emulator(EmulatorConfig(token="pt-x")) as taken:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "provisioner.emulator", "--port", str(taken.port),
            env=cli_env("pt-x"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 1
    assert out == b""
    assert len(err.decode().splitlines()) == 1


async def test_a_bad_flag_exits_2_as_a_subprocess():
    """A bad value exits 2 with one line on stderr, before listening."""
    proc = await start("--error-500", "2")
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 2
    assert out == b""
    assert err.decode().splitlines() == [
        "provisioner emulator: error: argument --error-500: expected a probability from 0 to 1, got '2'"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--error-500", "1.5"],
        ["--slow", "-1"],
        ["--latency-ms", "-5"],
        ["--jitter-ms", "x"],
        ["--port", "-1"],
        ["--port", "http"],
        ["--rate-limit-burst", "0"],
        ["--limit-over-max", "maybe"],
        ["--config-echo", "normalised"],
        ["--max-body-bytes", "0"],
        ["--idempotency-ttl", "0"],
        ["--seed", "1.5"],
        ["--no-such-flag"],
        ["--token", "  "],
        ["--token-file", "/nonexistent/token"],
        ["--tls-cert", "c.pem"],
        ["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"],
    ],
)
def test_bad_flags_exit_2_with_one_line(capsys, argv):
    """Each bad value returns 2 and prints exactly one error line."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("provisioner emulator: error: ")


def test_help_lists_every_flag(capsys):
    """``--help`` exits 0 under the name ``provisioner emulator`` and shows every flag."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: provisioner emulator")
    flags = [
        "--host", "--port", "--token", "--forbidden-token", "--no-unique-names",
        "--no-idempotency", "--idempotency-ttl", "--limit-over-max", "--max-body-bytes",
        "--config-echo", "--state", "--tls-cert", "--tls-key", "--token-file", "--seed", "--latency-ms", "--jitter-ms", "--error-500", "--error-502",
        "--error-503", "--rate-limit", "--rate-limit-burst", "--rate-limit-no-body",
        "--retry-after", "--no-retry-after", "--reset-before-commit", "--reset-after-commit",
        "--slow", "--slow-s",
    ]  # fmt: skip
    for flag in flags:
        assert flag in out


def test_help_never_shows_the_token(capsys, monkeypatch):
    """$QODER_PAT does not appear in ``--help``."""
    monkeypatch.setenv("QODER_PAT", "pt-help-secret")
    main(["--help"])
    assert "pt-help-secret" not in capsys.readouterr().out


def test_every_flag_maps_onto_the_config(monkeypatch):
    """Each flag sets its EmulatorConfig or FaultPlan field."""
    monkeypatch.delenv("QODER_PAT", raising=False)
    argv = [
        "--token", "pt-t", "--forbidden-token", "pt-a", "--forbidden-token", "pt-b",
        "--no-unique-names", "--no-idempotency", "--idempotency-ttl", "60",
        "--limit-over-max", "cap", "--max-body-bytes", "1000", "--state", "s.json",
        "--config-echo", "normalized",
        "--seed", "5", "--latency-ms", "1", "--jitter-ms", "2", "--error-500", "0.1",
        "--error-502", "0.2", "--error-503", "0.3", "--rate-limit", "10",
        "--rate-limit-burst", "4", "--rate-limit-no-body", "--no-retry-after",
        "--reset-before-commit", "0.4", "--reset-after-commit", "0.5", "--slow", "0.6",
        "--slow-s", "7", "--tls-cert", "c.pem", "--tls-key", "k.pem",
    ]  # fmt: skip
    config = config_from(build_parser().parse_args(argv))
    assert config == EmulatorConfig(
        token="pt-t",
        forbidden_tokens=frozenset({"pt-a", "pt-b"}),
        unique_names=False,
        idempotency=False,
        idempotency_ttl_s=60.0,
        limit_over_max="cap",
        max_body_bytes=1000,
        config_echo="normalized",
        state_path="s.json",
        faults=FaultPlan(
            seed=5,
            latency_ms=1,
            jitter_ms=2,
            error_500=0.1,
            error_502=0.2,
            error_503=0.3,
            rate_limit_per_s=10,
            rate_limit_burst=4,
            rate_limit_body=False,
            retry_after_s=None,
            reset_before_commit=0.4,
            reset_after_commit=0.5,
            slow=0.6,
            slow_s=7,
        ),
        tls_cert="c.pem",
        tls_key="k.pem",
    )


def test_the_defaults_match_the_dataclasses(monkeypatch):
    """With no flags and no $QODER_PAT the config is ``EmulatorConfig()``."""
    monkeypatch.delenv("QODER_PAT", raising=False)
    assert config_from(build_parser().parse_args([])) == EmulatorConfig()
    monkeypatch.setenv("QODER_PAT", "pt-env")
    assert config_from(build_parser().parse_args([])).token == "pt-env"


def test_a_token_file_sets_the_accepted_token(monkeypatch, tmp_path):
    """``--token-file`` is read (stripped) and wins over $QODER_PAT; ``--token`` wins over both."""
    monkeypatch.setenv("QODER_PAT", "pt-env")
    path = tmp_path / "token"
    path.write_text("pt-from-file\n")
    parse = build_parser().parse_args
    assert config_from(parse(["--token-file", str(path)])).token == "pt-from-file"
    both = ["--token-file", str(path), "--token", "pt-flag"]
    assert config_from(parse(both)).token == "pt-flag"


def test_an_empty_token_file_exits_2_with_one_line(capsys, tmp_path):
    """An empty --token-file is refused before listening."""
    path = tmp_path / "token"
    path.write_text("  \n")
    assert main(["--token-file", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"provisioner emulator: error: --token-file {path} is empty"
    ]


def test_help_prefers_the_environment_or_a_file_for_the_token(capsys):
    """``--help`` steers users away from a token on the command line."""
    main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "prefer $QODER_PAT or --token-file" in out


async def test_a_non_loopback_address_prints_a_warning(session):
    """Bound to 0.0.0.0 the emulator warns on stderr and still serves."""
    proc = await start("--host", "0.0.0.0")  # noqa: S104 - the point of the test
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
    port = re.fullmatch(r".* listening on http://0\.0\.0\.0:(\d+)/api/v1/cloud\n", line)
    assert port, line
    async with session.get(
        f"http://127.0.0.1:{port.group(1)}/api/v1/cloud/environments",
        headers={"Authorization": f"Bearer {GIVEN}"},
    ) as r:
        assert r.status == 200
    code, _, err = await stop(proc)
    assert code == 0
    assert "warning: listening on 0.0.0.0, not a loopback address" in err


async def test_a_loopback_address_prints_no_warning():
    """The default 127.0.0.1 binding says nothing on stderr."""
    proc = await start()
    await ready_line(proc)
    code, _, err = await stop(proc)
    assert code == 0
    assert "warning" not in err
