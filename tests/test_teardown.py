"""``provisioner archive``/``delete --from``: tear down exactly what a run created.

The commands run in process (and, for the prompt and SIGKILL, as a child
process) against a live emulator over HTTP; the emulator's state and its
request counts are what a user would see.
"""

from __future__ import annotations

import asyncio
import os
import pty
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from provisioner.emulator import Emulator
from provisioner.lifecycle.teardown import outcome
from tests.helpers import (
    TEST_TOKEN,
    cli,
    eventually,
    make_specs,
    records,
    run_cli,
    start_cli,
)

pytestmark = pytest.mark.usefixtures("cli_env")

OTHER_API = "https://other.example/api/v1/cloud"


def admin(emulator: Emulator, path: str, body: dict[str, Any]) -> None:
    """POST to one of the emulator's admin (or API) routes."""
    request = urllib.request.Request(  # noqa: S310 - the test emulator's loopback URL
        f"{emulator.root_url}{path}",
        data=orjson.dumps(body),
        method="POST",
        headers={
            "Authorization": f"Bearer {TEST_TOKEN}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - as above
        assert answer.status == 200


def by_name(emulator: Emulator) -> dict[str, dict[str, Any]]:
    return {env["name"]: env for env in emulator.environments()}


def seed(emulator: Emulator, write_jobs, tmp_path: Path) -> Path:
    """A run that created team-00001..3 and found team-00000 there already, plus a
    record of another API; returns its result log."""
    specs = make_specs(4)
    before = write_jobs(specs[:1], name="before.jsonl")
    assert cli(emulator, "run", before, "--results", tmp_path / "other.jsonl") == 0
    results = tmp_path / "results.jsonl"
    assert cli(emulator, "run", write_jobs(specs), "--results", results) == 0
    foreign = {**records(results)[-1], "name": "elsewhere", "target": OTHER_API}
    with results.open("ab") as fh:
        fh.write(orjson.dumps(foreign) + b"\n")
    ours = [r for r in records(results) if r["target"] == emulator.url]
    assert Counter(r["status"] for r in ours) == {"created": 3, "exists": 1}
    return results


# --- decisions, with plain values --------------------------------------------


@pytest.mark.parametrize(
    ("action", "http_status", "status"),
    [
        ("archive", None, "archived"),
        ("archive", 409, "archived"),
        ("archive", 404, "failed"),
        ("delete", None, "deleted"),
        ("delete", 404, "deleted"),
        ("delete", 409, "failed"),
    ],
)
def test_already_archived_or_already_gone_counts_as_done(action, http_status, status):
    """An archive answered 409 (already archived) and a delete answered 404 (gone) are done."""
    assert outcome(action, http_status) == status


# --- the commands against a live emulator -------------------------------------


def test_archive_acts_on_exactly_the_created_environments(
    live_emulator, write_jobs, tmp_path, capsys
):
    """Archive --from archives what the run created, not what it found or another API's."""
    results = seed(live_emulator, write_jobs, tmp_path)
    capsys.readouterr()
    assert cli(live_emulator, "archive", "--from", results, "--yes") == 0
    err = capsys.readouterr().err
    assert f"will archive 3 environments created by {results}" in err
    assert "1 environments the run found already there" in err
    assert f"holds 1 records made against {OTHER_API}" in err
    envs = by_name(live_emulator)
    archived = {name for name, env in envs.items() if env["archived_at"] is not None}
    assert archived == {"team-00001", "team-00002", "team-00003"}
    log = records(tmp_path / "results.archive.jsonl")
    assert {(r["name"], r["status"], r["id"]) for r in log} == {
        (name, "archived", envs[name]["id"]) for name in archived
    }
    assert all(r["source"].startswith(f"{results}:") for r in log)


def test_delete_removes_the_created_ones_and_include_existing_the_rest(
    live_emulator, write_jobs, tmp_path
):
    """Delete --from leaves the found one; --include-existing deletes it too, once each."""
    results = seed(live_emulator, write_jobs, tmp_path)
    assert cli(live_emulator, "delete", "--from", results, "--yes") == 0
    assert set(by_name(live_emulator)) == {"team-00000"}
    live_emulator.reset_stats()
    argv = ("--from", results, "--yes", "--include-existing")
    assert cli(live_emulator, "delete", *argv) == 0
    assert by_name(live_emulator) == {}
    assert live_emulator.stats()["requests"] == 1  # the three done ones are skipped
    log = records(tmp_path / "results.delete.jsonl")
    assert sorted(r["name"] for r in log) == [f"team-{i:05d}" for i in range(4)]
    assert {r["status"] for r in log} == {"deleted"}


def test_delete_of_an_environment_in_use_fails_and_says_archive_instead(
    live_emulator, write_jobs, tmp_path
):
    """A 409 (sessions still use it) is a failed record telling to archive; exit 1."""
    results = seed(live_emulator, write_jobs, tmp_path)
    busy = by_name(live_emulator)["team-00002"]["id"]
    admin(live_emulator, f"/_emulator/environments/{busy}/references", {"count": 1})
    assert cli(live_emulator, "delete", "--from", results, "--yes") == 1
    failed = [
        r for r in records(tmp_path / "results.delete.jsonl") if r["status"] == "failed"
    ]
    assert [(r["name"], r["http_status"]) for r in failed] == [("team-00002", 409)]
    assert "archive it instead" in failed[0]["error"]["message"]
    assert set(by_name(live_emulator)) == {"team-00000", "team-00002"}


def test_without_a_terminal_and_without_yes_nothing_is_sent(
    live_emulator, write_jobs, tmp_path, capsys
):
    """No terminal to ask on and no --yes: exit 2, one line naming --yes, no request."""
    results = seed(live_emulator, write_jobs, tmp_path)
    live_emulator.reset_stats()
    capsys.readouterr()
    assert cli(live_emulator, "delete", "--from", results) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert live_emulator.stats()["requests"] == 0
    assert not (tmp_path / "results.delete.jsonl").exists()


def test_from_is_required_and_must_be_a_result_log(live_emulator, tmp_path, capsys):
    """Without --from, or with a missing file, the command is a usage error (exit 2)."""
    assert cli(live_emulator, "archive", "--yes") == 2
    assert "--from is required" in capsys.readouterr().err
    assert cli(live_emulator, "archive", "--from", tmp_path / "none.jsonl") == 2
    assert "no such result log" in capsys.readouterr().err


@pytest.mark.parametrize("case", [(b"n\n", 1, 4), (b"y\n", 0, 1)], ids=["n", "y"])
def test_the_prompt_on_a_terminal_asks_before_sending(
    live_emulator, write_jobs, tmp_path, case
):
    """On a terminal, 'n' at Proceed? [y/N] sends nothing (exit 1); 'y' deletes."""
    answer, code, left = case
    results = seed(live_emulator, write_jobs, tmp_path)
    primary, secondary = pty.openpty()
    argv = ["delete", "--api-url", live_emulator.url, "--from", str(results)]
    try:
        os.write(primary, answer)
        proc = run_cli(*argv, stdin=secondary, timeout=30)
    finally:
        os.close(primary)
        os.close(secondary)
    assert proc.returncode == code, proc.stderr
    assert "Proceed? [y/N]" in proc.stderr
    assert len(by_name(live_emulator)) == left


async def test_a_killed_delete_resumes_and_deletes_each_environment_once(
    emulator, api, tmp_path
):
    """SIGKILL mid-delete, run again: all deleted, one record each, done ones not re-sent."""
    total = 40
    results = tmp_path / "results.jsonl"
    lines = []
    for i in range(total):
        answer = await api(
            "POST", "/environments", json={"name": f"e{i}", "config": {"type": "cloud"}}
        )
        env = answer.json()
        record = {
            "name": env["name"],
            "status": "created",
            "id": env["id"],
            "target": emulator.url,
        }
        lines.append(orjson.dumps(record) + b"\n")
    results.write_bytes(b"".join(lines))
    log = tmp_path / "results.delete.jsonl"
    emulator.faults.latency_ms = 40
    proc = await start_delete(emulator, results)
    await eventually(
        lambda: len(records(log, partial=True)) >= 10 or proc.returncode is not None
    )
    proc.kill()
    await proc.communicate()
    before = len(records(log, partial=True))
    assert 0 < before < total
    emulator.faults.latency_ms = 0
    emulator.reset_stats()
    proc = await start_delete(emulator, results)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert emulator.environments() == []
    assert emulator.stats()["requests"] == total - before
    final = records(log, partial=True)
    assert Counter(r["name"] for r in final) == {f"e{i}": 1 for i in range(total)}
    assert {r["status"] for r in final} == {"deleted"}


async def start_delete(emulator: Emulator, results: Path) -> asyncio.subprocess.Process:
    """``provisioner delete --yes`` as a child process, as a user or a cron job starts it."""
    return await start_cli(
        "delete", "--from", results, "--api-url", emulator.url, "--yes",
        "--concurrency", "2", "--rate", "0", "--backoff", "0",
    )  # fmt: skip


def test_after_run_update_the_converged_ones_this_log_created_are_torn_down_too(
    live_emulator, write_jobs, tmp_path, capsys
):
    """The walkthrough: run, edit, run --update, delete: all four go, the updated one too."""
    specs = make_specs(3)
    results = tmp_path / "results.jsonl"
    assert cli(live_emulator, "run", write_jobs(specs), "--results", results) == 0
    specs[0]["metadata"] = {"team": "edited"}
    jobs = write_jobs([*specs, *make_specs(1, prefix="new")])
    assert cli(live_emulator, "run", jobs, "--results", results, "--update") == 0
    updated = [r for r in records(results) if r["status"] == "updated"]
    assert [(r["name"], r.get("created_earlier")) for r in updated] == [
        (specs[0]["name"], True)
    ]
    capsys.readouterr()
    assert cli(live_emulator, "delete", "--from", results, "--yes") == 0
    assert "will delete 4 environments created by" in capsys.readouterr().err
    assert by_name(live_emulator) == {}


def test_an_environment_found_there_and_then_updated_needs_include_existing(
    live_emulator, write_jobs, tmp_path, capsys
):
    """An environment this log never created stays, even once --update converged it."""
    specs = make_specs(2)
    assert (
        cli(
            live_emulator,
            "run",
            write_jobs(specs[:1]),
            "--results",
            tmp_path / "other.jsonl",
        )
        == 0
    )
    specs[0]["metadata"] = {"team": "edited"}
    results = tmp_path / "results.jsonl"
    assert (
        cli(live_emulator, "run", write_jobs(specs), "--results", results, "--update")
        == 0
    )
    statuses = {
        r["name"]: (r["status"], r.get("created_earlier")) for r in records(results)
    }
    assert statuses == {
        specs[0]["name"]: ("updated", None),
        specs[1]["name"]: ("created", None),
    }
    capsys.readouterr()
    assert cli(live_emulator, "delete", "--from", results, "--yes") == 0
    assert set(by_name(live_emulator)) == {specs[0]["name"]}
    argv = ("--from", results, "--yes", "--include-existing")
    assert cli(live_emulator, "delete", *argv) == 0
    assert by_name(live_emulator) == {}
