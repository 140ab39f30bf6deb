"""``provisioner plan``: what run would do, per spec and in total, with no write sent.

The decisions are tested with plain values; the command runs in process against
a live emulator over HTTP, whose admin stats count every request it served.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from provisioner.cli.main import main
from provisioner.emulator import Emulator
from provisioner.lifecycle.plan import (
    ARCHIVED_REASON,
    Change,
    PlanCounts,
    PlanExit,
    classify,
    plan_exit,
    render,
)
from provisioner.spec import Spec, spec_key
from tests.helpers import TEST_TOKEN, cli, make_specs

pytestmark = pytest.mark.usefixtures("cli_env")

ENV_ID = "env_" + "0" * 31 + "1"


def archive(emulator: Emulator, env_id: str) -> None:
    """Archive an environment through the emulator's API."""
    request = urllib.request.Request(  # noqa: S310 - the test emulator's loopback URL
        f"{emulator.url}/environments/{env_id}/archive",
        method="POST",
        headers={"Authorization": f"Bearer {TEST_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - as above
        assert answer.status == 200


def as_spec(body: dict[str, Any], line: int = 1) -> Spec:
    return Spec(body["name"], body, spec_key(body), "jobs.jsonl", line, line - 1)


def plan_lines(out: str) -> dict[str, str]:
    """Name -> action of every spec line of a text plan."""
    lines = [line.split() for line in out.splitlines() if line[:1] in "+~=!"]
    return {words[2]: words[1] for words in lines}


# --- decisions, with plain values --------------------------------------------


def test_each_spec_gets_the_action_run_would_take():
    """No environment: create; equal: unchanged; different: update with paths; archived: conflict."""
    spec = as_spec({"name": "a", "config": {"type": "cloud"}, "description": "x"})
    same = {"id": ENV_ID, "name": "a", "config": {"type": "cloud"}, "description": "x"}
    assert classify(spec, None) == Change("a", "create", "jobs.jsonl:1")
    assert classify(spec, same).action == "unchanged"
    drifted = classify(spec, {**same, "description": "y", "metadata": {"k": "v"}})
    assert (drifted.action, drifted.id) == ("update", ENV_ID)
    assert drifted.drift == ("description", "metadata.k")
    archived = classify(spec, {**same, "archived_at": "2026-11-29T12:00:00Z"})
    assert (archived.action, archived.reason) == ("conflict", ARCHIVED_REASON)
    assert classify(spec, {**same, "status": "archived"}).action == "conflict"


@pytest.mark.parametrize(
    ("counts", "detailed", "code"),
    [
        (PlanCounts(unchanged=3), True, PlanExit.OK),
        (PlanCounts(unchanged=3), False, PlanExit.OK),
        (PlanCounts(create=1), True, PlanExit.CHANGES),
        (PlanCounts(update=1), True, PlanExit.CHANGES),
        (PlanCounts(create=1, update=1), False, PlanExit.OK),
        (PlanCounts(create=1, conflict=1), True, PlanExit.ERROR),
        (PlanCounts(conflict=1), False, PlanExit.ERROR),
    ],
)
def test_exit_codes_follow_terraforms_detailed_exitcode(counts, detailed, code):
    """0 no changes, 2 changes pending (only with --detailed-exitcode), 1 a conflict."""
    assert plan_exit(counts, detailed=detailed) == code


def test_a_line_shows_sign_action_name_id_source_and_fields():
    """An update line names the environment and every field that differs."""
    change = Change("a\x1b", "update", "jobs.jsonl:3", ENV_ID, ("description",))
    assert render(change) == f"~ update    a\\x1b  {ENV_ID}  jobs.jsonl:3  description"
    assert render(Change("b", "create", "j:1")) == "+ create    b  -  j:1"


# --- the command, over HTTP ----------------------------------------------------


def drifted_job(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """specs[0] unchanged, specs[1] with a new description, specs[2] without its
    metadata, specs[3] with hosts in another case (still equal), and two new specs."""
    edited = [dict(spec) for spec in specs]
    edited[1]["description"] = "edited"
    edited[2].pop("metadata")
    edited[3]["config"] = {
        "type": "cloud",
        "networking": {"type": "limited", "allowed_hosts": ["B.example", "a.example"]},
    }
    return edited + make_specs(2, prefix="new")


def seeded(emulator: Emulator, write_jobs, tmp_path: Path) -> list[dict[str, Any]]:
    """Run four specs (the fourth limited to two hosts) and return them."""
    specs = make_specs(4)
    specs[3]["config"] = {
        "type": "cloud",
        "networking": {"type": "limited", "allowed_hosts": ["a.example", "b.example"]},
    }
    jobs = write_jobs(specs, name="seed.jsonl")
    assert cli(emulator, "run", jobs, "--results", tmp_path / "seed-results.jsonl") == 0
    return specs


def test_plan_counts_new_unchanged_and_drifted_specs_and_sends_no_write(
    live_emulator, write_jobs, tmp_path, capsys
):
    """Plan prints each spec's action and the totals, exits 2, and only reads the list."""
    specs = seeded(live_emulator, write_jobs, tmp_path)
    before = live_emulator.environments()
    jobs = write_jobs(drifted_job(specs))
    capsys.readouterr()
    live_emulator.reset_stats()
    assert cli(live_emulator, "plan", jobs, "--detailed-exitcode") == PlanExit.CHANGES
    out = capsys.readouterr().out
    assert plan_lines(out) == {
        "team-00000": "unchanged",
        "team-00001": "update",
        "team-00002": "update",
        "team-00003": "unchanged",
        "new-00000": "create",
        "new-00001": "create",
    }
    assert "  description\n" in out
    assert "  metadata.team\n" in out
    assert "Plan: 2 to create, 2 to update, 2 unchanged, 0 conflicts (6 specs)." in out
    stats = live_emulator.stats()
    assert (stats["requests"], stats["by_status"], stats["creations"]) == (
        1,
        {"200": 1},
        0,
    )
    assert live_emulator.environments() == before


def test_detailed_exitcode_is_0_once_nothing_would_change(
    live_emulator, write_jobs, tmp_path, capsys
):
    """After a run, planning the same job says no changes and exits 0; without
    --detailed-exitcode a plan with changes exits 0 too."""
    specs = seeded(live_emulator, write_jobs, tmp_path)
    assert cli(live_emulator, "plan", write_jobs(specs), "--detailed-exitcode") == 0
    assert "No changes: every environment matches its spec." in capsys.readouterr().out
    assert cli(live_emulator, "plan", write_jobs(drifted_job(specs))) == 0


def test_plan_json_is_one_document_for_scripts(
    live_emulator, write_jobs, tmp_path, capsys
):
    """--format json prints one JSON document: each spec's change, the counts and the target."""
    specs = seeded(live_emulator, write_jobs, tmp_path)
    jobs = write_jobs(drifted_job(specs))
    capsys.readouterr()
    assert cli(live_emulator, "plan", jobs, "--format", "json") == 0
    plan = orjson.loads(capsys.readouterr().out)
    assert plan["format_version"] == 1
    assert plan["target"] == live_emulator.url
    assert plan["counts"] == {"create": 2, "update": 2, "unchanged": 2, "conflict": 0}
    assert (plan["total"], plan["has_changes"]) == (6, True)
    by_name = {change["name"]: change for change in plan["specs"]}
    assert by_name["team-00001"]["drift"] == ["description"]
    assert by_name["team-00001"]["id"].startswith("env_")
    assert by_name["new-00000"] == {
        "name": "new-00000",
        "action": "create",
        "id": None,
        "drift": [],
        "reason": None,
        "source": f"{jobs}:5",
    }


def test_an_archived_name_is_a_conflict_and_plan_exits_1(
    live_emulator, write_jobs, tmp_path, capsys
):
    """An archived environment with a spec's name is a conflict: the plan is printed, exit 1."""
    specs = seeded(live_emulator, write_jobs, tmp_path)
    archive(live_emulator, live_emulator.environments()[0]["id"])
    capsys.readouterr()
    code = cli(live_emulator, "plan", write_jobs(specs), "--detailed-exitcode")
    assert code == PlanExit.ERROR
    out = capsys.readouterr().out
    assert plan_lines(out)["team-00000"] == "conflict"
    assert ARCHIVED_REASON in out
    assert "0 to update, 3 unchanged, 1 conflicts" in out


def test_invalid_specs_are_an_error_and_nothing_is_asked(
    live_emulator, write_jobs, capsys
):
    """An invalid spec lists its error, plans nothing, sends nothing, and exits 1."""
    specs: list[Any] = make_specs(2)
    specs[1]["config"] = "cloud"
    assert cli(live_emulator, "plan", write_jobs(specs), "--detailed-exitcode") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "config: expected an object" in captured.err
    assert "1 of 2 specs are invalid; nothing was planned" in captured.err
    assert live_emulator.stats()["requests"] == 0


def test_an_unreadable_job_file_is_an_error(live_emulator, tmp_path, capsys):
    """A job file that does not exist exits 1 (not 2: that means changes), with no plan."""
    code = cli(live_emulator, "plan", tmp_path / "nope.jsonl", "--detailed-exitcode")
    assert code == PlanExit.ERROR
    captured = capsys.readouterr()
    assert (captured.out, captured.err.count("\n")) == ("", 1)
    assert "nope.jsonl" in captured.err


def test_a_usage_error_exits_2_and_prints_no_plan(live_emulator, write_jobs, capsys):
    """A bad flag value is a usage error: one line on stderr, nothing on stdout, exit 2."""
    jobs = write_jobs(make_specs(1))
    assert cli(live_emulator, "plan", jobs, "--format", "yaml") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--format" in captured.err


def test_an_unreachable_api_is_an_error_not_a_plan(write_jobs, capsys):
    """When the list cannot be read, plan says so on one line and exits 1."""
    argv = ["plan", str(write_jobs(make_specs(1))), "--api-url", "http://127.0.0.1:9"]
    assert main([*argv, "--max-attempts", "1", "--detailed-exitcode"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error: cannot read the environments:" in captured.err
    assert TEST_TOKEN not in captured.err


def test_plan_reads_every_page_once_and_retries_a_failed_page(
    live_emulator, write_jobs, tmp_path, capsys
):
    """150 environments take two list pages; a 503 on a page is retried; still no write."""
    specs = make_specs(150)
    run_log = tmp_path / "r.jsonl"
    assert cli(live_emulator, "run", write_jobs(specs), "--results", run_log) == 0
    live_emulator.reset_stats()
    live_emulator.faults.error_503 = 1.0
    live_emulator.faults.retry_after_s = None
    jobs = write_jobs([*specs, *make_specs(1, prefix="new")])
    # The first request of every page fails, until the plan is lifted below.
    assert cli(live_emulator, "plan", jobs, "--max-attempts", "1") == 1
    live_emulator.faults.error_503 = 0.5
    live_emulator.faults.seed = 3
    live_emulator.reset_stats()
    capsys.readouterr()
    code = cli(live_emulator, "plan", jobs, "--max-attempts", "20")
    assert code == 0
    out = capsys.readouterr().out
    assert "Plan: 1 to create, 0 to update, 150 unchanged" in out
    stats = live_emulator.stats()
    assert stats["by_status"]["200"] == 2
    assert stats["faults"]["error_503"] == stats["requests"] - 2
    assert stats["creations"] == 0
