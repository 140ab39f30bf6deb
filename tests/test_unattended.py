"""Unattended runs: a result log bound to its API and held by one run; write failures, pipes and signals.

Every test runs ``provisioner`` as a real child process, the way cron or a container starts it,
against a real emulator on loopback.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from provisioner.emulator import FaultPlan
from tests.helpers import (
    child_env,
    eventually_sync,
    make_specs,
    records,
    run_cli,
    spawn_cli,
    wait_until_blocked_on_fifo,
)

pytestmark = pytest.mark.slow


def test_a_sandbox_rehearsal_never_makes_the_real_run_skip(
    live_emulator, write_jobs, tmp_path
):
    """`run --sandbox` then `run` in the same folder: the real run creates every environment."""
    jobs = write_jobs(make_specs(12))
    rehearsal = run_cli("run", jobs, "--sandbox", cwd=tmp_path)
    assert rehearsal.returncode == 0, rehearsal.stderr
    assert (tmp_path / "results.sandbox.jsonl").exists()

    real = run_cli("run", jobs, "--api-url", live_emulator.url, cwd=tmp_path)

    assert real.returncode == 0, real.stderr
    assert "12 created" in real.stderr
    assert sorted(live_emulator.creation_counts().values()) == [1] * 12
    assert {r["target"] for r in records(tmp_path / "results.jsonl")} == {
        live_emulator.url
    }


def test_records_of_another_api_are_ignored_with_a_warning(
    live_emulator, write_jobs, tmp_path
):
    """A log shared by a sandbox run and a real run: the real run names the sandbox records and redoes the specs."""
    jobs = write_jobs(make_specs(5))
    log = tmp_path / "shared.jsonl"
    assert (
        run_cli("run", jobs, "--sandbox", "--results", log, cwd=tmp_path).returncode
        == 0
    )

    real = run_cli(
        "run", jobs, "--api-url", live_emulator.url, "--results", log, cwd=tmp_path
    )

    assert real.returncode == 0, real.stderr
    assert "holds 5 records made against sandbox" in real.stderr
    assert len(live_emulator.creation_counts()) == 5
    targets = [r["target"] for r in records(log)]
    assert targets.count("sandbox") == 5
    assert targets.count(live_emulator.url) == 5


def test_an_edited_spec_is_not_taken_as_done(live_emulator, write_jobs, tmp_path):
    """A spec changed since its record has a new key: the re-run sends it instead of skipping it."""
    specs = make_specs(3)
    jobs = write_jobs(specs)
    assert (
        run_cli("run", jobs, "--api-url", live_emulator.url, cwd=tmp_path).returncode
        == 0
    )
    specs[1]["metadata"] = {"team": "edited"}
    write_jobs(specs)

    again = run_cli("run", jobs, "--api-url", live_emulator.url, cwd=tmp_path)

    assert "2 skipped" in again.stderr
    log = records(tmp_path / "results.jsonl")
    assert len(log) == 3
    edited = next(r for r in log if r["name"] == specs[1]["name"])
    assert edited["status"] == "exists"  # it was there, made from the older spec
    assert edited["attempts"] == 1


def test_a_second_run_on_the_same_log_exits_2_naming_the_holder(
    make_live_emulator, write_jobs, tmp_path
):
    """An overlapping cron run is refused at once; the log keeps one record per spec."""
    emulator = make_live_emulator(faults=FaultPlan(latency_ms=400))
    jobs = write_jobs(make_specs(20))
    args = ["run", jobs, "--api-url", emulator.url, "--concurrency", "2", "--rate", "0"]
    first = spawn_cli(*args, cwd=tmp_path, stdout=None)
    try:
        wait_for_lock(tmp_path / "results.jsonl.lock", first.pid)
        second = run_cli(*args, cwd=tmp_path)
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr
        assert os.uname().nodename in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    log = records(tmp_path / "results.jsonl")
    assert sorted(r["name"] for r in log) == sorted(s["name"] for s in make_specs(20))
    assert sorted(emulator.creation_counts().values()) == [1] * 20


def test_a_killed_run_leaves_no_stale_lock(make_live_emulator, write_jobs, tmp_path):
    """After kill -9 the next run takes the lock at once and finishes the job, creating nothing twice."""
    emulator = make_live_emulator(faults=FaultPlan(latency_ms=300))
    jobs = write_jobs(make_specs(10))
    args = ["run", jobs, "--api-url", emulator.url, "--concurrency", "2", "--rate", "0"]
    first = spawn_cli(*args, cwd=tmp_path, stdout=None, stderr=None)
    wait_for_lock(tmp_path / "results.jsonl.lock", first.pid)
    first.kill()
    first.wait(30)

    again = run_cli(*args, cwd=tmp_path)

    assert again.returncode == 0, again.stderr
    assert sorted(emulator.creation_counts().values()) == [1] * 10


def wait_for_lock(lock: Path, pid: int) -> None:
    eventually_sync(
        lambda: lock.exists() and f'"pid":{pid}' in lock.read_text(),
        interval_s=0.01,
        message="the first run never took the lock",
    )


def limit_file_size(size: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return preexec


def test_a_full_disk_stops_the_run_cleanly(live_emulator, write_jobs, tmp_path):
    """ENOSPC on the result log: exit 74, a summary that says why, no traceback."""
    jobs = write_jobs(make_specs(10))
    log = tmp_path / "results.jsonl"
    log.symlink_to("/dev/full")

    result = run_cli(
        "run", jobs, "--api-url", live_emulator.url, "--results", log, cwd=tmp_path
    )

    assert result.returncode == 74, result.stderr
    assert "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    assert "stopped (cannot write the result log" in result.stderr


def test_a_file_size_limit_stops_the_run_and_the_next_run_finishes_it(
    live_emulator, write_jobs, tmp_path
):
    """EFBIG mid-run: exit 74; the re-run resumes and every environment exists exactly once."""
    jobs = write_jobs(make_specs(60))
    args = ["run", jobs, "--api-url", live_emulator.url, "--concurrency", "4"]

    env = child_env()
    # A child under a file-size limit could not save its coverage data either.
    env.pop("COVERAGE_PROCESS_CONFIG", None)
    stopped = run_cli(*args, cwd=tmp_path, env=env, preexec_fn=limit_file_size(4000))

    assert stopped.returncode == 74, stopped.stderr
    assert "File too large" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    log = records(tmp_path / "results.jsonl")
    assert sorted(r["name"] for r in log) == sorted(s["name"] for s in make_specs(60))
    assert sorted(live_emulator.creation_counts().values()) == [1] * 60


def test_a_closed_pipe_behind_results_stdout_ends_quietly(write_jobs, tmp_path):
    """`--results - | head -1`: one record comes through, and the run ends without a traceback."""
    jobs = write_jobs(make_specs(200))
    script = (
        f"{sys.executable} -m provisioner run {jobs} --sandbox --sandbox-faults latency_ms=5 "
        '--results - | head -n 1; echo "exit=${PIPESTATUS[0]}" >&2'
    )
    result = subprocess.run(
        ["/bin/bash", "-c", script],
        check=False,
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert len(result.stdout.splitlines()) == 1
    assert orjson.loads(result.stdout)["status"] == "created"
    assert "exit=141" in result.stderr
    assert "Traceback" not in result.stderr
    assert "BrokenPipe" not in result.stderr


@pytest.mark.parametrize(
    "target", ["results.jsonl", "jobs.jsonl", "results.jsonl.lock"]
)
def test_summary_may_not_overwrite_the_log_or_a_job_file(
    live_emulator, write_jobs, tmp_path, target
):
    """`--summary` naming the result log, its lock or a job file is a usage error; nothing is touched."""
    jobs = write_jobs(make_specs(2))
    before = jobs.read_bytes()

    result = run_cli(
        "run", jobs, "--api-url", live_emulator.url, "--summary", target, cwd=tmp_path
    )

    assert result.returncode == 2
    assert "--summary" in result.stderr
    assert "would overwrite" in result.stderr
    assert jobs.read_bytes() == before
    assert live_emulator.creation_counts() == {}


def test_specs_left_failed_by_no_retry_failed_count_as_failed(
    make_live_emulator, write_jobs, tmp_path
):
    """With --no-retry-failed a log holding failed specs gives exit 1 and says they failed."""
    emulator = make_live_emulator(faults=FaultPlan(error_500=1.0))
    jobs = write_jobs(make_specs(3))
    args = ["run", jobs, "--api-url", emulator.url, "--max-attempts", "1"]
    assert run_cli(*args, cwd=tmp_path).returncode == 1

    again = run_cli(*args, "--no-retry-failed", cwd=tmp_path)

    assert again.returncode == 1
    assert "3 failed (3 left failed by an earlier run)" in again.stderr


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_reading_a_fifo_stops_at_once(tmp_path, command, sig):
    """A job FIFO whose writer never comes: SIGINT or SIGTERM still ends the run (exit 130)."""
    fifo = tmp_path / "jobs.jsonl"
    os.mkfifo(fifo)
    args = [command, str(fifo)] + (["--sandbox"] if command == "run" else [])
    proc = spawn_cli(*args, cwd=tmp_path, stdout=None)
    wait_until_blocked_on_fifo(proc.pid)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 130
    assert "Traceback" not in stderr
