"""What scripts read: ``-`` for stdin/stdout, ``--format json`` documents, messages naming real flags.

Every command is run as a user runs it (a child process, or ``main`` in this
process) against a live emulator or the test Redis; stdout is parsed as JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from provisioner.emulator import Emulator
from provisioner.queue.streams import JobQueue
from tests.helpers import (
    child_env,
    cli,
    make_specs,
    records,
    redis_args,
    run_cli,
    start_cli,
    start_worker,
)

ROOT = Path(__file__).parent.parent
MISTAKES = ROOT / "jobs" / "with-mistakes.jsonl"


def document(stdout: str) -> dict[str, Any]:
    """stdout as exactly one JSON document with a format_version."""
    data: dict[str, Any] = orjson.loads(stdout)
    assert data["format_version"] == 1
    return data


# --- "-" for stdin and stdout ---------------------------------------------------


def test_summary_dash_writes_the_summary_json_to_stdout(tmp_path, write_jobs):
    """run --summary - prints the summary as the one document on stdout, not a file named -."""
    jobs = write_jobs(make_specs(3))
    result = run_cli(
        "run", jobs, "--sandbox", "--rate", "0", "--no-progress",
        "--results", tmp_path / "results.jsonl", "--summary", "-",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout)
    assert summary["counts"]["created"] == 3
    assert summary["exit_code"] == 0
    assert not (tmp_path / "-").exists()


def test_summary_and_results_both_on_stdout_is_a_usage_error(tmp_path, write_jobs):
    """--summary - with --results - would mix two formats on stdout: one line, exit 2."""
    result = run_cli(
        "run", write_jobs(make_specs(1)), "--sandbox", "--results", "-", "--summary", "-",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--summary - and --results - would both write to stdout" in result.stderr
    assert result.stdout == ""


def test_report_dash_reads_the_result_log_from_stdin(tmp_path, write_jobs):
    """A result log piped into report - is read as a file would be."""
    jobs = write_jobs(make_specs(4))
    ran = run_cli(
        "run", jobs, "--sandbox", "--rate", "0", "--no-progress", "--results", "-",
        cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result = run_cli("report", "-", "--format", "json", input=ran.stdout)
    assert result.returncode == 0, result.stderr
    report = document(result.stdout)
    assert report["records"] == 4
    assert report["counts"]["created"] == 4
    assert report["files"] == ["-"]


def test_report_html_dash_writes_the_page_to_stdout(tmp_path, write_jobs):
    """report --html - prints the page itself on stdout, in place of the summary."""
    jobs = write_jobs(make_specs(2))
    results = tmp_path / "results.jsonl"
    ran = run_cli(
        "run", jobs, "--sandbox", "--rate", "0", "--no-progress", "--results", results
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result = run_cli("report", results, "--html", "-")
    assert result.returncode == 0, result.stderr
    assert result.stdout.lstrip().lower().startswith("<!doctype html>")
    assert "records:" not in result.stdout


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["plan", "jobs.jsonl"], "--token-file"),
        (["plan", "jobs.jsonl"], "--ca-file"),
        (["worker"], "--redis-password-file"),
        (["archive"], "--from"),
    ],
)
def test_a_flag_that_reads_a_file_refuses_dash(command, flag):
    """A flag that needs a real file says so for -, naming itself and its command's help."""
    result = run_cli(*command, flag, "-")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert line.startswith(
        f"provisioner: error: argument {flag}: expected a file, got -"
    )
    assert line.endswith(f"(see provisioner {command[0]} --help)")


# --- --format json ------------------------------------------------------------


def test_validate_json_lists_each_error_with_file_line_field_and_reason():
    """validate --format json prints one document with every error; stderr stays empty."""
    result = run_cli("validate", MISTAKES, "--format", "json")
    assert result.returncode == 2
    assert result.stderr == ""
    data = document(result.stdout)
    assert (data["valid"], data["total"], data["invalid"]) == (False, 11, 9)
    assert data["errors"][0] == {
        "source": str(MISTAKES),
        "line": 2,
        "column": None,
        "field": "config.networking",
        "reason": "expected an object, got string",
    }
    assert len(data["errors"]) == 9


def test_validate_json_of_valid_files(write_jobs):
    """A valid job file gives valid: true and exit 0."""
    result = run_cli("validate", write_jobs(make_specs(3)), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert document(result.stdout) | {"errors": []} == {
        "format_version": 1, "valid": True, "total": 3, "invalid": 0, "errors": [],
    }  # fmt: skip


async def test_enqueue_json_says_what_was_queued_and_skipped(
    redis: JobQueue, write_jobs
):
    """enqueue --format json names the stream and counts queued specs; invalid ones queue nothing."""
    result = run_cli(
        "enqueue", write_jobs(make_specs(5)), *redis_args(redis), "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    data = document(result.stdout)
    assert data["stream"] == redis.stream
    assert (data["queued"], data["skipped"], data["total"]) == (5, 0, 5)
    assert data["redis"].startswith("redis://")

    refused = run_cli("enqueue", MISTAKES, *redis_args(redis), "--format", "json")
    assert refused.returncode == 2
    data = document(refused.stdout)
    assert (data["queued"], data["skipped"], data["invalid"]) == (0, 11, 9)
    assert data["errors"][-1]["field"] == "metdata"
    assert (await redis.status("provisioner")).length == 5


async def test_worker_json_prints_its_summary_when_it_stops(
    redis: JobQueue, live_emulator: Emulator, write_jobs
):
    """worker --exit-when-empty --format json ends with one document: its counts and exit code."""
    queued = run_cli("enqueue", write_jobs(make_specs(3)), *redis_args(redis))
    assert queued.returncode == 0, queued.stderr
    worker = start_worker(
        redis, live_emulator, "--exit-when-empty", "--format", "json", name="w-json"
    )
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    data = document(out)
    assert data["counts"]["created"] == 3
    assert (data["stream"], data["consumer"]) == (redis.stream, "w-json")
    assert (data["dead_lettered"], data["exit_code"]) == (0, 0)


def test_worker_json_with_results_on_stdout_is_a_usage_error():
    """--format json and --results - cannot share stdout: one line, exit 2, nothing read."""
    result = run_cli("worker", "--format", "json", "--results", "-")
    assert result.returncode == 2
    assert "--format json and --results - would both write to stdout" in result.stderr


@pytest.mark.usefixtures("cli_env")
def test_teardown_json_prints_the_teardown_summary(
    live_emulator: Emulator, write_jobs, tmp_path, capsys
):
    """delete --format json prints what was deleted; run again, everything is skipped."""
    results = tmp_path / "results.jsonl"
    assert (
        cli(live_emulator, "run", write_jobs(make_specs(3)), "--results", results) == 0
    )
    capsys.readouterr()
    args = ("--from", results, "--yes", "--format", "json")
    assert cli(live_emulator, "delete", *args) == 0
    data = document(capsys.readouterr().out)
    assert data["action"] == "delete"
    assert data["counts"] == {"deleted": 3, "failed": 0, "skipped": 0, "interrupted": 0}
    assert (data["total"], data["exit_code"]) == (3, 0)
    assert data["results"] == str(tmp_path / "results.delete.jsonl")
    assert live_emulator.environments() == []

    assert cli(live_emulator, "delete", *args) == 0
    again = document(capsys.readouterr().out)
    assert again["counts"]["skipped"] == 3
    assert again["counts"]["deleted"] == 0


# --- messages name the command's own flags --------------------------------------


def test_an_unknown_option_points_to_the_subcommands_help():
    """A typo after a command names that command's --help, not the top-level one."""
    result = run_cli("plan", "jobs.jsonl", "--sandbox")
    assert result.returncode == 2
    assert result.stderr == (
        "provisioner: error: unknown option --sandbox (see provisioner plan --help)\n"
    )


def test_a_token_flag_hint_names_token_file_only_where_it_exists():
    """--token on run suggests --token-file; on enqueue (no token at all) it is just unknown."""
    on_run = run_cli("run", "jobs.jsonl", "--token=x")
    assert "set QODER_PAT or use --token-file (see provisioner run --help)" in (
        on_run.stderr
    )
    on_enqueue = run_cli("enqueue", "jobs.jsonl", "--token=x")
    assert on_enqueue.stderr == (
        "provisioner: error: unknown option --token (see provisioner enqueue --help)\n"
    )


@pytest.mark.parametrize(
    ("command", "hint"),
    [("plan", ""), ("run", " (or use --sandbox)")],
)
def test_a_missing_token_suggests_only_the_commands_own_flags(
    write_jobs, command, hint
):
    """Without a token, plan names QODER_PAT and --token-file; only run adds --sandbox."""
    env = {k: v for k, v in child_env().items() if k != "QODER_PAT"}
    result = run_cli(command, write_jobs(make_specs(1)), env=env)
    assert result.returncode == 2
    assert result.stderr == (
        f"provisioner: error: no API token: set QODER_PAT or pass --token-file{hint}\n"
    )


# --- the scrubber keeps prose ----------------------------------------------------


async def test_an_error_message_in_prose_is_recorded_unchanged(serve, tmp_path):
    """A server message that says basic, bearer, token and key is stored word for word."""
    message = (
        "Basic environment for payments: the bearer of this key has no token budget"
    )

    async def refuse(_: web.Request) -> web.StreamResponse:
        body = {"error": {"type": "invalid_request_error", "message": message}}
        return web.json_response(body, status=400)

    server = await serve(refuse)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(orjson.dumps(make_specs(1)[0]) + b"\n")
    results = tmp_path / "results.jsonl"
    proc = await start_cli(
        "run", jobs, "--api-url", server.url, "--results", results,
        "--no-progress", "--rate", "0", "--max-attempts", "1",
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 1, err
    (record,) = records(results)
    assert record["status"] == "failed"
    assert message in record["error"]["message"]
