"""``run --salvage``: the specs a run did not finish, as a job file that retries exactly those."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from provisioner.core.salvage import error_type_of
from provisioner.emulator import Emulator
from provisioner.results import ErrorInfo
from tests.helpers import (
    TEST_TOKEN,
    child_env,
    cli,
    eventually,
    make_specs,
    records,
    result,
    run_cli,
    start_cli,
)

pytestmark = pytest.mark.usefixtures("cli_env")

YAML_JOBS = """
defaults:
  config:
    type: cloud
    networking: {type: limited, allowed_hosts: [pypi.org]}
  metadata: {owner: platform}
environments:
""" + "".join(f"  - name: team-{i:03d}\n" for i in range(60))


def salvaged(path: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(comment, spec) of every entry of a salvage file, after its header line."""
    lines = path.read_bytes().splitlines()
    assert lines[0].startswith(b"# provisioner salvage")
    entries = lines[1:]
    assert all(line.startswith(b"# ") for line in entries[::2])
    notes = [orjson.loads(line[2:]) for line in entries[::2]]
    return list(zip(notes, map(orjson.loads, entries[1::2]), strict=True))


def finished(log: list[dict[str, Any]]) -> set[str]:
    return {r["name"] for r in log if r["status"] in {"created", "exists", "updated"}}


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        ("created", None, None),
        ("exists", None, None),
        ("updated", None, None),
        ("invalid", ErrorInfo("invalid_spec", "config.type: bad"), None),
        ("failed", ErrorInfo("http_503", "HTTP 503"), "http_503"),
        ("failed", ErrorInfo("conflict_error", "name taken"), "conflict_error"),
        ("failed", None, "failed"),
    ],
)
def test_only_unfinished_records_are_salvaged_under_their_error_type(
    status, error, expected
):
    """A success or an invalid spec is not salvaged; a failure is, under its error type."""
    assert error_type_of(result("a", status, error=error)) == expected


def test_failed_specs_are_salvaged_as_sent_and_their_rerun_creates_exactly_those(
    make_live_emulator, write_jobs, tmp_path
):
    """Failed specs go to the salvage with their merged body, source and error type; running it creates just them."""
    emulator = make_live_emulator()
    emulator.faults.seed = 5
    emulator.faults.error_503 = 0.4
    jobs = write_jobs(YAML_JOBS, name="jobs.yaml")
    results, salvage = tmp_path / "r.jsonl", tmp_path / "salvage.jsonl"
    summary = tmp_path / "summary.json"
    code = cli(emulator, "run", jobs, "--results", results, "--max-attempts", "1",
               "--salvage", salvage, "--summary", summary)  # fmt: skip
    assert code == 1
    failed = {r["name"]: r for r in records(results) if r["status"] == "failed"}
    assert 0 < len(failed) < 60
    entries = salvaged(salvage)
    assert {spec["name"] for _, spec in entries} == set(failed)
    for note, spec in entries:
        assert note == {
            "source": failed[spec["name"]]["source"],
            "error_type": "http_503",
        }
        assert spec["metadata"] == {"owner": "platform"}  # the defaults, merged
        assert spec["config"]["networking"]["allowed_hosts"] == ["pypi.org"]
    data = orjson.loads(summary.read_bytes())
    assert data["salvage"] == {
        "path": str(salvage),
        "specs": len(failed),
        "by_error_type": {"http_503": len(failed)},
        "invalid_left_out": 0,
    }

    emulator.faults.error_503 = 0.0
    again = tmp_path / "again.jsonl"
    assert cli(emulator, "run", salvage, "--results", again) == 0
    log = records(again)
    assert {r["name"] for r in log} == set(failed)
    assert {r["status"] for r in log} == {"created"}
    # The same bodies, so the same keys as in the first run.
    assert {r["name"]: r["spec_key"] for r in log} == {
        n: r["spec_key"] for n, r in failed.items()
    }
    counts = emulator.creation_counts()
    assert len(counts) == 60
    assert set(counts.values()) == {1}


def test_a_run_where_everything_finished_leaves_an_empty_salvage(
    live_emulator, write_jobs, tmp_path, capsys
):
    """Nothing to retry: the salvage is an empty file (it replaces an old one), and the summary says so."""
    salvage = tmp_path / "salvage.jsonl"
    salvage.write_text("old\n")
    jobs = write_jobs(make_specs(3))
    results = tmp_path / "r.jsonl"
    assert cli(live_emulator, "run", jobs, "--results", results,
               "--salvage", salvage) == 0  # fmt: skip
    assert salvage.read_bytes() == b""
    assert (
        f"salvage: every spec finished; {salvage} is empty" in capsys.readouterr().err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "jobs.jsonl", "r.jsonl", "r.jsonl.lock", "salvage.jsonl",
    ]  # fmt: skip


def test_salvage_to_stdout_can_be_piped_into_another_run(
    live_emulator, write_jobs, tmp_path, capsys
):
    """--salvage - writes the salvage on stdout, where `provisioner run -` reads it."""
    live_emulator.faults.error_503 = 1.0
    jobs = write_jobs(make_specs(4))
    assert cli(live_emulator, "run", jobs, "--results", tmp_path / "r.jsonl",
               "--max-attempts", "1", "--salvage", "-") == 1  # fmt: skip
    captured = capsys.readouterr()
    assert "4 specs did not finish (4 http_503); written to stdout" in captured.err
    retry = tmp_path / "retry.jsonl"
    retry.write_text(captured.out)
    assert [spec["name"] for _, spec in salvaged(retry)] == [
        s["name"] for s in make_specs(4)
    ]
    live_emulator.faults.error_503 = 0.0
    proc = run_cli("run", "-", "--api-url", live_emulator.url, "--results",
                   tmp_path / "r2.jsonl", "--no-progress", input=captured.out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert Counter(r["status"] for r in records(tmp_path / "r2.jsonl")) == {
        "created": 4
    }


@pytest.mark.parametrize("other", ["--results", "--summary"])
def test_salvage_to_stdout_excludes_another_document_there(
    live_emulator, write_jobs, other, capsys
):
    """--salvage - with --results - or --summary - is a usage error; nothing is sent."""
    jobs = write_jobs(make_specs(2))
    assert cli(live_emulator, "run", jobs, "--salvage", "-", other, "-") == 2
    assert f"--salvage - and {other} - would both write to stdout" in (
        capsys.readouterr().err
    )
    assert live_emulator.creation_counts() == {}


def test_salvage_never_overwrites_a_job_file_or_the_result_log(
    live_emulator, write_jobs, tmp_path, capsys
):
    """--salvage naming a job file or the result log is refused, and the file is kept."""
    jobs = write_jobs(make_specs(2))
    results = tmp_path / "r.jsonl"
    for target, what in ((jobs, f"job file {jobs}"), (results, "the result log")):
        assert cli(live_emulator, "run", jobs, "--results", results,
                   "--salvage", target) == 2  # fmt: skip
        assert f"--salvage {target} would overwrite {what}" in capsys.readouterr().err
    assert len(jobs.read_text().splitlines()) == 2
    assert live_emulator.creation_counts() == {}


def test_salvage_never_overwrites_the_summary_nor_goes_to_a_missing_folder(
    live_emulator, write_jobs, tmp_path, capsys
):
    """--salvage onto the --summary file, or into a folder that does not exist, is refused before anything is sent."""
    jobs = write_jobs(make_specs(2))
    summary = tmp_path / "summary.json"
    missing = tmp_path / "nope" / "s.jsonl"
    assert cli(live_emulator, "run", jobs, "--results", tmp_path / "r.jsonl",
               "--summary", summary, "--salvage", summary) == 2  # fmt: skip
    assert f"--salvage {summary} would overwrite the summary" in capsys.readouterr().err
    assert cli(live_emulator, "run", jobs, "--results", tmp_path / "r.jsonl",
               "--salvage", missing) == 2  # fmt: skip
    assert f"no such folder {missing.parent}" in capsys.readouterr().err
    assert live_emulator.creation_counts() == {}


def test_a_salvage_is_retried_in_place_until_it_is_empty(
    live_emulator, write_jobs, tmp_path
):
    """`run retry.jsonl --salvage retry.jsonl` replaces the salvage it reads with what is still left."""
    live_emulator.faults.error_503 = 1.0
    jobs = write_jobs(make_specs(3))
    results, retry = tmp_path / "r.jsonl", tmp_path / "retry.jsonl"
    args = ("--results", results, "--max-attempts", "1", "--salvage", retry)
    assert cli(live_emulator, "run", jobs, *args) == 1
    assert cli(live_emulator, "run", retry, *args) == 1
    assert len(salvaged(retry)) == 3
    live_emulator.faults.error_503 = 0.0
    assert cli(live_emulator, "run", retry, *args) == 0
    assert retry.read_bytes() == b""
    assert Counter(r["status"] for r in records(results)) == {"created": 3}


def test_invalid_specs_are_left_out_and_counted(
    live_emulator, write_jobs, tmp_path, capsys
):
    """With --skip-invalid, invalid specs are not salvaged (a retry cannot fix them); the summary counts them."""
    live_emulator.faults.error_503 = 1.0
    bad = {"name": "bad", "config": {"type": "moon"}}
    jobs = write_jobs([*make_specs(2), bad])
    salvage, summary = tmp_path / "s.jsonl", tmp_path / "summary.json"
    cli(live_emulator, "run", jobs, "--results", tmp_path / "r.jsonl", "--skip-invalid",
        "--max-attempts", "1", "--salvage", salvage, "--summary", summary)  # fmt: skip
    assert [spec["name"] for _, spec in salvaged(salvage)] == [
        "team-00000",
        "team-00001",
    ]
    assert orjson.loads(summary.read_bytes())["salvage"]["invalid_left_out"] == 1
    assert "salvage: 1 invalid specs are not in it" in capsys.readouterr().err


def test_specs_left_failed_by_no_retry_failed_are_salvaged(
    live_emulator, write_jobs, tmp_path, monkeypatch
):
    """A resumed run with --no-retry-failed (here from PROVISIONER_SALVAGE) salvages the specs it left failed."""
    live_emulator.faults.error_503 = 1.0
    jobs = write_jobs(make_specs(2))
    results, salvage = tmp_path / "r.jsonl", tmp_path / "s.jsonl"
    assert (
        cli(live_emulator, "run", jobs, "--results", results, "--max-attempts", "1")
        == 1
    )
    monkeypatch.setenv("PROVISIONER_SALVAGE", str(salvage))
    assert (
        cli(live_emulator, "run", jobs, "--results", results, "--no-retry-failed") == 1
    )
    assert [note["error_type"] for note, _ in salvaged(salvage)] == [
        "failed_before"
    ] * 2


# --- stopped midway, as a real child process ----------------------------------


async def start_run(
    emulator: Emulator, jobs: Path, results: Path, *extra: str | Path
) -> asyncio.subprocess.Process:
    return await start_cli(
        "run", jobs, "--api-url", emulator.url, "--results", results,
        "--backoff", "0", "--rate", "0", "--no-progress", *extra,
        env=child_env(token=TEST_TOKEN),
    )  # fmt: skip


@pytest.mark.slow
async def test_a_run_stopped_by_sigterm_salvages_the_rest_and_both_ways_resume_it(
    emulator, write_jobs, tmp_path
):
    """SIGTERM mid-run: the salvage holds every spec not finished, by error type; re-running it
    with the original result log creates exactly those, once each, and the original job then sends nothing."""
    total = 300
    emulator.faults.seed = 9
    emulator.faults.latency_ms = 20
    emulator.faults.error_503 = 0.1
    emulator.faults.reset_after_commit = 0.05
    jobs = write_jobs(make_specs(total))
    results, salvage = tmp_path / "r.jsonl", tmp_path / "salvage.jsonl"
    summary = tmp_path / "summary.json"
    proc = await start_run(emulator, jobs, results, "--concurrency", "4",
                           "--max-attempts", "2", "--salvage", salvage,
                           "--summary", summary)  # fmt: skip
    await eventually(lambda: len(records(results, partial=True)) >= 40, timeout_s=30)
    proc.send_signal(signal.SIGTERM)
    _, err = await proc.communicate()
    assert proc.returncode == 130, err.decode()
    log = records(results)
    entries = salvaged(salvage)
    names = [spec["name"] for _, spec in entries]
    assert len(names) == len(set(names))
    assert set(names) == {s["name"] for s in make_specs(total)} - finished(log)
    by_type = Counter(note["error_type"] for note, _ in entries)
    assert by_type["not_started"] > 0
    assert orjson.loads(summary.read_bytes())["salvage"]["by_error_type"] == dict(
        by_type
    )
    assert "salvage: " in err.decode()
    assert not list(tmp_path.glob(".salvage.jsonl.*"))  # no temporary file left

    emulator.faults.error_503 = emulator.faults.reset_after_commit = 0.0
    proc = await start_run(emulator, salvage, results)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    log = records(results)
    assert (
        len(log) == total
    )  # one record per spec: the salvage's replaced the failed ones
    assert finished(log) == {s["name"] for s in make_specs(total)}
    counts = emulator.creation_counts()
    assert len(counts) == total
    assert set(counts.values()) == {1}

    sent = emulator.stats()["requests"]
    proc = await start_run(emulator, jobs, results)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert f"{total} skipped (already done)" in err.decode()
    assert emulator.stats()["requests"] == sent


@pytest.mark.slow
async def test_a_second_signal_salvages_the_requests_it_cancelled_as_interrupted(
    emulator, write_jobs, tmp_path
):
    """Two SIGINTs: the specs cancelled in flight are salvaged as interrupted, the file still complete."""
    emulator.faults.latency_ms = 20
    jobs = write_jobs(make_specs(40))
    results, salvage = tmp_path / "r.jsonl", tmp_path / "salvage.jsonl"
    proc = await start_run(emulator, jobs, results, "--concurrency", "4",
                           "--grace", "60", "--salvage", salvage)  # fmt: skip
    await eventually(lambda: len(records(results, partial=True)) >= 4, timeout_s=30)
    emulator.faults.latency_ms = 3_000
    slow_from = emulator.stats()["requests"]
    await eventually(lambda: emulator.stats()["requests"] >= slow_from + 4)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    await asyncio.wait_for(proc.stderr.readuntil(b"run.draining"), timeout=10)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 130
    entries = salvaged(salvage)
    assert Counter(note["error_type"] for note, _ in entries)["interrupted"] == 4
    assert {spec["name"] for _, spec in entries} == {
        s["name"] for s in make_specs(40)
    } - finished(records(results, partial=True))

    emulator.faults.latency_ms = 0
    await eventually(lambda: emulator.stats()["in_flight"] == 0)
    proc = await start_run(emulator, salvage, results)
    await proc.communicate()
    assert proc.returncode == 0
    assert set(emulator.creation_counts().values()) == {1}
    assert len(emulator.creation_counts()) == 40
