"""``provisioner report``: the figures of known result logs, as text, JSON and an HTML page."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from provisioner.cli.main import main
from provisioner.report.figures import FAILURE_ROWS, ReportBuilder
from provisioner.report.html import render_html
from tests.helpers import missing

BASE = datetime(2026, 1, 1, tzinfo=UTC)
HOSTILE_NAME = '<script>alert("name")</script>'
HOSTILE_MESSAGE = "<img src=x onerror=alert(1)>"


def _time(at: datetime) -> str:
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def record(
    name: str | None,
    status: str,
    *,
    start_s: float,
    duration_ms: float,
    attempts: int = 1,
    error: tuple[str, str] | None = None,
    line: int = 1,
) -> dict[str, Any]:
    """A result record as `provisioner run` writes it."""
    started = BASE + timedelta(seconds=start_s)
    finished = started + timedelta(milliseconds=duration_ms)
    return {
        "name": name,
        "status": status,
        "id": None if error else f"env_{line:032x}",
        "attempts": attempts,
        "http_status": None if error is None else 503,
        "error": None if error is None else {"type": error[0], "message": error[1]},
        "source": f"a.jsonl:{line}",
        "started_at": _time(started),
        "finished_at": _time(finished),
        "duration_ms": duration_ms,
        "spec_key": None,
        "request_id": None,
        "target": "sandbox",
    }


# 6 created, 1 exists, 3 failed, 1 invalid; from 00:00:00 to 00:00:10.
KNOWN = [
    record(None, "invalid", start_s=0, duration_ms=0, attempts=0, line=1,
           error=("invalid_spec", "name: field required")),
    record("env-1", "created", start_s=1, duration_ms=100, line=2),
    record("env-2", "created", start_s=2, duration_ms=200, line=3),
    record("env-3", "created", start_s=3, duration_ms=300, attempts=3, line=4),
    record("env-4", "created", start_s=4, duration_ms=400, line=5),
    record("env-5", "exists", start_s=5, duration_ms=50, line=6),
    record("env-6", "failed", start_s=6, duration_ms=900, attempts=3, line=7,
           error=("http_503", "HTTP 503 with an empty body")),
    record("env-7", "failed", start_s=7, duration_ms=700, line=8,
           error=("conflict_error", "name taken")),
    record("env-8", "failed", start_s=8, duration_ms=800, attempts=3, line=9,
           error=("http_503", "HTTP 503 again")),
    record("env-9", "created", start_s=9, duration_ms=500, line=10),
    record("env-10", "created", start_s=9, duration_ms=1000, line=11),
]  # fmt: skip


def write_log(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return str(path)


@pytest.fixture
def known_log(tmp_path: Path) -> str:
    return write_log(tmp_path / "results.jsonl", KNOWN)


def test_terminal_report_shows_the_known_figures(known_log, capsys):
    """The terminal summary gives counts, attempts, percentiles, wall time, creates/s, errors and the slowest."""
    assert main(["report", known_log]) == 0
    out = capsys.readouterr().out
    assert "status:    6 created, 1 exists, 3 failed, 1 invalid\n" in out
    assert "attempts:  16 requests; 3 specs retried (6 retries), at most 3" in out
    assert "p50 400.0 ms, p95 1,000.0 ms, p99 1,000.0 ms, max 1,000.0 ms" in out
    assert "(10 records that sent a request)" in out
    assert "wall time: 10.0 s (0.60 creates/s)" in out
    errors = out.split("errors:")[1].split("slowest:")[0].splitlines()[1:]
    assert [line.split()[:3] for line in errors] == [
        ["2", "http_503", "a.jsonl:7:"],
        ["1", "conflict_error", "a.jsonl:8:"],
        ["1", "invalid_spec", "a.jsonl:1:"],
    ]
    slowest = out.split("slowest:\n")[1].splitlines()
    assert [line.split()[2] for line in slowest[:3]] == ["env-10", "env-6", "env-8"]
    assert len(slowest) == 10


def test_json_report_has_the_known_figures(known_log, capsys):
    """--format json prints the same figures for machines."""
    assert main(["report", known_log, "--format", "json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["records"] == 11
    assert data["counts"] == {
        "created": 6, "updated": 0, "exists": 1, "failed": 3,
        "invalid": 1, "archived": 0, "deleted": 0,
    }  # fmt: skip
    assert data["errors"][0] == {
        "type": "http_503",
        "count": 2,
        "source": "a.jsonl:7",
        "message": "HTTP 503 with an empty body",
    }
    assert data["error_total"] == 4
    assert data["attempts"] == {
        "total": 16, "retried_specs": 3, "retries": 6, "max_per_spec": 3,
    }  # fmt: skip
    latency = data["latency"]
    assert (latency["p50_ms"], latency["p95_ms"], latency["p99_ms"]) == (
        400,
        1000,
        1000,
    )
    assert (data["wall_s"], data["creates_per_s"]) == (10.0, 0.6)
    assert data["slowest"][0] == {
        "name": "env-10", "status": "created", "duration_ms": 1000.0,
        "attempts": 1, "source": "a.jsonl:11",
    }  # fmt: skip


def test_format_comes_from_the_environment(known_log, capsys, monkeypatch):
    """PROVISIONER_FORMAT=json sets --format, as every flag has its variable."""
    monkeypatch.setenv("PROVISIONER_FORMAT", "json")
    assert main(["report", known_log]) == 0
    assert orjson.loads(capsys.readouterr().out)["records"] == 11


def test_several_logs_add_up_and_their_gap_is_not_wall_time(tmp_path, capsys):
    """A run and its resume: records add up; wall time is the time the logs cover."""
    first = write_log(tmp_path / "run.jsonl", [KNOWN[1]])
    later = record("env-x", "created", start_s=100, duration_ms=1000, line=2)
    second = write_log(tmp_path / "resume.jsonl", [later])
    assert main(["report", first, second, "--format", "json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["counts"]["created"] == 2
    assert data["wall_s"] == 1.1
    assert data["files"] == [first, second]


def test_a_missing_log_is_one_line_and_exit_2(tmp_path, capsys):
    """A log that does not exist is named on one line of stderr; exit 2."""
    missing = tmp_path / "nope.jsonl"
    assert main(["report", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert str(missing) in captured.err


def test_a_line_that_is_not_a_record_is_exit_2(tmp_path, capsys):
    """A log holding something else is named with its line; exit 2."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"status": "created"}\nnot json\n{"status": "created"}\n')
    assert main(["report", str(path)]) == 2
    assert f"{path}:2:" in capsys.readouterr().err


def test_the_html_page_needs_no_network_and_escapes_the_log(tmp_path, capsys):
    """The page fetches nothing and shows hostile names and messages as text."""
    hostile = record(HOSTILE_NAME, "failed", start_s=1, duration_ms=5, line=3,
                     error=("http_503", HOSTILE_MESSAGE))  # fmt: skip
    log = write_log(tmp_path / "r.jsonl", [*KNOWN, hostile])
    page_path = tmp_path / "report.html"
    assert main(["report", log, "--html", str(page_path)]) == 0
    assert f"HTML report in {page_path}" in capsys.readouterr().err
    page = page_path.read_text()
    assert not re.search(r"(?i)<[^>]*\s(src|href)\s*=|url\(|@import|https?:", page)
    assert "Content-Security-Policy" in page
    assert HOSTILE_NAME not in page
    assert HOSTILE_MESSAGE not in page
    assert "&lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("<script>") == 1


def test_the_failures_table_is_capped_but_counted():
    """A log with more failures than the table holds says how many it shows of how many."""
    builder = ReportBuilder()
    for at in range(FAILURE_ROWS + 5):
        builder.add(record(f"f{at}", "failed", start_s=at / 100, duration_ms=1,
                           error=("timeout", "slow"), line=at))  # fmt: skip
    report = builder.finish(["big.jsonl"])
    assert len(report.failures) == FAILURE_ROWS
    assert report.error_total == FAILURE_ROWS + 5
    assert "the first 1,000 of 1,005" in render_html(report)


@pytest.fixture
def chromium() -> str:
    """Debian's chromium; missing, the test skips locally and fails in CI."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium is not installed (apt-get install chromium)")
    return found


def _dump_dom(chromium: str, url: str) -> str:
    done = subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    return done.stdout


def test_the_page_draws_its_charts_in_chromium(known_log, tmp_path, chromium):
    """Opened in headless Chromium, the page draws its four charts and its script sorts the table."""
    page_path = tmp_path / "report.html"
    assert (
        main(["report", known_log, "--html", str(page_path), "--format", "json"]) == 0
    )
    dom = _dump_dom(chromium, page_path.as_uri() + "#sort=-duration")
    assert 'data-charts="4"' in dom
    charts = re.findall(r'<svg class="chart" data-chart="(\w+)"', dom)
    assert charts == ["throughput", "errors", "latency", "status"]
    points = re.search(r'<polyline class="series" points="([^"]+)"', dom)
    assert points is not None
    assert len(points[1].split()) >= 10
    assert dom.count('class="bar"') >= 24 + 4
    assert 'data-sorted="duration:desc"' in dom
    rows = re.findall(r"<tr><td>([^<]*)</td><td>(failed|invalid)</td>", dom)
    assert [name for name, _ in rows] == ["env-6", "env-8", "env-7", ""]


def test_odd_fields_are_reported_without_a_crash(tmp_path, capsys):
    """Records with odd values (negative or missing durations, bad times, a bare error) still report."""
    odd = [
        {"status": "created", "attempts": 1, "duration_ms": -5, "started_at": "x"},
        {"status": "failed", "attempts": True, "error": "boom", "finished_at": 3},
        {"status": "failed", "attempts": 2, "error": {"message": "no type"}},
    ]
    assert main(["report", write_log(tmp_path / "odd.jsonl", odd)]) == 0
    out = capsys.readouterr().out
    assert "status:    1 created, 2 failed" in out
    assert "1  unknown" in out
