"""Every spec finishes under transient faults; an outage still fails fast.

Both run the real CLI against the emulator with the fault mix the field sees: the
retry budget must tell ordinary transient faults (a few in a hundred, each retried)
from an outage (every request failing), and a 409 "still being processed" is a wait.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.emulator import Emulator, FaultPlan
from tests.helpers import make_specs, records

#: 5 % 503s, 5 % resets after commit, 3 % before, 3 % held 3 s against --timeout 1.
FIELD_MIX = FaultPlan(
    seed=11,
    error_503=0.05,
    reset_after_commit=0.05,
    reset_before_commit=0.03,
    slow=0.03,
    slow_s=3.0,
)


@pytest.mark.slow
def test_the_field_fault_mix_with_keys_creates_every_spec_exactly_once(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path, cli_env
):
    """1,500 specs under 16 % transient faults, keys honoured: 1,500 created, each name once."""
    emulator = make_live_emulator(faults=FIELD_MIX)
    jobs = write_jobs(make_specs(1500))
    results = tmp_path / "results.jsonl"
    code = main([
        "run", str(jobs), "--api-url", emulator.url, "--results", str(results),
        "--timeout", "1", "--max-attempts", "10", "--concurrency", "32",
        "--rate", "0", "--no-progress", "--log-level", "warning",
    ])  # fmt: skip
    recs = records(results)
    assert code == 0
    assert [r["status"] for r in recs].count("created") == 1500
    counts = emulator.creation_counts()
    assert len(counts) == 1500
    assert set(counts.values()) == {1}
    assert emulator.stats()["faults"]["slow"] > 0


@pytest.mark.slow
def test_an_outage_fails_fast_and_a_resume_afterwards_creates_everything(
    make_live_emulator: Callable[..., Emulator], write_jobs, tmp_path: Path, cli_env
):
    """Against a server that fails every request, 300 specs with --max-attempts 5 end
    failed with at most 1.5 requests per spec; once it is back, a resume creates them all."""
    emulator = make_live_emulator(faults=FaultPlan(error_503=1.0, retry_after_s=None))
    jobs = write_jobs(make_specs(300))
    results = tmp_path / "results.jsonl"
    argv = [
        "run", str(jobs), "--api-url", emulator.url, "--results", str(results),
        "--max-attempts", "5", "--rate", "200", "--no-progress", "--log-level", "error",
    ]  # fmt: skip
    assert main(argv) == 1
    assert emulator.stats()["requests"] <= 450
    assert {r["status"] for r in records(results)} == {"failed"}
    assert emulator.creation_counts() == {}

    emulator.faults.update({"error_503": 0.0})
    assert main(argv) == 0
    assert len(emulator.creation_counts()) == 300
    final = {r["name"]: r["status"] for r in records(results)}
    assert set(final.values()) == {"created"}
