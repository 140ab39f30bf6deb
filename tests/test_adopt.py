"""``provisioner import``: environments made outside provisioner come under its result log.

The decisions are tested with plain values; the command runs in process against a
live emulator whose environments were created directly through its API (not by
provisioner), and whose admin stats count every request it served.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from provisioner.emulator import Emulator
from provisioner.lifecycle.adopt import (
    AdoptCounts,
    adopt,
    record,
    render,
    render_totals,
)
from provisioner.results.lock import LogLock
from provisioner.spec import Spec, spec_key
from tests.helpers import TEST_TOKEN, cli, make_specs, records

pytestmark = pytest.mark.usefixtures("cli_env")

ENV_ID = "env_" + "0" * 31 + "1"
AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def call(emulator: Emulator, method: str, path: str, body: object = None) -> Any:
    """One request to the emulator's API, as a user's own script would send it."""
    request = urllib.request.Request(  # noqa: S310 - the test emulator's loopback URL
        f"{emulator.url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {TEST_TOKEN}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - as above
        return json.loads(answer.read())


def create_directly(emulator: Emulator, bodies: list[dict[str, Any]]) -> list[str]:
    """Create each environment through the API, not through provisioner; their ids."""
    return [call(emulator, "POST", "/environments", body)["id"] for body in bodies]


def as_spec(body: dict[str, Any], line: int = 1) -> Spec:
    return Spec(body["name"], body, spec_key(body), "jobs.jsonl", line, line - 1)


def import_lines(out: str) -> dict[str, str]:
    """Name -> action of every spec line of the text output."""
    lines = [line.split() for line in out.splitlines() if line[:1] in "+=-!"]
    return {words[2]: words[1] for words in lines}


# --- decisions, with plain values --------------------------------------------


def test_each_spec_is_imported_recorded_missing_or_archived():
    """Found: import (with drift); settled in the log: recorded; absent: missing;
    archived: skipped unless included."""
    spec = as_spec({"name": "a", "config": {"type": "cloud"}, "description": "x"})
    env = {"id": ENV_ID, "name": "a", "config": {"type": "cloud"}, "description": "y"}
    found = adopt(spec, env)
    assert (found.action, found.id, found.drift) == ("import", ENV_ID, ("description",))
    assert adopt(spec, None).action == "missing"
    assert adopt(spec, env, last=("exists", spec.key)).action == "recorded"
    assert adopt(spec, env, last=("failed", spec.key)).action == "import"
    assert adopt(spec, env, last=("exists", "other-key")).action == "import"
    archived = {**env, "archived_at": "2026-11-29T12:00:00Z"}
    assert adopt(spec, archived).action == "archived"
    included = adopt(spec, archived, include_archived=True)
    assert (included.action, included.archived) == ("import", True)


def test_an_imported_record_reads_as_runs_exists_record():
    """The record is exists, bound to the target, with the spec's key, no request sent."""
    spec = as_spec({"name": "a", "config": {"type": "cloud"}, "description": "x"})
    env = {"id": ENV_ID, "name": "a", "config": {"type": "cloud"}}
    data = record(adopt(spec, env), target="https://api", at=AT).to_dict()
    assert data["status"] == "exists"
    assert (data["id"], data["target"], data["spec_key"]) == (
        ENV_ID,
        "https://api",
        spec.key,
    )
    assert (data["attempts"], data["http_status"], data["error"]) == (0, None, None)
    assert data["drift"] == ["description"]
    counts = AdoptCounts()
    counts.add(adopt(spec, env))
    counts.add(adopt(spec, None))
    assert counts.to_dict() == {
        "import": 1,
        "recorded": 0,
        "missing": 1,
        "archived": 0,
        "drifted": 1,
    }


def test_the_text_lines_say_the_drift_and_why_a_spec_is_not_written():
    """An import line lists its drift; missing and archived lines say why nothing is written."""
    spec = as_spec({"name": "a", "config": {"type": "cloud"}, "description": "x"})
    env = {"id": ENV_ID, "name": "a", "config": {"type": "cloud"}}
    assert render(adopt(spec, env)) == (
        f"+ import   a  {ENV_ID}  jobs.jsonl:1  drift: description"
    )
    assert render(adopt(spec, None)).endswith(
        "(no environment has this name: run creates it)"
    )
    archived = adopt(spec, {**env, "archived_at": "2026-11-29T12:00:00Z"})
    assert "(archived: skipped (--include-archived records it))" in render(archived)
    counts = AdoptCounts(imported=2, drifted=1, missing=1)
    assert render_totals(counts, into="r.jsonl") == [
        "Import: 2 recorded as exists in r.jsonl (1 drifted), 0 already there, "
        "1 without an environment, 0 archived skipped (3 specs).",
        "run --update converges the drifted environments in place.",
        "run creates the specs without an environment.",
    ]


# --- end to end against the emulator -------------------------------------------


def test_imported_environments_plan_as_nothing_to_do(
    live_emulator, write_jobs, tmp_path, capsys
):
    """Environments made outside provisioner (over a page of them) are imported with
    GETs only; then plan --detailed-exitcode exits 0, and a second import adds nothing."""
    specs = make_specs(105)
    create_directly(live_emulator, specs)
    jobs = write_jobs(specs)
    results = tmp_path / "adopted.jsonl"
    live_emulator.reset_stats()
    assert cli(live_emulator, "import", jobs, "--into", results) == 0
    out = capsys.readouterr().out
    assert set(import_lines(out).values()) == {"import"}
    assert "Import: 105 recorded as exists" in out
    stats = live_emulator.stats()
    assert stats["creations"] == 0
    assert set(stats["by_status"]) == {"200"}
    assert stats["requests"] == 2  # two pages of the list, nothing else
    logged = records(results)
    assert [r["status"] for r in logged] == ["exists"] * 105
    assert {r["target"] for r in logged} == {live_emulator.url}
    assert cli(live_emulator, "plan", jobs, "--detailed-exitcode") == 0
    capsys.readouterr()
    assert cli(live_emulator, "import", jobs, "--into", results) == 0
    assert "Import: 0 recorded as exists" in capsys.readouterr().out
    assert len(records(results)) == 105


def test_import_then_run_update_then_archive_take_the_environments_over(
    live_emulator, write_jobs, tmp_path, capsys
):
    """A drifted one is recorded with its drift, plan shows it, run --update fixes it
    with one update, and archive --include-existing tears every one down; a spec
    without an environment is listed, an archived environment skipped."""
    specs = make_specs(3)
    outside = [*specs[:2], {**specs[2], "metadata": {"team": "someone-else"}}]
    ids = create_directly(live_emulator, outside)
    (old_id,) = create_directly(
        live_emulator, [{"name": "old", "config": {"type": "cloud"}}]
    )
    call(live_emulator, "POST", f"/environments/{old_id}/archive")
    existing = write_jobs(specs, name="existing.jsonl")
    jobs = write_jobs(
        [
            *specs,
            {"name": "new", "config": {"type": "cloud"}},
            {"name": "old", "config": {"type": "cloud"}},
        ]
    )
    results = tmp_path / "adopted.jsonl"
    assert (
        cli(live_emulator, "import", jobs, "--into", results, "--format", "json") == 0
    )
    document = orjson.loads(capsys.readouterr().out)
    assert document["format_version"] == 1
    assert document["counts"] == {
        "import": 3,
        "recorded": 0,
        "missing": 1,
        "archived": 1,
        "drifted": 1,
    }
    by_name = {line["name"]: line for line in document["specs"]}
    assert by_name["team-00002"]["drift"] == ["metadata.team"]
    assert (by_name["new"]["action"], by_name["old"]["action"]) == (
        "missing",
        "archived",
    )
    logged = {r["name"]: r for r in records(results)}
    assert set(logged) == {"team-00000", "team-00001", "team-00002"}
    assert logged["team-00002"]["drift"] == ["metadata.team"]

    assert cli(live_emulator, "plan", existing, "--detailed-exitcode") == 2
    assert "~ update    team-00002" in capsys.readouterr().out
    live_emulator.reset_stats()
    assert cli(live_emulator, "run", existing, "--results", results, "--update") == 0
    assert live_emulator.stats()["creations"] == 0
    statuses = {r["name"]: r["status"] for r in records(results)}
    assert statuses == {
        "team-00000": "exists",
        "team-00001": "exists",
        "team-00002": "updated",
    }
    assert cli(live_emulator, "plan", existing, "--detailed-exitcode") == 0

    capsys.readouterr()
    assert (
        cli(live_emulator, "archive", "--from", results, "--include-existing", "--yes")
        == 0
    )
    archived = {e["id"] for e in live_emulator.environments() if e.get("archived_at")}
    assert archived == {*ids, old_id}


def test_import_replaces_a_failed_record_and_keeps_what_run_created(
    live_emulator, write_jobs, tmp_path, capsys
):
    """A name whose last record failed is imported in its place (one record per spec);
    a spec run created is already recorded and left as it is."""
    specs = make_specs(2)
    jobs = write_jobs(specs[:1])
    results = tmp_path / "results.jsonl"
    assert cli(live_emulator, "run", jobs, "--results", results) == 0
    (made_id,) = create_directly(live_emulator, specs[1:])
    failed = {
        **records(results)[0],
        "name": specs[1]["name"],
        "status": "failed",
        "id": None,
        "spec_key": spec_key(specs[1]),
    }
    with Path(results).open("ab") as fh:
        fh.write(orjson.dumps(failed) + b"\n")
    capsys.readouterr()
    assert cli(live_emulator, "import", write_jobs(specs), "--into", results) == 0
    assert import_lines(capsys.readouterr().out) == {
        "team-00000": "recorded",
        "team-00001": "import",
    }
    logged = records(results)
    assert [(r["name"], r["status"]) for r in logged] == [
        ("team-00000", "created"),
        ("team-00001", "exists"),
    ]
    assert logged[1]["id"] == made_id


def test_import_needs_into_and_sends_nothing_for_an_invalid_spec(
    live_emulator, write_jobs, tmp_path, capsys
):
    """No --into is a usage error; an invalid spec is listed and nothing is sent."""
    jobs = write_jobs(make_specs(1))
    assert cli(live_emulator, "import", jobs) == 2
    assert "--into is required" in capsys.readouterr().err
    live_emulator.reset_stats()
    bad = write_jobs([{"name": "x"}], name="bad.jsonl")
    assert cli(live_emulator, "import", bad, "--into", tmp_path / "r.jsonl") == 2
    assert "nothing was imported" in capsys.readouterr().err
    assert live_emulator.stats()["requests"] == 0


def test_a_log_locked_by_another_run_is_a_usage_error(
    live_emulator, write_jobs, tmp_path, capsys
):
    """While another run holds the result log's lock, import writes nothing and exits 2."""
    results = tmp_path / "results.jsonl"
    with LogLock(str(results), command="provisioner run"):
        assert (
            cli(live_emulator, "import", write_jobs(make_specs(1)), "--into", results)
            == 2
        )
    assert "is locked" in capsys.readouterr().err
    assert not results.exists()
