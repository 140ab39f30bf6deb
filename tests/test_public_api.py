"""The public Python API: what `import provisioner` exports, driven against the emulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import provisioner
from provisioner.emulator import Emulator
from tests.helpers import TEST_TOKEN, child_env, records

PUBLIC = [
    "ApiError",
    "AuthError",
    "ConfigError",
    "ConflictError",
    "ErrorInfo",
    "LockedError",
    "Provisioner",
    "ProvisionerError",
    "Result",
    "ResultLogError",
    "RetryPolicy",
    "RetryableApiError",
    "SpecError",
    "Status",
    "Summary",
    "TransportError",
    "__version__",
]


def body(name: str) -> dict[str, object]:
    return {"name": name, "config": {"type": "cloud"}, "metadata": {"team": name}}


def test_the_public_api_is_the_pinned_list():
    """`provisioner.__all__` is exactly the documented surface, and each name exists."""
    assert provisioner.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(provisioner, name) is not None


def test_every_exported_error_is_a_provisioner_error():
    """A caller can catch everything provisioner raises on purpose with one class."""
    errors = [getattr(provisioner, n) for n in PUBLIC if n.endswith("Error")]
    assert all(issubclass(e, provisioner.ProvisionerError) for e in errors)


async def test_run_creates_every_body_and_counts_each_status(
    emulator: Emulator, tmp_path: Path
):
    """`run(bodies, results=...)` creates each environment once and writes one record each."""
    results = tmp_path / "results.jsonl"
    bodies = [body(f"api-{i}") for i in range(5)]
    async with provisioner.Provisioner(
        api_url=emulator.url, token=TEST_TOKEN, concurrency=4, rate=0
    ) as p:
        summary = await p.run(bodies, results=str(results))
    assert summary.counts["created"] == 5
    assert sum(summary.counts.values()) == 5
    log = records(results)
    assert sorted(r["name"] for r in log) == [f"api-{i}" for i in range(5)]
    assert all(r["status"] == "created" and r["id"] for r in log)
    assert sorted(emulator.creation_counts().values()) == [1] * 5


async def test_a_second_run_of_the_same_log_resumes(emulator: Emulator, tmp_path: Path):
    """Bodies the result log already settled are skipped: nothing is sent twice."""
    results = str(tmp_path / "results.jsonl")
    bodies = [body(f"again-{i}") for i in range(3)]
    async with provisioner.Provisioner(
        api_url=emulator.url, token=TEST_TOKEN, rate=0
    ) as p:
        await p.run(bodies[:2], results=results)
        summary = await p.run(bodies, results=results)
    assert summary.counts["skipped"] == 2
    assert summary.counts["created"] == 1
    assert summary.requests == 1
    assert sorted(emulator.creation_counts().values()) == [1] * 3


async def test_invalid_bodies_and_repeated_names_are_recorded_not_sent(
    emulator: Emulator,
):
    """A body that breaks a rule, or repeats a name, is `invalid`; the rest are created."""
    bodies = [body("ok-1"), {"name": "bad", "config": {"type": "moon"}}, body("ok-1")]
    seen: list[provisioner.Result] = []
    async with provisioner.Provisioner(
        api_url=emulator.url, token=TEST_TOKEN, rate=0
    ) as p:
        summary = await p.run(bodies, on_result=seen.append)
    assert summary.counts["created"] == 1
    assert summary.counts["invalid"] == 2
    reasons = sorted(r.error.message for r in seen if r.status == "invalid" and r.error)
    assert any("duplicate name" in reason for reason in reasons)
    assert any("config.type" in reason for reason in reasons)
    assert list(emulator.creation_counts()) == ["ok-1"]


async def test_provision_returns_the_record_and_finds_its_own_environment_again(
    emulator: Emulator,
):
    """`provision(body)` gives `status` and `id`; the same body again is the same environment."""
    async with provisioner.Provisioner(
        api_url=emulator.url, token=TEST_TOKEN, rate=0
    ) as p:
        first = await p.provision(body("solo"))
        again = await p.provision(body("solo"))
    assert first.status == "created"
    assert first.id is not None
    assert again.id == first.id
    assert again.status in {"created", "exists"}
    assert emulator.creation_counts() == {"solo": 1}


async def test_provision_refuses_an_invalid_body_before_sending(emulator: Emulator):
    """An invalid body raises `SpecError` naming the field; no request is made."""
    async with provisioner.Provisioner(
        api_url=emulator.url, token=TEST_TOKEN, rate=0
    ) as p:
        with pytest.raises(provisioner.SpecError, match="config"):
            await p.provision({"name": "x", "config": {"type": "moon"}})
    assert emulator.creation_counts() == {}


def test_a_missing_token_is_a_config_error():
    """Without `token=` or `QODER_PAT` the constructor says what to set."""
    with pytest.raises(provisioner.ConfigError, match="QODER_PAT"):
        provisioner.Provisioner(api_url="http://127.0.0.1:9", env={})


def test_the_token_never_shows_in_the_provisioners_repr_or_config():
    """The token is a secret: the config prints it masked."""
    p = provisioner.Provisioner(api_url="http://127.0.0.1:9", token="pt-very-secret")
    assert "pt-very-secret" not in repr(p.config)


def test_the_manuals_example_runs_as_written(live_emulator, tmp_path: Path):
    """docs/library.md's example, run as a script against the emulator, prints its records."""
    page = (Path(__file__).parent.parent / "docs" / "library.md").read_text()
    example = page.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "example.py"
    script.write_text(example)
    env = child_env(QODER_API_URL=live_emulator.url)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
    )
    lines = done.stdout.splitlines()
    assert "'created': 2" in lines[0]
    assert lines[1].startswith("created env_")
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2


async def test_max_failures_stops_a_run_and_the_next_call_resumes(
    make_emulator, tmp_path: Path
):
    """`max_failures=1`: the second refused body stops `run` (`summary.stop` says
    why, the rest is not sent); the next call, bodies fixed, creates the rest once."""
    emulator = await make_emulator(max_body_bytes=2_000)
    bodies = [body(f"tol-{i}") for i in range(12)]
    broken = [
        dict(b, description="x" * 3_000) if i >= 3 else b for i, b in enumerate(bodies)
    ]
    results = str(tmp_path / "results.jsonl")
    async with provisioner.Provisioner(
        api_url=emulator.url, token=TEST_TOKEN, concurrency=1, rate=0, max_failures=1
    ) as p:
        first = await p.run(broken, results=results)
        assert (first.counts["created"], first.counts["failed"]) == (3, 2)
        assert first.stop is not None
        assert first.stop.text.startswith("too many failures: 2 of 5")
        second = await p.run(bodies, results=results)
    assert second.stop is None
    assert (second.counts["created"], second.counts["skipped"]) == (9, 3)
    counts = emulator.creation_counts()
    assert (len(counts), set(counts.values())) == (12, {1})


@pytest.mark.parametrize("limit", [-1, "lots", 1.5, True])
def test_an_impossible_max_failures_is_a_config_error(limit):
    with pytest.raises(provisioner.ConfigError, match=r"max.failures"):
        provisioner.Provisioner(
            api_url="http://127.0.0.1:1", token=TEST_TOKEN, max_failures=limit
        )
