"""``provisioner run`` end to end, in process, against a live emulator over HTTP."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from provisioner.emulator import Emulator
from tests.helpers import cli, make_specs, records

pytestmark = pytest.mark.usefixtures("cli_env")


def run(emulator: Emulator, *args: str | Path) -> int:
    """``provisioner run`` in process at the default rate (args may override)."""
    return cli(emulator, "run", *args, rate=None)


def test_every_spec_of_a_1000_line_file_is_created_once(
    live_emulator, write_jobs, tmp_path
):
    """A 1,000-line job creates 1,000 environments whose ids match the server's."""
    jobs = write_jobs(make_specs(1000))
    results = tmp_path / "results.jsonl"
    code = run(
        live_emulator, jobs, "--results", results, "--rate", "0", "--concurrency", "16"
    )
    assert code == 0
    log = records(results)
    assert len(log) == 1000
    assert {r["status"] for r in log} == {"created"}
    server = {env["name"]: env["id"] for env in live_emulator.environments()}
    assert {r["name"]: r["id"] for r in log} == server
    assert set(live_emulator.creation_counts().values()) == {1}
    first = log[0]
    assert first["source"] == f"{jobs}:1"
    assert first["http_status"] == 201
    assert first["attempts"] == 1
    assert first["error"] is None
    for field in ("started_at", "finished_at", "duration_ms", "spec_key"):
        assert first[field] is not None


def test_never_more_than_concurrency_requests_in_flight(
    live_emulator, write_jobs, tmp_path
):
    """The server never sees more than --concurrency requests at once."""
    live_emulator.faults.latency_ms = 20
    jobs = write_jobs(make_specs(60))
    code = run(
        live_emulator,
        jobs,
        "--results",
        tmp_path / "r.jsonl",
        "--rate",
        "0",
        "--concurrency",
        "4",
    )
    assert code == 0
    assert live_emulator.stats()["max_in_flight"] == 4


def test_rate_limit_keeps_under_the_servers_limit(live_emulator, write_jobs, tmp_path):
    """At --rate 40 a server limiting at 50/s never has to answer 429."""
    live_emulator.faults.rate_limit_per_s = 50
    live_emulator.faults.rate_limit_burst = 5
    jobs = write_jobs(make_specs(50))
    code = run(
        live_emulator,
        jobs,
        "--results",
        tmp_path / "r.jsonl",
        "--rate",
        "40",
        "--concurrency",
        "8",
    )
    assert code == 0
    stats = live_emulator.stats()
    assert stats["faults"]["rate_limited"] == 0
    assert stats["creations"] == 50


def test_unlimited_rate_meets_the_servers_429s_and_still_creates_all(
    live_emulator, write_jobs, tmp_path
):
    """Without a client limit the server answers 429; every spec is still created once."""
    live_emulator.faults.rate_limit_per_s = 200
    live_emulator.faults.rate_limit_burst = 2
    live_emulator.faults.retry_after_s = None
    jobs = write_jobs(make_specs(150))
    results = tmp_path / "r.jsonl"
    code = run(
        live_emulator,
        jobs,
        "--results",
        results,
        "--rate",
        "0",
        "--concurrency",
        "16",
        "--max-attempts",
        "50",
        "--backoff",
        "0.01",
        "--backoff-max",
        "0.1",
    )
    assert code == 0
    assert live_emulator.stats()["faults"]["rate_limited"] > 0
    assert set(live_emulator.creation_counts().values()) == {1}
    assert len(live_emulator.creation_counts()) == 150
    assert {r["status"] for r in records(results)} == {"created"}


def test_faults_are_retried_and_every_spec_is_created_once(
    make_live_emulator, write_jobs, tmp_path
):
    """5xx, HTML 502s, 429s and resets before and after commit are retried without duplicates."""
    emulator = make_live_emulator()
    plan = emulator.faults
    plan.seed = 42
    plan.error_500 = plan.error_502 = plan.error_503 = 0.05
    plan.reset_before_commit = plan.reset_after_commit = 0.05
    plan.rate_limit_per_s, plan.rate_limit_burst, plan.retry_after_s = 400, 4, None
    jobs = write_jobs(make_specs(400))
    results = tmp_path / "r.jsonl"
    code = run(
        emulator,
        jobs,
        "--results",
        results,
        "--rate",
        "0",
        "--concurrency",
        "8",
        "--max-attempts",
        "20",
        "--backoff",
        "0.01",
        "--backoff-max",
        "0.1",
    )
    assert code == 0
    log = records(results)
    assert Counter(r["status"] for r in log) == {"created": 400}
    assert max(r["attempts"] for r in log) > 1
    assert set(emulator.creation_counts().values()) == {1}
    assert {r["id"] for r in log} == {env["id"] for env in emulator.environments()}


@pytest.mark.parametrize(
    "switches",
    [{"idempotency": False}, {"idempotency": False, "unique_names": False}],
    ids=["no-keys", "no-keys-no-unique-names"],
)
def test_lost_answers_on_servers_without_keys_are_created_once(
    make_live_emulator, write_jobs, tmp_path, switches
):
    """When keys are ignored (and even names may repeat), a lost create is found by name, not redone."""
    emulator = make_live_emulator(**switches)
    emulator.faults.seed = 7
    emulator.faults.reset_after_commit = 0.3
    jobs = write_jobs(make_specs(60))
    results = tmp_path / "r.jsonl"
    flags = ["--results", results, "--rate", "0", "--max-attempts", "20"]
    assert run(emulator, jobs, *flags) == 0
    log = records(results)
    assert Counter(r["status"] for r in log) == {"created": 60}
    assert emulator.stats()["faults"]["reset_after_commit"] > 0
    assert set(emulator.creation_counts().values()) == {1}
    assert {r["id"] for r in log} == {env["id"] for env in emulator.environments()}


def test_answers_slower_than_the_timeout_are_retried_safely(
    make_live_emulator, write_jobs, tmp_path
):
    """A create that answers after the client gave up is not created twice."""
    emulator = make_live_emulator()
    emulator.faults.seed = 3
    emulator.faults.slow = 0.2
    emulator.faults.slow_s = 0.6
    jobs = write_jobs(make_specs(30))
    results = tmp_path / "r.jsonl"
    code = run(
        emulator,
        jobs,
        "--results",
        results,
        "--rate",
        "0",
        "--timeout",
        "0.3",
        "--max-attempts",
        "20",
    )
    assert code == 0
    assert Counter(r["status"] for r in records(results)) == {"created": 30}
    assert emulator.stats()["faults"]["slow"] > 0
    assert set(emulator.creation_counts().values()) == {1}


def test_server_400_is_not_retried(make_live_emulator, write_jobs, tmp_path):
    """A spec the server rejects fails after one attempt with the server's message."""
    emulator = make_live_emulator(max_body_bytes=200)
    spec = make_specs(1)[0] | {"description": "x" * 300}
    results = tmp_path / "r.jsonl"
    assert run(emulator, write_jobs([spec]), "--results", results) == 1
    (record,) = records(results)
    assert record["status"] == "failed"
    assert record["attempts"] == 1
    assert record["http_status"] == 400
    assert record["error"]["type"] == "invalid_request_error"
    assert emulator.stats()["requests"] == 1


def test_existing_names_are_reported_as_exists_with_their_id(
    live_emulator, write_jobs, tmp_path
):
    """A name that exists already is `exists`, carries the existing id, and is not retried."""
    specs = make_specs(5)
    first = tmp_path / "first.jsonl"
    assert (
        run(live_emulator, write_jobs(specs[:2], name="a.jsonl"), "--results", first)
        == 0
    )
    before = {r["name"]: r["id"] for r in records(first)}
    results = tmp_path / "second.jsonl"
    assert (
        run(live_emulator, write_jobs(specs, name="b.jsonl"), "--results", results) == 0
    )
    log = {r["name"]: r for r in records(results)}
    for name, env_id in before.items():
        assert log[name]["status"] == "exists"
        assert log[name]["id"] == env_id
        assert log[name]["attempts"] == 1
    assert Counter(r["status"] for r in log.values()) == {"created": 3, "exists": 2}


def test_on_conflict_fail_makes_an_existing_name_a_failure(
    live_emulator, write_jobs, tmp_path
):
    """With --on-conflict fail, an existing name fails the run (exit 1) and names the id."""
    specs = make_specs(2)
    assert (
        run(
            live_emulator,
            write_jobs(specs[:1], name="a.jsonl"),
            "--results",
            tmp_path / "a.jsonl.log",
        )
        == 0
    )
    results = tmp_path / "r.jsonl"
    code = run(
        live_emulator,
        write_jobs(specs, name="b.jsonl"),
        "--results",
        results,
        "--on-conflict",
        "fail",
    )
    assert code == 1
    log = {r["name"]: r for r in records(results)}
    assert log["team-00000"]["status"] == "failed"
    assert log["team-00000"]["error"]["type"] == "conflict_error"
    assert log["team-00000"]["id"] is not None
    assert log["team-00001"]["status"] == "created"


def test_a_401_stops_the_run_with_a_clear_message(
    live_emulator, write_jobs, tmp_path, monkeypatch, capsys
):
    """A wrong token stops the run at once: exit 1, few requests, a message naming the cause."""
    monkeypatch.setenv("QODER_PAT", "pt-wrong")
    results = tmp_path / "r.jsonl"
    code = run(
        live_emulator,
        write_jobs(make_specs(200)),
        "--results",
        results,
        "--concurrency",
        "2",
        "--rate",
        "0",
    )
    assert code == 1
    assert live_emulator.stats()["requests"] <= 2
    err = capsys.readouterr().err
    assert "authentication failed (HTTP 401)" in err
    assert all(r["error"]["type"] == "authentication_error" for r in records(results))


def test_specs_waiting_for_the_rate_limit_are_not_sent_after_a_401(
    live_emulator, write_jobs, tmp_path, monkeypatch
):
    """Workers queued on the rate limiter drop their specs once a 401 stops the run."""
    monkeypatch.setenv("QODER_PAT", "pt-wrong")
    results = tmp_path / "r.jsonl"
    code = run(
        live_emulator, write_jobs(make_specs(50)), "--results", results, "--rate", "20"
    )
    assert code == 1
    assert live_emulator.stats()["requests"] <= 2
    assert len(records(results)) == live_emulator.stats()["requests"]


def test_invalid_files_are_refused_with_every_error_and_nothing_sent(
    live_emulator, write_jobs, tmp_path, capsys
):
    """Invalid specs stop the run before any request, listing file, line, field and reason."""
    specs: list[Any] = make_specs(3)
    specs[0]["config"]["networking"] = "unrestricted"
    specs[2]["metadata"] = {f"k{i}": "v" for i in range(17)}
    jobs = write_jobs(specs)
    results = tmp_path / "r.jsonl"
    assert run(live_emulator, jobs, "--results", results) == 2
    err = capsys.readouterr().err
    assert f"{jobs}:1: config.networking:" in err
    assert f"{jobs}:3: metadata:" in err
    assert "2 of 3 specs are invalid; nothing was sent" in err
    assert live_emulator.stats()["requests"] == 0
    assert not results.exists()


def test_skip_invalid_records_invalid_specs_and_runs_the_rest(
    live_emulator, write_jobs, tmp_path
):
    """--skip-invalid writes an `invalid` record per bad spec and creates the good ones."""
    specs: list[Any] = make_specs(3)
    del specs[1]["config"]
    results = tmp_path / "r.jsonl"
    assert (
        run(live_emulator, write_jobs(specs), "--results", results, "--skip-invalid")
        == 2
    )
    log = {r["name"]: r for r in records(results)}
    assert log["team-00001"]["status"] == "invalid"
    assert log["team-00001"]["error"]["type"] == "invalid_spec"
    assert "config" in log["team-00001"]["error"]["message"]
    assert log["team-00000"]["status"] == log["team-00002"]["status"] == "created"


def test_a_rerun_resumes_and_sends_nothing_for_settled_specs(
    live_emulator, write_jobs, tmp_path, capsys
):
    """Running the same job twice skips everything the log already has."""
    jobs = write_jobs(make_specs(20))
    results = tmp_path / "r.jsonl"
    assert run(live_emulator, jobs, "--results", results) == 0
    live_emulator.reset_stats()
    assert run(live_emulator, jobs, "--results", results) == 0
    assert live_emulator.stats()["requests"] == 0
    assert len(records(results)) == 20
    assert "20 skipped (already done)" in capsys.readouterr().err


def test_failed_specs_are_retried_on_resume_leaving_one_record_each(
    make_live_emulator, write_jobs, tmp_path
):
    """A failed spec is tried again by the next run, and the log keeps one record per spec."""
    emulator = make_live_emulator()
    emulator.faults.error_503 = 1.0
    emulator.faults.retry_after_s = 0
    jobs = write_jobs(make_specs(5))
    results = tmp_path / "r.jsonl"
    assert run(emulator, jobs, "--results", results, "--max-attempts", "2") == 1
    assert {r["status"] for r in records(results)} == {"failed"}
    emulator.faults.error_503 = 0.0
    assert run(emulator, jobs, "--results", results) == 0
    log = records(results)
    assert len(log) == 5
    assert {r["status"] for r in log} == {"created"}


def test_summary_file_and_stdout_results(live_emulator, write_jobs, tmp_path, capsys):
    """--results - streams records to stdout and --summary writes counts as JSON."""
    summary = tmp_path / "summary.json"
    code = run(
        live_emulator, write_jobs(make_specs(3)), "--results", "-", "--summary", summary
    )
    assert code == 0
    out = capsys.readouterr().out
    assert [orjson.loads(x)["status"] for x in out.splitlines()] == ["created"] * 3
    data = orjson.loads(summary.read_bytes())
    assert data["counts"]["created"] == 3
    assert data["total"] == 3
    assert data["creates_per_s"] > 0


def test_yaml_defaults_are_merged_and_sent_as_written(
    live_emulator, write_jobs, tmp_path
):
    """A YAML job with defaults creates each entry with the defaults deep-merged."""
    jobs = write_jobs(
        """
defaults:
  config:
    type: cloud
    networking: {type: limited, allowed_hosts: [pypi.org]}
  metadata: {owner: platform}
environments:
  - name: yaml-a
  - name: yaml-b
    metadata: {owner: data}
""",
        name="jobs.yaml",
    )
    assert run(live_emulator, jobs, "--results", tmp_path / "r.jsonl") == 0
    envs = {e["name"]: e for e in live_emulator.environments()}
    assert envs["yaml-a"]["metadata"] == {"owner": "platform"}
    assert envs["yaml-b"]["metadata"] == {"owner": "data"}
    assert envs["yaml-b"]["config"]["networking"]["allowed_hosts"] == ["pypi.org"]
