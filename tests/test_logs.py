"""Logs as a user's pipeline reads them: with ``--log-format json`` stderr is JSON events
only, each carrying the run's ``run_id`` (the one in every record), and console colours
follow ``NO_COLOR``/``FORCE_COLOR`` on a real pseudo-terminal.

Every run is a child process, as a shell or a log shipper would start it.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

import provisioner
from tests.helpers import (
    CLI,
    TEST_TOKEN,
    child_env,
    finish,
    make_specs,
    records,
    redis_args,
    run_cli,
    spawn_cli,
    start_worker,
    wait_until_blocked_on_fifo,
)

pytestmark = pytest.mark.usefixtures("cli_env")

FAULTS = "error_503=0.2,reset_after_commit=0.1,seed=7"
ESC = "\x1b["


def events(stderr: str) -> list[dict[str, Any]]:
    """Every line of ``stderr`` as a JSON object; fails on the first that is not one."""
    parsed = []
    for line in stderr.splitlines():
        event = orjson.loads(line)
        assert isinstance(event, dict), line
        assert isinstance(event.get("event"), str), line
        parsed.append(event)
    return parsed


def named(parsed: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in parsed if e["event"] == name]


def json_run(
    jobs: Path, results: Path, *extra: str | Path
) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli(
        "run", jobs, "--sandbox", "--results", results, "--log-format", "json",
        "--backoff", "0", "--rate", "0", *extra,
        cwd=jobs.parent,
    )  # fmt: skip
    return done.returncode, events(done.stderr)


def test_every_stderr_line_of_a_json_run_with_faults_is_one_json_event(
    write_jobs, tmp_path
):
    """A run against a faulty sandbox: stderr holds JSON events only, the summary among them."""
    jobs = write_jobs(make_specs(30))
    results = tmp_path / "results.jsonl"
    summary = tmp_path / "summary.json"
    code, parsed = json_run(
        jobs, results, "--sandbox-faults", FAULTS, "--summary", summary
    )
    (finished,) = named(parsed, "run.finished")
    assert finished["exit_code"] == code
    written = orjson.loads(summary.read_bytes())
    assert {k: finished[k] for k in written} == written
    assert finished["retries"] > 0
    counts = finished["counts"]
    assert counts["created"] + counts["failed"] == 30
    assert finished["message"].startswith(f"30 specs: {counts['created']} created")
    (where,) = named(parsed, "results.written")
    assert where["results"] == str(results)
    assert not any(e["event"].startswith("command.") for e in parsed)


def test_the_summary_event_is_written_at_any_log_level(write_jobs, tmp_path):
    """--log-level error hides info events, not the summary: as its text line, it is always there."""
    jobs = write_jobs(make_specs(2))
    code, parsed = json_run(jobs, tmp_path / "r.jsonl", "--log-level", "error")
    assert code == 0
    assert [e["event"] for e in parsed] == ["run.finished", "results.written"]


def test_every_event_and_every_record_of_a_run_carry_the_same_run_id(
    write_jobs, tmp_path
):
    """One run_id per run: in each JSON event on stderr and each record of its log."""
    jobs = write_jobs(make_specs(5))
    results = tmp_path / "results.jsonl"
    _, first = json_run(jobs, results, "--sandbox-faults", FAULTS)
    (run_id,) = {e["run_id"] for e in first}
    assert len(run_id) == 32
    assert {r["run_id"] for r in records(results)} == {run_id}

    _, again = json_run(jobs, results, "--no-resume")
    (second,) = {e["run_id"] for e in again}
    assert second != run_id
    assert {r["run_id"] for r in records(results)} == {second}
    (aside,) = named(again, "results.set_aside")
    assert aside["results"] == str(results)
    assert Path(aside["moved_to"]).exists()


def test_a_log_written_before_run_ids_resumes_as_before(write_jobs, tmp_path):
    """Records without run_id (an older provisioner's) are trusted on resume: nothing is redone."""
    jobs = write_jobs(make_specs(4))
    results = tmp_path / "results.jsonl"
    json_run(jobs, results)
    old = [{k: v for k, v in r.items() if k != "run_id"} for r in records(results)]
    results.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in old))
    code, parsed = json_run(jobs, results)
    assert code == 0
    (finished,) = named(parsed, "run.finished")
    assert finished["counts"]["skipped"] == 4
    assert finished["counts"]["created"] == 0
    assert records(results) == old


def test_invalid_specs_are_json_events_with_and_without_skip_invalid(
    write_jobs, tmp_path
):
    """Invalid specs: refused (exit 2) or skipped, every stderr line a JSON event either way."""
    specs: list[Any] = make_specs(3)
    specs[1]["config"] = "cloud"
    jobs = write_jobs(specs)
    results = tmp_path / "results.jsonl"

    code, refused = json_run(jobs, results)
    assert code == 2
    (rejected,) = named(refused, "spec.rejected")
    assert rejected["level"] == "error"
    assert rejected["source"] == f"{jobs}:2"
    assert rejected["field"] == "config"
    (verdict,) = named(refused, "run.refused")
    assert (verdict["invalid"], verdict["total"]) == (1, 3)

    code, skipped = json_run(jobs, results, "--skip-invalid")
    assert code == 2
    (finished,) = named(skipped, "run.finished")
    assert finished["counts"]["invalid"] == 1
    assert finished["exit_code"] == 2
    (invalid,) = [r for r in records(results) if r["status"] == "invalid"]
    (rejected,) = named(skipped, "spec.rejected")
    assert (rejected["name"], rejected["source"]) == (
        invalid["name"],
        invalid["source"],
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--summary", "results.jsonl"],  # a usage error found after the logs are set up
        ["--rate", "0", "--concurrency", "300"],  # a settings warning, then a run
    ],
)
def test_usage_errors_and_warnings_are_json_events(write_jobs, tmp_path, argv):
    """A usage error or a settings warning after --log-format json is a JSON event too."""
    jobs = write_jobs(make_specs(1))
    done = run_cli(
        "run", jobs, "--sandbox", "--results", "results.jsonl", "--log-format", "json",
        *argv, cwd=tmp_path,
    )  # fmt: skip
    parsed = events(done.stderr)
    said = [e for e in parsed if e["event"] in ("command.failed", "settings.warned")]
    assert said, done.stderr
    assert all(e["level"] in ("error", "warning") for e in said)
    assert not said[0]["message"].startswith(("error:", "warning:"))


def test_a_missing_token_is_a_json_event(write_jobs, tmp_path):
    """No token with --log-format json: one JSON error event naming QODER_PAT, exit 2."""
    jobs = write_jobs(make_specs(1))
    env = {k: v for k, v in child_env().items() if k != "QODER_PAT"}
    done = run_cli("run", jobs, "--log-format", "json", env=env, cwd=tmp_path)
    assert done.returncode == 2
    (event,) = events(done.stderr)
    assert event["event"] == "command.failed"
    assert "QODER_PAT" in event["message"]
    assert event["error_type"] == "ConfigError"


def test_a_teardown_in_json_is_json_events_with_its_run_id(
    live_emulator, write_jobs, tmp_path
):
    """archive --log-format json: JSON events only, its own run_id in events and records."""
    jobs = write_jobs(make_specs(3))
    results = tmp_path / "results.jsonl"
    common = ["--api-url", live_emulator.url, "--backoff", "0", "--rate", "0"]
    created = run_cli("run", jobs, "--results", results, *common, "--no-progress")
    assert created.returncode == 0, created.stderr
    done = run_cli(
        "archive", "--from", results, "--yes", "--log-format", "json", *common,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    parsed = events(done.stderr)
    (run_id,) = {e["run_id"] for e in parsed}
    (planned,) = named(parsed, "teardown.planned")
    assert (planned["action"], planned["todo"]) == ("archive", 3)
    (finished,) = named(parsed, "teardown.finished")
    assert (finished["done"], finished["failed"], finished["exit_code"]) == (3, 0, 0)
    log = tmp_path / "results.archive.jsonl"
    assert {r["run_id"] for r in records(log)} == {run_id}
    assert {r["run_id"] for r in records(results)} != {run_id}


async def test_a_worker_process_has_one_run_id_in_its_events_and_records(
    redis, live_emulator, write_jobs, tmp_path
):
    """A JSON-logging worker: JSON lines only, one run_id, the same in every record it settles."""
    queued = run_cli("enqueue", write_jobs(make_specs(6)), *redis_args(redis))
    assert queued.returncode == 0, queued.stderr
    local = tmp_path / "worker.jsonl"
    worker = start_worker(
        redis, live_emulator, "--exit-when-empty", "--results", str(local)
    )
    code, err = finish(worker)
    assert code == 0, err
    parsed = events(err)
    (run_id,) = {e["run_id"] for e in parsed}
    (finished,) = named(parsed, "worker.finished")
    assert finished["counts"]["created"] == 6
    assert {r["run_id"] for r in records(local)} == {run_id}
    assert {r["run_id"] for r in await redis.results()} == {run_id}


def test_a_failed_spec_logs_the_fields_its_record_holds(
    live_emulator, write_jobs, tmp_path
):
    """env.failed names name, id, http_status, attempts and error_type as the record does."""
    jobs = write_jobs(make_specs(2))
    common = ["--api-url", live_emulator.url, "--backoff", "0", "--rate", "0"]
    first = run_cli("run", jobs, "--results", tmp_path / "a.jsonl", *common)
    assert first.returncode == 0, first.stderr
    done = run_cli(
        "run", jobs, "--results", tmp_path / "b.jsonl", "--on-conflict", "fail",
        "--log-format", "json", *common,
    )  # fmt: skip
    assert done.returncode == 1
    failed = {e["name"]: e for e in named(events(done.stderr), "env.failed")}
    for record in records(tmp_path / "b.jsonl"):
        event = failed[record["name"]]
        for field in ("name", "id", "http_status", "attempts", "run_id"):
            assert event[field] == record[field], field
        assert event["error_type"] == record["error"]["type"]
        assert event["error"] == record["error"]["message"]


def test_an_interrupted_run_says_so_in_json(tmp_path):
    """SIGINT while the job FIFO has no writer: one JSON command.interrupted event, exit 130."""
    fifo = tmp_path / "jobs.jsonl"
    os.mkfifo(fifo)
    proc = spawn_cli(
        "run", fifo, "--sandbox", "--log-format", "json", cwd=tmp_path, stdout=None
    )
    wait_until_blocked_on_fifo(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    (event,) = events(stderr)
    assert event["event"] == "command.interrupted"
    assert event["message"] == "interrupted; nothing was left half-done"
    assert len(event["run_id"]) == 32


def test_console_summary_lines_stay_text(write_jobs, tmp_path):
    """--log-format console keeps the summary as `provisioner: ...` lines."""
    jobs = write_jobs(make_specs(2))
    done = run_cli(
        "run", jobs, "--sandbox", "--results", "r.jsonl", "--log-format", "console",
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    said = [s for s in done.stderr.splitlines() if s.startswith("provisioner: ")]
    assert said[0].startswith("provisioner: 2 specs: 2 created, 0 updated")
    assert said[-1] == "provisioner: results in r.jsonl"
    assert ESC not in done.stderr


# --- colours ---------------------------------------------------------------------


def on_a_terminal(jobs: Path, **env: str) -> str:
    """A sandbox run with stderr on a pseudo-terminal; what the terminal showed."""
    primary, secondary = pty.openpty()
    argv = [
        *CLI,
        "run",
        str(jobs),
        "--sandbox",
        "--results",
        "r.jsonl",
        "--no-progress",
    ]
    try:
        proc = subprocess.Popen(
            argv, cwd=jobs.parent, env=child_env(**env), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=secondary,
        )  # fmt: skip
        os.close(secondary)
        shown = _read_all(primary)
        assert proc.wait(timeout=60) == 0, shown
    finally:
        os.close(primary)
    return shown


def _read_all(fd: int) -> str:
    """Everything written to the terminal until its last writer closes it."""
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, "the terminal fell silent"
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def without(*names: str) -> dict[str, str]:
    """``NO_COLOR``/``FORCE_COLOR`` unset (the host's must not steer the test)."""
    return dict.fromkeys(names, "")


def test_log_lines_on_a_terminal_are_coloured(write_jobs):
    """On a terminal the console log lines carry ANSI colours, the summary lines none."""
    shown = on_a_terminal(
        write_jobs(make_specs(2)), **without("NO_COLOR", "FORCE_COLOR")
    )
    assert ESC in shown
    assert "sandbox.started" in shown
    assert "provisioner: results in r.jsonl" in shown


def test_no_color_turns_the_colours_off_on_a_terminal(write_jobs):
    """NO_COLOR=1 on a terminal: the same log lines, not one escape sequence."""
    shown = on_a_terminal(write_jobs(make_specs(2)), NO_COLOR="1", FORCE_COLOR="")
    assert "sandbox.started" in shown
    assert ESC not in shown


def test_force_color_colours_console_logs_off_a_terminal(write_jobs, tmp_path):
    """FORCE_COLOR=1 with stderr in a pipe: console log lines are coloured; without it, not."""
    jobs = write_jobs(make_specs(1))
    argv = ["run", jobs, "--sandbox", "--results", "r.jsonl", "--log-format", "console"]
    forced = run_cli(*argv, cwd=tmp_path, env=child_env(FORCE_COLOR="1", NO_COLOR=""))
    plain = run_cli(*argv, cwd=tmp_path, env=child_env(FORCE_COLOR="", NO_COLOR=""))
    assert ESC in forced.stderr
    assert ESC not in plain.stderr
    json_forced = run_cli(
        *argv[:-2], "--log-format", "json", cwd=tmp_path,
        env=child_env(FORCE_COLOR="1", NO_COLOR=""),
    )  # fmt: skip
    events(json_forced.stderr)  # JSON is never coloured


# --- the library -------------------------------------------------------------------


async def test_each_library_run_writes_its_own_run_id_in_its_records(
    emulator, tmp_path
):
    """Provisioner.run(): one fresh run_id per call, in every record of its result log."""
    results = tmp_path / "results.jsonl"
    bodies = make_specs(3)
    async with provisioner.Provisioner(
        api_url=emulator.url, token=TEST_TOKEN, rate=0
    ) as p:
        await p.run(bodies[:2], results=str(results))
        first = {r["run_id"] for r in records(results)}
        await p.run(bodies, results=str(results))
    (one,) = first
    by_name = {r["name"]: r["run_id"] for r in records(results)}
    assert by_name[bodies[0]["name"]] == one  # kept from the first run
    assert by_name[bodies[2]["name"]] not in (None, one)
