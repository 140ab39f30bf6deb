"""Never twice, never lost: kills, signals and secrets, with the CLI as a real subprocess."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import orjson
import pytest

from provisioner.emulator import Emulator
from tests.helpers import (
    TEST_TOKEN,
    child_env,
    eventually,
    make_specs,
    records,
    start_cli,
)

pytestmark = pytest.mark.slow


async def start_run(
    emulator: Emulator, jobs: Path, results: Path, *extra: str, token: str = TEST_TOKEN
) -> asyncio.subprocess.Process:
    """``provisioner run`` as a child process, the way a user or a cron job starts it."""
    return await start_cli(
        "run", jobs, "--api-url", emulator.url, "--results", results,
        "--backoff", "0", "--rate", "0", *extra,
        env=child_env(token=token),
    )  # fmt: skip


async def wait_for_records(
    results: Path, count: int, proc: asyncio.subprocess.Process
) -> None:
    """Poll the result log until it holds ``count`` records (or the run ends)."""
    await eventually(
        lambda: (
            proc.returncode is not None or len(records(results, partial=True)) >= count
        ),
        timeout_s=30,
        interval_s=0.01,
        message=f"the log never reached {count} records",
    )


def assert_exactly_once(emulator: Emulator, results: Path, total: int) -> None:
    """Each name created once on the server; one final record per spec, all successes."""
    counts = emulator.creation_counts()
    assert len(counts) == total
    assert set(counts.values()) == {1}
    log = records(results, partial=True)
    assert Counter(r["name"] for r in log).most_common(1)[0][1] == 1
    assert len(log) == total
    assert {r["status"] for r in log} <= {"created", "exists"}
    server_ids = {env["name"]: env["id"] for env in emulator.environments()}
    assert {r["name"]: r["id"] for r in log} == server_ids


async def test_sigkill_at_several_points_then_resume_creates_each_once(
    emulator, write_jobs, tmp_path
):
    """A run killed with SIGKILL three times and resumed creates every environment exactly once."""
    total = 1500
    emulator.faults.seed = 11
    emulator.faults.latency_ms = 2
    emulator.faults.error_503 = 0.03
    emulator.faults.reset_after_commit = 0.03
    emulator.faults.retry_after_s = 0
    jobs = write_jobs(make_specs(total))
    results = tmp_path / "results.jsonl"
    for kill_at in (100, 600, 1100):
        proc = await start_run(
            emulator, jobs, results, "--concurrency", "16", "--max-attempts", "20"
        )
        await wait_for_records(results, kill_at, proc)
        proc.kill()
        await proc.communicate()
    proc = await start_run(
        emulator, jobs, results, "--concurrency", "16", "--max-attempts", "20"
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert_exactly_once(emulator, results, total)
    created_here = {
        r["name"] for r in records(results, partial=True) if r["status"] == "created"
    }
    assert len(created_here) == total  # nothing existed before the job: all ours


async def test_sigterm_drains_in_flight_requests_and_exits_130(
    emulator, write_jobs, tmp_path
):
    """SIGTERM lets requests in flight finish, records them, prints the summary, exits 130."""
    emulator.faults.latency_ms = 300
    jobs = write_jobs(make_specs(100))
    results = tmp_path / "results.jsonl"
    proc = await start_run(emulator, jobs, results, "--concurrency", "4")
    await wait_for_records(results, 4, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = await proc.communicate()
    assert proc.returncode == 130
    text = err.decode()
    assert "stopped (interrupted)" in text
    assert "run the same command again to resume" in text
    log = records(results, partial=True)
    # Everything the server created was recorded: the drain lost no answer.
    assert {r["name"] for r in log} == set(emulator.creation_counts())
    assert 4 <= len(log) < 100
    emulator.faults.latency_ms = 0
    proc = await start_run(emulator, jobs, results, "--concurrency", "4")
    await proc.communicate()
    assert proc.returncode == 0
    assert_exactly_once(emulator, results, 100)


async def test_a_second_signal_exits_at_once_with_a_consistent_log(
    emulator, write_jobs, tmp_path
):
    """A second SIGINT cancels slow requests now; the log stays parseable and resumable."""
    emulator.faults.latency_ms = 20
    jobs = write_jobs(make_specs(40))
    results = tmp_path / "results.jsonl"
    proc = await start_run(
        emulator, jobs, results, "--concurrency", "4", "--grace", "60"
    )
    await wait_for_records(results, 4, proc)
    emulator.faults.latency_ms = 3_000
    # Four requests sent since then: each of the four workers waits on a slow one.
    slow_from = emulator.stats()["requests"]
    await eventually(lambda: emulator.stats()["requests"] >= slow_from + 4)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    await asyncio.wait_for(proc.stderr.readuntil(b"run.draining"), timeout=10)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 130
    records(results, partial=True)  # parses
    emulator.faults.latency_ms = 0
    # The abandoned requests still hold their keys on the server until they end.
    await eventually(lambda: emulator.stats()["in_flight"] == 0)
    proc = await start_run(emulator, jobs, results)
    await proc.communicate()
    assert proc.returncode == 0
    assert_exactly_once(emulator, results, 40)


async def test_the_token_never_appears_in_output_results_or_ps(
    emulator, write_jobs, tmp_path
):
    """The token is in no log line, result, error message, summary or process listing."""
    secret = "pt-s3cr3t-" + "z" * 24
    emulator.faults.latency_ms = 50
    jobs = write_jobs(make_specs(20))
    results = tmp_path / "results.jsonl"
    summary = tmp_path / "summary.json"
    proc = await start_run(
        emulator,
        jobs,
        results,
        "--log-level",
        "debug",
        "--summary",
        str(summary),
        token=secret,
    )
    ps = await asyncio.create_subprocess_exec(
        "ps", "-eww", "-o", "args", stdout=asyncio.subprocess.PIPE
    )
    listing, _ = await ps.communicate()
    out, err = await proc.communicate()
    assert proc.returncode == 1  # the emulator expects another token: every spec fails
    assert b"authentication failed" in err
    for blob in (listing, out, err, results.read_bytes(), summary.read_bytes()):
        assert secret.encode() not in blob


async def test_stdin_jobs_are_read_as_jsonl(emulator, tmp_path):
    """`-` reads JSON Lines from standard input."""
    results = tmp_path / "results.jsonl"
    proc = await start_cli(
        "run", "-", "--api-url", emulator.url, "--results", results,
        stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    lines = b"".join(orjson.dumps(s) + b"\n" for s in make_specs(5, prefix="stdin"))
    _, err = await proc.communicate(lines)
    assert proc.returncode == 0, err.decode()
    log = records(results, partial=True)
    assert [r["source"] for r in log if r["name"] == "stdin-00000"] == ["-:1"]
    assert len(log) == 5
