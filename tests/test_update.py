"""``run --update``: environments that drifted from their spec are updated in place.

Against real emulators over HTTP: the client's update call, the pipeline built
directly, and ``run`` in process (with injected faults), checked through the
result log, the summary and the emulator's own records.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from provisioner.api.client import ApiClient, open_session
from provisioner.cli.main import main
from provisioner.core.pipeline import Pipeline
from provisioner.emulator import Emulator, EmulatorConfig
from provisioner.errors import ApiError, ConflictError
from provisioner.pacing.limiter import Unlimited
from provisioner.pacing.retry import RetryBudget, RetryPolicy
from provisioner.pacing.stopping import StopController
from provisioner.redact import Secret
from provisioner.settings import ApiSettings
from provisioner.spec import Spec, spec_key
from tests.helpers import (
    CLOUD,
    TEST_TOKEN,
    Caller,
    Serve,
    Server,
    ThreadedEmulator,
    cli,
    make_specs,
    records,
)


def records_by_name(path: Path) -> dict[str, dict[str, Any]]:
    """Name -> record of a result log, checking that each name has one record."""
    lines = records(path)
    names = Counter(r["name"] for r in lines)
    assert set(names.values()) == {1}, names
    return {r["name"]: r for r in lines}


def archive(emulator: Emulator, env_id: str) -> None:
    """Archive an environment through the emulator's API."""
    request = urllib.request.Request(  # noqa: S310 - the test emulator's loopback URL
        f"{emulator.url}/environments/{env_id}/archive",
        method="POST",
        headers={"Authorization": f"Bearer {TEST_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - as above
        assert answer.status == 200


def by_name(emulator: Emulator) -> dict[str, dict[str, Any]]:
    return {env["name"]: env for env in emulator.environments()}


# --- the client ----------------------------------------------------------------


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[ApiClient]:
    settings = ApiSettings(token=Secret(TEST_TOKEN), base_url=emulator.url)
    async with open_session(concurrency=2, timeout_s=5) as session:
        yield ApiClient(session, settings=settings)


async def test_an_update_changes_the_environment_in_place(client: ApiClient):
    """update() posts the patch to the environment and answers it as it is now."""
    body = {"name": "a", "config": CLOUD, "metadata": {"team": "a", "old": "x"}}
    created = await client.create(body, idempotency_key=spec_key(body))
    patch = {"description": "new", "metadata": {"team": "b", "old": None}}
    updated = await client.update(created.env_id, patch, idempotency_key="k-1")
    assert (updated.http_status, updated.environment["id"]) == (200, created.env_id)
    assert updated.environment["description"] == "new"
    assert updated.environment["metadata"] == {"team": "b"}
    assert updated.request_id


async def test_a_retried_update_is_replayed_not_applied_again(
    client: ApiClient, emulator: Emulator
):
    """The same key and body a second time get the first answer back (a lost answer is safe to retry)."""
    body = {"name": "a", "config": CLOUD}
    created = await client.create(body, idempotency_key=spec_key(body))
    first = await client.update(
        created.env_id, {"description": "x"}, idempotency_key="k"
    )
    again = await client.update(
        created.env_id, {"description": "x"}, idempotency_key="k"
    )
    assert again.environment == first.environment
    assert emulator.stats()["replays"] == 1


async def test_update_errors_are_translated_like_create_errors(
    client: ApiClient, api: Caller
):
    """An unknown id is a 404 ApiError, an archived one a 409 ConflictError, a bad body a 400."""
    body = {"name": "a", "config": CLOUD}
    created = await client.create(body, idempotency_key=spec_key(body))
    with pytest.raises(ApiError) as missing:
        await client.update(
            "env_" + "f" * 32, {"description": "x"}, idempotency_key="1"
        )
    assert (missing.value.status, missing.value.error_type) == (404, "not_found_error")
    with pytest.raises(ApiError) as bad:
        await client.update(created.env_id, {"metadata": {"k": 1}}, idempotency_key="2")
    assert (bad.value.status, bad.value.error_type) == (400, "invalid_request_error")
    answer = await api("POST", f"/environments/{created.env_id}/archive")
    assert answer.status == 200
    with pytest.raises(ConflictError) as archived:
        await client.update(created.env_id, {"description": "x"}, idempotency_key="3")
    assert archived.value.status == 409
    with pytest.raises(ValueError, match="not an environment id"):
        await client.update("../environments", {}, idempotency_key="4")


# --- the pipeline, built directly -------------------------------------------------


def spec(name: str, **fields: Any) -> Spec:
    body = {"name": name, "config": CLOUD, **fields}
    return Spec(name, body, spec_key(body), "jobs.jsonl", 1, 0)


@pytest.fixture
async def make_pipeline(
    emulator: Emulator, fast_policy: RetryPolicy
) -> AsyncIterator[Callable[..., Pipeline]]:
    settings = ApiSettings(token=Secret(TEST_TOKEN), base_url=emulator.url)
    async with open_session(concurrency=4, timeout_s=5) as session:

        def make(**options: Any) -> Pipeline:
            return Pipeline(
                client=ApiClient(session, settings=settings),
                policy=fast_policy,
                budget=RetryBudget(),
                limiter=Unlimited(),
                stop=StopController(grace_s=1),
                target=emulator.url,
                **options,
            )

        yield make


async def test_the_pipeline_reports_drift_and_updates_only_when_asked(
    make_pipeline: Callable[..., Pipeline], emulator: Emulator
):
    """Without update a drifted spec is `exists` with its drift; with it, `updated`, same id."""
    created = await make_pipeline().provision(spec("a", metadata={"team": "a"}))
    assert created is not None
    edited = spec("a", description="new", metadata={"team": "a"})
    reported = await make_pipeline().provision(edited)
    assert reported is not None
    assert (reported.status, reported.id, reported.drift) == (
        "exists",
        created.id,
        ("description",),
    )
    assert emulator.environments()[0]["description"] == ""
    updated = await make_pipeline(update=True).provision(edited)
    assert updated is not None
    assert (updated.status, updated.id, updated.drift) == (
        "updated",
        created.id,
        ("description",),
    )
    assert (updated.attempts, updated.http_status) == (2, 200)
    again = await make_pipeline(update=True).provision(edited)
    assert again is not None
    assert (again.status, again.drift) == ("exists", ())
    assert len(emulator.environments()) == 1


# --- run --update, in process -----------------------------------------------------


def edited_job(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every other spec edited (description, metadata key removed, or config), two new."""
    edited = [dict(s) for s in specs]
    for i, body in enumerate(edited):
        if i % 6 == 0:
            body["description"] = f"edited {i}"
        elif i % 6 == 2:
            body["metadata"] = {}
        elif i % 6 == 4:
            body["config"] = {**CLOUD, "packages": {"pip": ["httpx"]}}
    return edited + make_specs(2, prefix="new")


def _an_hour_earlier(env: dict[str, Any]) -> None:
    stamp = datetime.fromisoformat(env["created_at"].replace("Z", "+00:00"))
    earlier = (stamp - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    env["created_at"] = env["updated_at"] = earlier


def seed_an_hour_ago(
    tmp_path: Path, write_jobs: Callable[..., Path], specs: list[dict[str, Any]]
) -> str:
    """Run ``specs`` against an emulator that keeps a state file, then date that state
    an hour back (an earlier job made these environments, not this run)."""
    state = tmp_path / "state.json"
    config = EmulatorConfig(token=TEST_TOKEN, state_path=str(state))
    with ThreadedEmulator(config) as emulator:
        jobs = write_jobs(specs, name="seed.jsonl")
        assert cli(emulator, "run", jobs, "--results", tmp_path / "seed-r.jsonl") == 0
    data = orjson.loads(state.read_bytes())
    for scope in data["store"]["scopes"].values():
        for env in scope["environments"]:
            _an_hour_earlier(env)
    for stored in data["idempotency"]:  # the answers a replay gives
        answer = orjson.loads(stored["body"])
        _an_hour_earlier(answer)
        stored["body"] = orjson.dumps(answer).decode()
    state.write_bytes(orjson.dumps(data))
    return str(state)


@pytest.mark.usefixtures("cli_env")
def test_run_without_update_reports_drift_and_changes_nothing(
    live_emulator, write_jobs, tmp_path, capsys
):
    """A drifted spec is `exists` with a `drift` field, the summary says so, exit 0, nothing sent but reads."""
    specs = make_specs(4)
    assert (
        cli(live_emulator, "run", write_jobs(specs), "--results", tmp_path / "a") == 0
    )
    before = live_emulator.environments()
    edited = edited_job(specs)[:4]
    results = tmp_path / "b.jsonl"
    capsys.readouterr()
    assert cli(live_emulator, "run", write_jobs(edited), "--results", results) == 0
    log = records_by_name(results)
    assert log["team-00000"]["drift"] == ["description"]
    assert log["team-00002"]["drift"] == ["metadata.team"]
    assert "drift" not in log["team-00001"]
    assert {r["status"] for r in log.values()} == {"exists"}
    assert live_emulator.environments() == before
    err = capsys.readouterr().err
    assert "2 exist with another description, config or metadata" in err
    assert "run --update updates them in place" in err


@pytest.mark.usefixtures("cli_env")
def test_run_update_converges_a_drifted_job_in_place_under_faults(
    make_live_emulator, write_jobs, tmp_path, capsys
):
    """With 503s, resets after commit and latency, run --update updates every drifted
    environment once in place (same id), creates the new ones once, and a plan afterwards
    exits 0."""
    specs = make_specs(24)
    emulator = make_live_emulator(
        state_path=seed_an_hour_ago(tmp_path, write_jobs, specs)
    )
    ids = {name: env["id"] for name, env in by_name(emulator).items()}
    job = write_jobs(edited_job(specs))
    faults = emulator.faults
    faults.seed, faults.retry_after_s, faults.latency_ms = 11, None, 2
    faults.error_503, faults.reset_after_commit = 0.15, 0.15
    results, summary = tmp_path / "r.jsonl", tmp_path / "s.json"
    argv = [
        "--update",
        "--results",
        results,
        "--summary",
        summary,
        "--max-attempts",
        "20",
    ]
    assert cli(emulator, "run", job, *argv) == 0
    log = records_by_name(results)
    drifted = {f"team-{i:05d}" for i in range(24) if i % 2 == 0}
    for name, record in log.items():
        expected = (
            "created"
            if name.startswith("new")
            else "updated"
            if name in drifted
            else "exists"
        )
        assert record["status"] == expected, record
        assert record["id"] == ids.get(name, record["id"])
    counts = orjson.loads(summary.read_bytes())["counts"]
    assert (counts["created"], counts["updated"], counts["exists"]) == (2, 12, 12)
    stats = emulator.stats()
    assert stats["faults"]["reset_after_commit"] > 0
    assert stats["faults"]["error_503"] > 0
    assert set(emulator.creation_counts().values()) == {1}
    assert len(emulator.environments()) == 26
    faults.error_503 = faults.reset_after_commit = 0.0
    capsys.readouterr()
    assert cli(emulator, "plan", job, "--detailed-exitcode") == 0
    assert "26 unchanged, 0 conflicts" in capsys.readouterr().out


@pytest.mark.usefixtures("cli_env")
def test_run_update_resumes_a_log_that_only_reported_drift(
    live_emulator, write_jobs, tmp_path, capsys
):
    """After a run without --update, run --update on the same log updates only the drifted specs."""
    specs = make_specs(4)
    assert (
        cli(live_emulator, "run", write_jobs(specs), "--results", tmp_path / "a") == 0
    )
    job = write_jobs(edited_job(specs)[:4])
    results = tmp_path / "b.jsonl"
    assert cli(live_emulator, "run", job, "--results", results) == 0
    capsys.readouterr()
    assert cli(live_emulator, "run", job, "--results", results, "--update") == 0
    assert "0 created, 2 updated, 0 exists" in capsys.readouterr().err
    log = records_by_name(results)
    assert [log[f"team-0000{i}"]["status"] for i in range(4)] == [
        "updated",
        "exists",
        "updated",
        "exists",
    ]
    assert cli(live_emulator, "run", job, "--results", results, "--update") == 0
    assert "4 skipped (already done)" in capsys.readouterr().err


@pytest.mark.usefixtures("cli_env")
def test_an_edit_reverted_and_made_again_is_applied_each_time(
    live_emulator, write_jobs, tmp_path
):
    """A→B→A→B with fresh logs: each run --update leaves the environment as its spec says
    (a replayed create is compared with the environment as it is now, and an update
    sent again to a changed environment is a new request, not a replay)."""
    a = make_specs(1)
    b = [{**a[0], "description": "B"}]
    jobs = {"a": write_jobs(a, name="a.jsonl"), "b": write_jobs(b, name="b.jsonl")}
    for step, version in enumerate("abab"):
        results = tmp_path / f"r{step}.jsonl"
        assert (
            cli(live_emulator, "run", jobs[version], "--update", "--results", results)
            == 0
        )
        (env,) = live_emulator.environments()
        assert env["description"] == ("B" if version == "b" else "")
        status = records_by_name(results)["team-00000"]["status"]
        assert status == ("created" if step == 0 else "updated")
        assert cli(live_emulator, "plan", jobs[version], "--detailed-exitcode") == 0


@pytest.mark.usefixtures("cli_env")
def test_an_archived_environment_stays_exists_even_with_update(
    live_emulator, write_jobs, tmp_path, capsys
):
    """An archived name is `exists` with `archived` and its drift; no update is sent."""
    specs = make_specs(1)
    assert (
        cli(live_emulator, "run", write_jobs(specs), "--results", tmp_path / "a") == 0
    )
    (env,) = live_emulator.environments()
    archive(live_emulator, env["id"])
    results = tmp_path / "b.jsonl"
    job = write_jobs([{**specs[0], "description": "new"}])
    capsys.readouterr()
    assert cli(live_emulator, "run", job, "--update", "--results", results) == 0
    record = records_by_name(results)["team-00000"]
    assert (record["status"], record["id"]) == ("exists", env["id"])
    assert (record["drift"], record["archived"]) == (["description"], True)
    assert live_emulator.environments()[0]["description"] == ""
    assert "1 exists archived" in capsys.readouterr().err


@pytest.mark.usefixtures("cli_env")
def test_update_and_on_conflict_fail_exclude_each_other(write_jobs, capsys):
    """--update with --on-conflict fail is a usage error naming both."""
    code = main(
        [
            "run",
            str(write_jobs(make_specs(1))),
            "--sandbox",
            "--update",
            "--on-conflict",
            "fail",
        ]
    )
    assert code == 2
    assert (
        "--update and --on-conflict fail exclude each other" in capsys.readouterr().err
    )


# --- a server that refuses, or forgets ------------------------------------------

OLD_ID = "env_" + "a" * 32
OLD_ENV = {
    "id": OLD_ID,
    "name": "a",
    "description": "",
    "config": CLOUD,
    "metadata": {},
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}


def json_error(status: int, error_type: str, message: str) -> web.Response:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return web.json_response(body, status=status)


@contextlib.asynccontextmanager
async def pipeline_for(
    server: Server, policy: RetryPolicy, **options: Any
) -> AsyncIterator[Pipeline]:
    settings = ApiSettings(token=Secret(TEST_TOKEN), base_url=server.url)
    async with open_session(concurrency=2, timeout_s=5) as session:
        yield Pipeline(
            client=ApiClient(session, settings=settings),
            policy=policy,
            budget=RetryBudget(),
            limiter=Unlimited(),
            stop=StopController(grace_s=1),
            target=server.url,
            **options,
        )


async def test_an_update_the_server_refuses_is_a_failed_record_with_the_id(
    serve: Serve, fast_policy: RetryPolicy
):
    """A 400 to the update (a server that cannot change that field) fails the spec, naming the id and the drift."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            return web.json_response({"data": [OLD_ENV], "has_more": False})
        if request.path.endswith("/environments"):
            return json_error(409, "conflict_error", "name 'a' already exists")
        return json_error(400, "invalid_request_error", "config cannot change")

    server = await serve(handler)
    async with pipeline_for(server, fast_policy, update=True) as pipeline:
        result = await pipeline.provision(spec("a", description="new"))
    assert result is not None
    assert (result.status, result.id, result.drift) == (
        "failed",
        OLD_ID,
        ("description",),
    )
    assert result.error is not None
    assert result.error.type == "invalid_request_error"
    assert (result.attempts, result.http_status) == (2, 400)
    assert server.requests[-1] == f"POST /api/environments/{OLD_ID}"


async def test_a_replayed_create_whose_environment_cannot_be_read_is_compared_as_answered(
    serve: Serve, fast_policy: RetryPolicy
):
    """When the GET after a replay fails, the replayed answer is what drift is computed from."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            return json_error(404, "not_found_error", "gone")
        return web.json_response(
            {**OLD_ENV, "description": "old"},
            status=201,
            headers={"Idempotent-Replayed": "true"},
        )

    server = await serve(handler)
    async with pipeline_for(server, fast_policy) as pipeline:
        result = await pipeline.provision(spec("a"))
    assert result is not None
    assert (result.status, result.id, result.drift) == (
        "exists",
        OLD_ID,
        ("description",),
    )
    assert server.requests[-1] == f"GET /api/environments/{OLD_ID}"
