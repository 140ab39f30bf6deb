"""`--max-failures`: a run (or a queue's pool) stops sending once too many specs failed for good.

Against the emulator: a description too large for the server's body limit is a 400
the local checks cannot see (the wrong field in a shared default), while 5xx answers
and resets from the fault plan are transient and never count.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provisioner.api.responses import translate_error
from provisioner.cli.main import main
from provisioner.core.outcome import is_permanent
from provisioner.emulator import Emulator, FaultPlan
from provisioner.errors import ConfigError, TransportError
from provisioner.pacing.tolerance import MaxFailures
from tests.helpers import (
    child_env,
    finish,
    make_specs,
    records,
    redis_args,
    run_cli,
    start_worker,
)

#: The emulator's body limit in these tests, and a description that breaks it.
BODY_LIMIT = 2_000
TOO_LONG = "x" * 3_000
EXIT_TOO_MANY_FAILURES = 65


def broken_from(count: int, first_bad: int) -> list[dict[str, Any]]:
    """``count`` specs whose shared description, from ``first_bad`` on, the server refuses."""
    specs = make_specs(count)
    for spec in specs[first_bad:]:
        spec["description"] = TOO_LONG
    return specs


def run_argv(emulator: Emulator, jobs: Path, results: Path, *extra: str) -> list[str]:
    return [
        "run", str(jobs), "--api-url", emulator.url, "--results", str(results),
        "--rate", "0", "--backoff", "0", "--no-progress", "--log-level", "error",
        *extra,
    ]  # fmt: skip


def answer(status: int, message: str = "bad") -> Exception:
    body = {"error": {"type": "invalid_request_error", "message": message}}
    return translate_error(status, body, json.dumps(body).encode(), {})


@pytest.mark.parametrize(
    ("status", "message", "counts"),
    [
        (400, "config.description: too long", True),
        (422, "unprocessable", True),
        (404, "not found", True),
        (409, "environment name already exists", True),
        (409, "A request with this Idempotency-Key is still in progress", False),
        (408, "timeout", False),
        (429, "slow down", False),
        (500, "oops", False),
        (502, "bad gateway", False),
        (503, "unavailable", False),
    ],
)
def test_only_failures_retrying_cannot_fix_count(
    status: int, message: str, counts: bool
):
    """A 4xx counts, except 408, 429 and a 409 "still in progress"; no 5xx counts."""
    assert is_permanent(answer(status, message)) is counts


def test_a_reset_or_a_timeout_never_counts():
    """Transport failures (a reset, a timeout) are transient: they never count."""
    reset = TransportError("reset", is_ambiguous=True, error_type="connection_reset")
    assert not is_permanent(reset)


@pytest.mark.parametrize(
    ("text", "failed", "finished", "exceeded"),
    [
        ("0", 1, 1, True),
        ("2", 2, 50, False),
        ("2", 3, 50, True),
        ("10%", 9, 9, False),  # not judged before 10 specs finished
        ("10%", 1, 10, False),
        ("10%", 2, 10, True),
        ("2.5%", 3, 100, True),
        ("100%", 10, 10, False),
    ],
)
def test_a_limit_is_a_count_or_a_share_of_the_finished_specs(
    text: str, failed: int, finished: int, exceeded: bool
):
    """`N` tolerates N failures; `N%` a share of those finished, judged from 10 on."""
    limit = MaxFailures.parse(text)
    assert limit.is_exceeded(failed=failed, finished=finished) is exceeded


@pytest.mark.parametrize("text", ["-1", "lots", "5%%", "101%", "nan%", ""])
def test_an_impossible_limit_is_refused(text: str):
    """A negative count, a share above 100 % or a word is a ConfigError."""
    with pytest.raises(ConfigError):
        MaxFailures.parse(text)


def test_a_bad_max_failures_variable_is_a_usage_error(write_jobs, tmp_path: Path):
    """`PROVISIONER_MAX_FAILURES=lots` is one line naming the flag, exit 2."""
    jobs = write_jobs(make_specs(1))
    env = child_env(PROVISIONER_MAX_FAILURES="lots")
    done = run_cli("run", jobs, "--sandbox", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "PROVISIONER_MAX_FAILURES" in done.stderr


def test_a_run_past_its_limit_stops_and_a_resume_creates_the_rest_once(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path, cli_env
):
    """--max-failures 2: the third refused spec stops the run (exit 65, nothing more
    sent); with the field fixed, the same command creates the rest, each once."""
    emulator = make_live_emulator(max_body_bytes=BODY_LIMIT)
    jobs = write_jobs(broken_from(40, first_bad=5))
    results = tmp_path / "results.jsonl"
    summary = tmp_path / "summary.json"
    argv = run_argv(emulator, jobs, results, "--concurrency", "1",
                    "--max-failures", "2", "--summary", str(summary))  # fmt: skip

    assert main(argv) == EXIT_TOO_MANY_FAILURES
    statuses = Counter(r["status"] for r in records(results))
    assert statuses == {"created": 5, "failed": 3}
    assert {r["http_status"] for r in records(results) if r["status"] == "failed"} == {
        400
    }
    assert emulator.stats()["requests"] == 8  # nothing sent past the third failure
    document = json.loads(summary.read_text())
    assert document["exit_code"] == EXIT_TOO_MANY_FAILURES
    assert document["not_started"] == 32
    assert "--max-failures 2" in document["stopped_by"]

    write_jobs(make_specs(40))  # the shared default fixed
    assert main(argv) == 0
    counts = emulator.creation_counts()
    assert (len(counts), set(counts.values())) == (40, {1})
    final = {r["name"]: r["status"] for r in records(results)}
    assert set(final.values()) == {"created"}


def test_the_summary_says_why_the_run_stopped(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path
):
    """The summary line names the limit and what is left; the exit code is 65."""
    emulator = make_live_emulator(max_body_bytes=BODY_LIMIT)
    jobs = write_jobs(broken_from(30, first_bad=0))
    done = run_cli(*run_argv(emulator, jobs, tmp_path / "r.jsonl",
                             "--concurrency", "1", "--max-failures", "0",
                             "--log-level", "warning"))  # fmt: skip
    assert done.returncode == EXIT_TOO_MANY_FAILURES, done.stderr
    assert "stopped (too many failures: 1 of 1 finished specs failed" in done.stderr
    assert "29 not started; run the same command again to resume" in done.stderr


def test_a_percentage_waits_for_ten_finished_specs(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path, cli_env
):
    """--max-failures 50% with every spec refused: it stops at the tenth record, not the first."""
    emulator = make_live_emulator(max_body_bytes=BODY_LIMIT)
    jobs = write_jobs(broken_from(50, first_bad=0))
    results = tmp_path / "results.jsonl"
    argv = run_argv(emulator, jobs, results, "--concurrency", "1",
                    "--max-failures", "50%")  # fmt: skip
    assert main(argv) == EXIT_TOO_MANY_FAILURES
    assert [r["status"] for r in records(results)] == ["failed"] * 10


def test_transient_faults_never_count(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path, cli_env
):
    """5xx answers and resets that outlast --max-attempts fail specs but stop nothing:
    even with --max-failures 0 every spec is tried (exit 1, not 65)."""
    plan = FaultPlan(seed=3, error_500=0.3, error_503=0.3, reset_before_commit=0.4)
    emulator = make_live_emulator(faults=plan)
    jobs = write_jobs(make_specs(30))
    results = tmp_path / "results.jsonl"
    argv = run_argv(emulator, jobs, results, "--max-attempts", "1",
                    "--max-failures", "0")  # fmt: skip
    assert main(argv) == 1
    failed = [r for r in records(results) if r["status"] == "failed"]
    assert len(records(results)) == 30
    assert {r["http_status"] for r in failed} == {503, None}  # None: a reset
    assert "connection_reset" in {r["error"]["type"] for r in failed}


def test_a_retried_fault_mix_with_max_failures_0_creates_everything(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path, cli_env
):
    """The demo's fault mix, retried, with --max-failures 0: every spec created once, exit 0."""
    plan = FaultPlan(seed=5, error_502=0.1, error_503=0.1, reset_after_commit=0.1)
    emulator = make_live_emulator(faults=plan)
    jobs = write_jobs(make_specs(40))
    results = tmp_path / "results.jsonl"
    argv = run_argv(emulator, jobs, results, "--max-attempts", "8",
                    "--max-failures", "0")  # fmt: skip
    assert main(argv) == 0
    counts = emulator.creation_counts()
    assert (len(counts), set(counts.values())) == (40, {1})


async def test_a_pool_stops_together_leaving_the_rest_queued(
    redis, make_live_emulator: Callable[..., Emulator], write_jobs
):
    """Two workers, --max-failures 3, every spec refused: both exit 65 once the pool's
    count passes 3, the rest stays queued (no dead letter); a reset lets the pool go on."""
    emulator = make_live_emulator(max_body_bytes=BODY_LIMIT)
    queued = run_cli("enqueue", write_jobs(broken_from(60, 0)), *redis_args(redis))
    assert queued.returncode == 0, queued.stderr
    limit = ("--max-failures", "3", "--concurrency", "1", "--exit-when-empty")
    workers = [start_worker(redis, emulator, *limit, name=f"w{i}") for i in range(2)]
    ended = [finish(w) for w in workers]

    assert [code for code, _ in ended] == [EXIT_TOO_MANY_FAILURES] * 2, ended
    assert all("worker.failure_limit_reached" in err for _, err in ended)
    status = await redis.status("provisioner")
    assert status.failures.failed == status.results
    assert 4 <= status.results <= 6  # at most one more in flight per worker
    assert status.length == 60 - status.results
    assert status.dead_letters == 0

    shown = run_cli("queue-status", *redis_args(redis))
    assert f"failures for --max-failures  {status.results} of" in shown.stdout
    reset = run_cli("queue-status", *redis_args(redis), "--reset-failures")
    assert reset.returncode == 0, reset.stderr
    assert "failures for --max-failures  0 of 0 finished" in reset.stdout
    assert (await redis.status("provisioner")).failures.failed == 0


async def test_a_pool_resumes_after_a_reset_and_creates_the_rest_once(
    redis, make_live_emulator: Callable[..., Emulator], write_jobs
):
    """5 refused specs then 30 good ones, --max-failures 2: the pool stops; after
    `queue-status --reset-failures` a worker with the same flags creates the 30, each once."""
    emulator = make_live_emulator(max_body_bytes=BODY_LIMIT)
    specs = broken_from(35, first_bad=0)
    for spec in specs[5:]:
        del spec["description"]
    assert run_cli("enqueue", write_jobs(specs), *redis_args(redis)).returncode == 0
    limit = ("--max-failures", "2", "--concurrency", "1", "--exit-when-empty")

    code, err = finish(start_worker(redis, emulator, *limit))
    assert code == EXIT_TOO_MANY_FAILURES, err
    assert (await redis.status("provisioner")).length > 0

    assert (
        run_cli("queue-status", *redis_args(redis), "--reset-failures").returncode == 0
    )
    code, err = finish(start_worker(redis, emulator, *limit))
    assert code == 1, err  # the two refused specs it met are failures, under the limit
    counts = emulator.creation_counts()
    assert (len(counts), set(counts.values())) == (30, {1})
    results = await redis.results()
    assert Counter(r["status"] for r in results) == {"created": 30, "failed": 5}
    status = await redis.status("provisioner")
    assert (status.length, status.pending, status.dead_letters) == (0, 0, 0)


def test_throttling_never_counts(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path, cli_env
):
    """429s that outlast --max-attempts fail specs, yet --max-failures 0 stops nothing."""
    plan = FaultPlan(rate_limit_per_s=0.01, rate_limit_burst=2, retry_after_s=None)
    emulator = make_live_emulator(faults=plan)
    jobs = write_jobs(make_specs(12))
    results = tmp_path / "results.jsonl"
    argv = run_argv(emulator, jobs, results, "--max-attempts", "1",
                    "--max-failures", "0")  # fmt: skip
    assert main(argv) == 1
    statuses = Counter((r["status"], r["http_status"]) for r in records(results))
    assert statuses == {("created", 201): 2, ("failed", 429): 10}


def test_a_taken_name_with_on_conflict_fail_counts(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path, cli_env
):
    """With --on-conflict fail a name someone else took is a failure retrying cannot fix."""
    emulator = make_live_emulator()
    taken = write_jobs(make_specs(3), name="taken.jsonl")
    assert main(run_argv(emulator, taken, tmp_path / "first.jsonl")) == 0
    jobs = write_jobs([{**s, "description": "ours"} for s in make_specs(10)])
    results = tmp_path / "results.jsonl"
    argv = run_argv(emulator, jobs, results, "--concurrency", "1",
                    "--on-conflict", "fail", "--max-failures", "1")  # fmt: skip
    assert main(argv) == EXIT_TOO_MANY_FAILURES
    assert [r["status"] for r in records(results)] == ["failed"] * 2


def test_specs_started_before_the_stop_finish_with_their_retries(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path, cli_env
):
    """Past the limit no spec starts, but those already started finish, retries
    included: each gets its record (none is left "in flight"), and every
    environment the server made is in the log."""
    plan = FaultPlan(seed=11, error_502=0.5, reset_after_commit=0.2)
    emulator = make_live_emulator(max_body_bytes=BODY_LIMIT, faults=plan)
    specs = make_specs(60)
    for spec in specs[::3]:
        spec["description"] = TOO_LONG
    jobs = write_jobs(specs)
    results = tmp_path / "results.jsonl"
    summary = tmp_path / "summary.json"
    argv = run_argv(emulator, jobs, results, "--concurrency", "6",
                    "--max-attempts", "10", "--max-failures", "3",
                    "--summary", str(summary))  # fmt: skip

    assert main(argv) == EXIT_TOO_MANY_FAILURES
    document = json.loads(summary.read_text())
    assert document["counts"]["interrupted"] == 0
    logged = {r["name"] for r in records(results)}
    assert set(emulator.creation_counts()) <= logged
    assert len(logged) + document["not_started"] == 60
