"""The forecast of ``provisioner plan``: requests run --update would send, and their time.

The model is tested with plain values; the command runs in process against a live
emulator, and the run that follows the plan sends exactly the requests it foresaw.
"""

from __future__ import annotations

import orjson
import pytest

from provisioner.lifecycle.forecast import (
    PreviousRun,
    RequestCounts,
    duration_s,
    forecast,
    previous_run,
)
from tests.helpers import cli, make_specs, records

pytestmark = pytest.mark.usefixtures("cli_env")


# --- the model, with plain values --------------------------------------------


def test_requests_count_creates_name_checks_updates_and_skip_settled_specs():
    """A create is one request, an existing name one more (answered 409), a drift one
    update on top; a spec the log settles sends nothing."""
    requests = RequestCounts()
    for action in ("create", "create", "update", "unchanged", "conflict"):
        requests.add(action, settled=False)
    requests.add("unchanged", settled=True)
    requests.list_page = 2
    assert (requests.create, requests.name_check, requests.update) == (2, 3, 1)
    assert (requests.skipped, requests.writes, requests.total) == (1, 6, 8)


def test_time_is_bounded_by_the_rate_and_by_concurrency_over_latency():
    """Writes go at min(rate, concurrency / latency); pages one after the other."""
    requests = RequestCounts(create=40, list_page=2)
    assert duration_s(requests, rate_per_s=20, concurrency=8, latency_s=None) == (
        pytest.approx(40 / 20 + 2 / 20)
    )
    # 4 in flight at 0.5 s each: 8 a second, slower than the rate of 20.
    assert duration_s(requests, rate_per_s=20, concurrency=4, latency_s=0.5) == (
        pytest.approx(40 / 8 + 2 * 0.5)
    )
    assert duration_s(requests, rate_per_s=0, concurrency=4, latency_s=None) is None
    assert duration_s(requests, rate_per_s=0, concurrency=4, latency_s=0.1) == (
        pytest.approx(40 / 40 + 2 * 0.1)
    )


def test_auto_rate_gives_a_range_and_unknown_latency_a_lower_bound():
    """--rate auto: from concurrency/latency to its start rate; no latency: at least."""
    requests = RequestCounts(create=100)
    known = PreviousRun(records=10, rate_per_s=50.0, latency_ms=100.0)
    auto = forecast(
        requests, rate_per_s=0, is_adaptive=True, concurrency=8, previous=known
    )
    assert auto.seconds_min == pytest.approx(100 / 80)
    assert auto.seconds_max == pytest.approx(100 / 20)
    assert auto.seconds_at_previous_rate == pytest.approx(100 / 50)
    blind = forecast(
        requests, rate_per_s=10, is_adaptive=False, concurrency=8, previous=None
    )
    assert (blind.seconds, blind.is_lower_bound, blind.latency_ms) == (10.0, True, None)


def test_the_previous_run_is_the_last_run_id_that_sent_requests():
    """Its rate is its requests over its span, its latency its quickest one-request record;
    imported records (no request) and earlier runs do not count."""
    old = {
        "run_id": "a",
        "attempts": 1,
        "duration_ms": 1.0,
        "started_at": "2026-12-01T00:00:00Z",
        "finished_at": "2026-12-01T00:00:09Z",
    }
    ours = [
        {
            "run_id": "b",
            "attempts": 1,
            "duration_ms": 30.0,
            "started_at": "2026-12-07T00:00:00Z",
            "finished_at": "2026-12-07T00:00:01Z",
        },
        {
            "run_id": "b",
            "attempts": 3,
            "duration_ms": 90.0,
            "started_at": "2026-12-07T00:00:01Z",
            "finished_at": "2026-12-07T00:00:02Z",
        },
    ]
    imported = {"run_id": "c", "attempts": 0, "duration_ms": 0.0}
    previous = previous_run([old, *ours, imported])
    assert previous == PreviousRun(records=2, rate_per_s=2.0, latency_ms=30.0)
    assert previous_run([imported]) is None


# --- against the emulator ------------------------------------------------------


def plan_forecast(emulator, capsys, *args) -> dict:
    """The forecast of ``plan --format json`` with ``args``."""
    capsys.readouterr()
    assert cli(emulator, "plan", *args, "--format", "json", rate=None) == 0
    forecast: dict = orjson.loads(capsys.readouterr().out)["forecast"]
    return forecast


def test_the_forecast_matches_the_plan_and_the_run_that_follows(
    live_emulator, write_jobs, tmp_path, capsys
):
    """Without a log: every spec's create at --rate, latency unknown (a lower bound);
    with the log: settled specs skipped, the previous run's latency and rate used,
    and run --update then sends exactly the requests foreseen."""
    specs = make_specs(6)
    results = tmp_path / "results.jsonl"
    fresh = plan_forecast(live_emulator, capsys, write_jobs(specs[:4]), "--rate", "10")
    assert fresh["requests"] == {
        "create": 4,
        "name_check": 0,
        "update": 0,
        "list_page": 0,
        "total": 4,
    }
    assert (fresh["latency_ms"], fresh["is_lower_bound"]) == (None, True)
    assert fresh["seconds"] == pytest.approx(4 / 10)
    assert cli(live_emulator, "run", write_jobs(specs[:4]), "--results", results) == 0

    drifted = [{**specs[0], "description": "edited"}, *specs[1:]]
    jobs = write_jobs(drifted)
    args = ("--results", results, "--rate", "10", "--concurrency", "2")
    planned = plan_forecast(live_emulator, capsys, jobs, *args)
    assert planned["requests"] == {
        "create": 2,
        "name_check": 1,
        "update": 1,
        "list_page": 1,
        "total": 5,
    }
    assert (planned["skipped"], planned["concurrency"], planned["rate"]) == (3, 2, 10.0)
    latency_s = planned["latency_ms"] / 1000
    assert latency_s > 0
    assert planned["is_lower_bound"] is False
    expected = 4 / min(10, 2 / latency_s) + max(latency_s, 1 / 10)
    assert planned["seconds"] == pytest.approx(expected, abs=0.002)
    assert planned["previous_rate_per_s"] > 0

    auto = plan_forecast(
        live_emulator, capsys, jobs, "--results", results, "--rate", "auto"
    )
    assert auto["seconds"] is None
    assert 0 < auto["seconds_min"] <= auto["seconds_max"]

    live_emulator.reset_stats()
    assert cli(live_emulator, "run", jobs, "--results", results, "--update") == 0
    assert live_emulator.stats()["requests"] == planned["requests"]["total"]
    assert sorted(r["status"] for r in records(results)) == [
        "created",
        "created",
        "created",
        "created",
        "created",
        "updated",
    ]


def test_the_text_plan_ends_with_the_forecast(live_emulator, write_jobs, capsys):
    """The text plan says the requests, the rate and concurrency, and that latency is unknown."""
    assert cli(live_emulator, "plan", write_jobs(make_specs(3)), "--rate", "2") == 0
    out = capsys.readouterr().out
    assert "Forecast (run --update): 3 requests: 3 creates," in out
    assert (
        "At --rate 2/s with --concurrency 8 and latency unknown (no --results): " in out
    )
    assert "at least 1.5 s." in out
