"""A canary token: every command, at debug level, under every fault; the token is in no output and no file.

Each run is a real child process; afterwards stdout, stderr and every file the run left
behind (result log, summary, lock file, set-aside logs) are searched for the token.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from provisioner.emulator import Emulator, FaultPlan
from tests.helpers import (
    child_env,
    eventually_sync,
    make_specs,
    redis_args,
    run_cli,
    spawn_cli,
    start_cli,
)

pytestmark = pytest.mark.slow

CANARY = "pt-canary-" + secrets.token_hex(16)

FAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "latency": {"latency_ms": 5, "jitter_ms": 10},
    "error_500": {"error_500": 0.4},
    "error_502": {"error_502": 0.4},
    "error_503": {"error_503": 0.4, "retry_after_s": 0},
    "rate_limited": {"rate_limit_per_s": 40, "rate_limit_burst": 1, "retry_after_s": 0},
    "rate_limited_no_body": {"rate_limit_per_s": 40, "rate_limit_body": False, "retry_after_s": None},
    "reset_before_commit": {"reset_before_commit": 0.4},
    "reset_after_commit": {"reset_after_commit": 0.4},
    "slow": {"slow": 0.3, "slow_s": 0.6},
}  # fmt: skip


def assert_no_canary(folder: Path, *outputs: str) -> None:
    """The token is in none of the outputs and in no file under ``folder``."""
    for text in outputs:
        assert CANARY not in text
    for path in folder.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def run_args(emulator: Emulator, jobs: Path, log_format: str) -> list[str]:
    return [
        "run", str(jobs), "--api-url", emulator.url, "--summary", "summary.json",
        "--log-level", "debug", "--log-format", log_format, "--rate", "0",
        "--backoff", "0", "--max-attempts", "8", "--timeout", "0.4",
    ]  # fmt: skip


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_token_never_leaks_under_any_fault(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path, fault: str
):
    """`run` at debug level against a faulty API: logs, records, summary and lock never hold the token."""
    emulator = make_live_emulator(
        token=CANARY, faults=FaultPlan(seed=7, **FAULTS[fault])
    )
    jobs = write_jobs(make_specs(25))
    for log_format in ("json", "console"):
        result = run_cli(
            *run_args(emulator, jobs, log_format),
            cwd=tmp_path,
            env=child_env(token=CANARY),
        )
        assert result.returncode in {0, 1}, result.stderr
        assert_no_canary(tmp_path, result.stdout, result.stderr)


def test_the_token_never_leaks_when_it_is_refused(
    make_live_emulator, write_jobs, tmp_path: Path
):
    """A 401 for the canary token stops the run; the token is still nowhere."""
    emulator = make_live_emulator(token="pt-the-real-one")
    result = run_cli(
        *run_args(emulator, write_jobs(make_specs(5)), "json"),
        cwd=tmp_path,
        env=child_env(token=CANARY),
    )
    assert result.returncode == 1
    assert "authentication failed" in result.stderr
    assert_no_canary(tmp_path, result.stdout, result.stderr)


def test_the_token_never_leaks_from_validate_sandbox_or_a_token_file(
    write_jobs, tmp_path: Path
):
    """`validate`, `run --sandbox` with records on stdout, and --token-file usage errors stay clean."""
    jobs = write_jobs(make_specs(5))
    token_file = tmp_path / "token"
    token_file.write_text(CANARY)
    outputs: list[str] = []
    for args in (
        ["validate", str(jobs)],
        ["run", str(jobs), "--sandbox", "--results", "-", "--log-level", "debug"],
        [
            "run",
            str(jobs),
            "--token-file",
            str(token_file),
            "--api-url",
            "http://192.0.2.1/",
        ],
        ["run", str(jobs), "--token", CANARY],
    ):
        result = run_cli(*args, cwd=tmp_path, env=child_env(token=""))
        outputs += [result.stdout, result.stderr]
    token_file.unlink()
    assert_no_canary(tmp_path, *outputs)


def test_the_token_is_not_in_the_process_list(
    make_live_emulator, write_jobs, tmp_path: Path
):
    """While a run works, its command line (what `ps` shows) does not hold the token."""
    emulator = make_live_emulator(token=CANARY, faults=FaultPlan(latency_ms=200))
    args = run_args(emulator, write_jobs(make_specs(10)), "json")
    proc = spawn_cli(
        *args, cwd=tmp_path, env=child_env(token=CANARY), stdout=None, stderr=None
    )
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        eventually_sync(
            lambda: b"provisioner" in cmdline.read_bytes(),
            timeout_s=5,
            interval_s=0.01,
        )
        assert CANARY.encode() not in cmdline.read_bytes()
    finally:
        assert proc.wait(60) == 0


def test_the_emulator_command_keeps_its_token_to_itself(tmp_path: Path):
    """`provisioner emulator` with the token in QODER_PAT prints its URL, never the token."""
    proc = spawn_cli("emulator", "--port", "0", env=child_env(token=CANARY))
    assert proc.stdout is not None
    first_line = proc.stdout.readline()
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert "listening on http://127.0.0.1:" in first_line
    assert_no_canary(tmp_path, first_line, out, err)


async def test_a_worker_never_stores_the_token_in_redis_or_its_log(
    redis, serve, tmp_path: Path, write_jobs
):
    """A server that quotes the Authorization header: the worker's results stream, log and output stay clean."""
    from aiohttp import web

    async def echo_auth(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        error = {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": f"bad {auth}"},
        }
        return web.json_response(error, status=400)

    server = await serve(echo_auth)
    queue_args = redis_args(redis)
    assert (
        run_cli(
            "enqueue",
            write_jobs(make_specs(5)),
            *queue_args,
            cwd=tmp_path,
            env=child_env(token=CANARY),
        ).returncode
        == 0
    )
    worker = await start_cli(
        "worker", *queue_args, "--api-url", server.url, "--exit-when-empty",
        "--results", str(tmp_path / "worker.jsonl"), "--log-level", "debug",
        env=child_env(token=CANARY),
    )  # fmt: skip
    out, err = await asyncio.wait_for(worker.communicate(), timeout=60)

    assert worker.returncode == 1
    stored = [orjson.dumps(r).decode() for r in await redis.results()]
    assert len(stored) == 5
    assert all("***" in text for text in stored)
    assert_no_canary(tmp_path, out.decode(), err.decode(), *stored)
