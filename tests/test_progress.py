"""Progress: the bar on a terminal, ``run.progress`` log events elsewhere, never both."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import unicodedata

import orjson
import pytest

from provisioner.cli.main import main
from provisioner.emulator.faults import FaultPlan
from provisioner.observe.progress import ProgressBar, ProgressLog, progress_mode
from tests.helpers import (
    FakeTime,
    child_env,
    finish,
    make_specs,
    redis_args,
    result,
    run_cli,
    spawn_cli,
    start_worker,
)


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_bar_shows_the_counts_by_status_on_a_terminal() -> None:
    """On a terminal the bar draws done/total and created=N failed=N."""
    screen = _Terminal()
    with ProgressBar(total=3, stream=screen, enabled=True) as bar:
        for status in ("created", "failed", "created"):
            bar.advance(result(status, status))
        bar._progress.refresh()  # draw now instead of at the next tick
    drawn = screen.getvalue()
    assert "3/3" in drawn
    assert "created=2 failed=1" in drawn


def test_off_a_terminal_or_disabled_the_bar_writes_nothing() -> None:
    """A pipe or --no-progress gets no bar and no control characters."""
    for stream, enabled in ((io.StringIO(), True), (_Terminal(), False)):
        with ProgressBar(total=2, stream=stream, enabled=enabled) as bar:
            bar.advance(result("a"))
            bar.advance(result("b"))
        assert stream.getvalue() == ""


# --- progress events off a terminal -------------------------------------------


def _advance(progress: ProgressLog, *statuses: str) -> None:
    for i, status in enumerate(statuses):
        progress.advance(result(f"{status}-{i}", status))


def test_an_event_gives_done_total_rate_retries_failures_and_eta() -> None:
    """After 4 of 10 in 2 s with 2 retries: 40 %, 2/s, ETA 3 s, counts by status."""
    clock = FakeTime()
    progress = ProgressLog(total=10, interval_s=5, retries=lambda: 2, clock=clock)
    _advance(progress, "created", "created", "failed", "exists")
    clock.now += 2
    assert progress.snapshot(clock.now) == {
        "done": 4,
        "total": 10,
        "percent": 40.0,
        "created": 2,
        "updated": 0,
        "exists": 1,
        "failed": 1,
        "invalid": 0,
        "retries": 2,
        "rate_per_s": 2.0,
        "recent_rate_per_s": 2.0,
        "elapsed_s": 2.0,
        "eta_s": 3.0,
        "final": False,
    }


def test_the_recent_rate_counts_only_since_the_previous_event(logs) -> None:
    """A run that slows down shows it in recent_rate_per_s while rate_per_s averages."""
    clock = FakeTime()
    progress = ProgressLog(total=10, interval_s=5, clock=clock)
    _advance(progress, *["created"] * 4)
    clock.now += 2
    progress.report()
    _advance(progress, "created")
    clock.now += 2
    progress.report()
    assert [(e["done"], e["rate_per_s"], e["recent_rate_per_s"]) for e in logs] == [
        (4, 2.0, 2.0),
        (5, 1.25, 0.5),
    ]
    assert logs[-1]["eta_s"] == 4.0
    assert {(e["event"], e["log_level"]) for e in logs} == {("run.progress", "info")}


def test_the_eta_is_unknown_before_the_first_record_and_zero_when_done() -> None:
    """No record yet: eta_s is null; all done: 0 (also for an empty run)."""
    clock = FakeTime()
    progress = ProgressLog(total=2, interval_s=5, clock=clock)
    clock.now += 3
    assert progress.snapshot(clock.now)["eta_s"] is None
    _advance(progress, "created", "invalid")
    assert progress.snapshot(clock.now)["eta_s"] == 0.0
    empty = ProgressLog(total=0, interval_s=5, clock=clock).snapshot(clock.now)
    assert (empty["percent"], empty["eta_s"]) == (100.0, 0.0)


def test_without_a_total_the_event_has_no_percent_or_eta() -> None:
    """A source without an end (a queue) reports done and rates only."""
    clock = FakeTime()
    progress = ProgressLog(total=None, interval_s=5, clock=clock)
    _advance(progress, "created")
    clock.now += 1
    fields = progress.snapshot(clock.now)
    assert fields["done"] == 1
    assert fields["rate_per_s"] == 1.0
    assert not {"total", "percent", "eta_s"} & fields.keys()


async def test_leaving_the_run_logs_one_final_event(logs) -> None:
    """The end of a run is one event with final=true, even between two ticks."""
    clock = FakeTime()
    with ProgressLog(total=1, interval_s=3600, clock=clock) as progress:
        _advance(progress, "created")
        clock.now += 1
    assert [(e["event"], e["done"], e["final"]) for e in logs] == [
        ("run.progress", 1, True)
    ]


@pytest.mark.parametrize(
    ("enabled", "stream", "log_format", "mode"),
    [
        (True, _Terminal(), "auto", "bar"),
        (True, _Terminal(), "console", "bar"),
        (True, _Terminal(), "json", "events"),
        (True, io.StringIO(), "auto", "events"),
        (True, io.StringIO(), "console", "events"),
        (False, _Terminal(), "auto", "off"),
        (False, io.StringIO(), "json", "off"),
    ],
)
def test_a_terminal_gets_the_bar_and_anything_else_the_events(
    enabled, stream, log_format, mode
) -> None:
    """Never both: the bar on a terminal (unless its logs are JSON), else events; --no-progress: neither."""
    assert progress_mode(enabled=enabled, stream=stream, log_format=log_format) == mode


# --- end to end ---------------------------------------------------------------

#: 30 specs at 12 requests a second: a run of about 2.5 s.
_SLOW_RUN = ("--sandbox", "--rate", "12", "--progress-interval", "0.25")


def _control_characters(text: str) -> set[str]:
    return {c for c in text if unicodedata.category(c) == "Cc" and c != "\n"}


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_run_logging_to_a_file_writes_progress_events_and_no_control_characters(
    write_jobs, tmp_path, log_format
) -> None:
    """With stderr in a file, progress comes as log lines (no bar, no ESC or CR), the last one final."""
    jobs = write_jobs(make_specs(30))
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as err:
        code = run_cli(
            "run", jobs, *_SLOW_RUN, "--log-format", log_format,
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err, timeout=60,
        ).returncode  # fmt: skip
    assert code == 0
    text = stderr.read_bytes().decode()
    assert _control_characters(text) == set()
    assert "provisioning" not in text
    if log_format == "console":
        assert text.count("run.progress") >= 2
        return
    events = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    progress = [e for e in events if e["event"] == "run.progress"]
    assert len(progress) >= 2
    assert [e["final"] for e in progress] == [False] * (len(progress) - 1) + [True]
    assert progress[-1] | {"elapsed_s": 0, "rate_per_s": 0} == progress[-1] | {
        "done": 30,
        "total": 30,
        "percent": 100.0,
        "created": 30,
        "failed": 0,
        "eta_s": 0.0,
        "level": "info",
        "elapsed_s": 0,
        "rate_per_s": 0,
    }


@pytest.mark.slow
def test_a_run_on_a_terminal_draws_the_bar_and_logs_no_progress_events(
    write_jobs, tmp_path
) -> None:
    """On a pseudo-terminal the bar is drawn and no run.progress event is written."""
    jobs = write_jobs(make_specs(30))
    leader, follower = pty.openpty()
    with spawn_cli(
        "run", jobs, *_SLOW_RUN,
        cwd=tmp_path, env=child_env(TERM="xterm-256color"), text=False,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
    ) as child:  # fmt: skip
        os.close(follower)
        screen = _read_until_closed(leader)
        assert child.wait(timeout=60) == 0
    assert b"provisioning" in screen
    assert b"30 created" in screen
    assert b"run.progress" not in screen


def _read_until_closed(fd: int) -> bytes:
    """Everything written to a pseudo-terminal until its last writer closes it."""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(fd)
    return b"".join(chunks)


def test_no_progress_logs_no_progress_events(
    live_emulator, write_jobs, tmp_path, capsys, cli_env
) -> None:
    """--no-progress turns the events off too; without it a run off a terminal logs the final one."""
    jobs = write_jobs(make_specs(3))
    common = ["run", str(jobs), "--api-url", live_emulator.url, "--log-format", "json"]
    assert main([*common, "--results", str(tmp_path / "a.jsonl")]) == 0
    assert '"event":"run.progress"' in capsys.readouterr().err
    assert main([*common, "--results", str(tmp_path / "b.jsonl"), "--no-progress"]) == 0
    assert "run.progress" not in capsys.readouterr().err


def test_a_progress_interval_of_zero_is_a_usage_error(
    capsys, cli_env, tmp_path
) -> None:
    """--progress-interval must be above 0: one line, exit 2, nothing run."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("")
    assert main(["run", str(jobs), "--progress-interval", "0"]) == 2
    assert "--progress-interval" in capsys.readouterr().err


@pytest.mark.slow
def test_a_worker_off_a_terminal_logs_worker_progress_events(
    redis, make_live_emulator, write_jobs
):
    """A queue worker writing to a log file reports done, counts and rates (no total), then a final event."""
    emulator = make_live_emulator(faults=FaultPlan(latency_ms=20))
    jobs = write_jobs(make_specs(24))
    assert run_cli("enqueue", jobs, *redis_args(redis)).returncode == 0
    worker = start_worker(
        redis, emulator, "--exit-when-empty", "--concurrency", "2",
        "--rate", "12", "--progress-interval", "0.3",
    )  # fmt: skip
    code, err = finish(worker)
    assert code == 0, err
    events = [
        orjson.loads(line)
        for line in err.splitlines()
        if line.startswith("{") and '"worker.progress"' in line
    ]
    assert len(events) >= 2
    assert [e["final"] for e in events].count(True) == 1
    assert events[-1]["final"]
    assert events[-1]["done"] == 24
    assert events[-1]["created"] == 24
    assert "total" not in events[-1]
    assert "eta_s" not in events[-1]
    assert _control_characters(err) == set()
