"""`provisioner run` as a child process against a hostile server: never a wrong record, never a hang."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from tests.helpers import (
    Handler,
    Serve,
    Server,
    child_env,
    make_specs,
    records,
    start_cli,
)

pytestmark = pytest.mark.slow

TOKEN = "pt-hostile-" + secrets.token_hex(12)


async def run_against(
    server: Server, tmp_path: Path, *extra: str, specs: int = 2
) -> tuple[int, str, str]:
    """Run the CLI to the end against ``server``; exit code, stdout, stderr."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in make_specs(specs)))
    proc = await start_cli(
        "run", jobs, "--api-url", server.url, "--results", tmp_path / "results.jsonl",
        "--rate", "0", "--backoff", "0", "--log-level", "debug", *extra,
        env=child_env(token=TOKEN), cwd=tmp_path,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def written_files(folder: Path) -> list[str]:
    """The text of every file a run left in ``folder``."""
    return [p.read_text() for p in folder.iterdir() if p.is_file()]


def envelope(status: int, kind: str, message: str) -> web.Response:
    error = {"type": "error", "error": {"type": kind, "message": message}}
    return web.json_response(error, status=status)


async def test_an_error_that_repeats_the_authorization_header_is_stored_scrubbed(
    serve: Serve, tmp_path: Path
) -> None:
    """A server quoting our Authorization header back: the token is in no record, log or summary."""

    async def echo_auth(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        return envelope(
            400,
            "invalid_request_error",
            f"rejected header Authorization: {auth} ({auth})",
        )

    server = await serve(echo_auth)
    code, out, err = await run_against(
        server, tmp_path, "--summary", str(tmp_path / "s.json")
    )

    assert code == 1
    for text in (out, err, *written_files(tmp_path)):
        assert TOKEN not in text
    assert all(
        "Authorization: ***" in r["error"]["message"]
        for r in records(tmp_path / "results.jsonl")
    )


async def test_a_201_without_an_id_is_never_recorded_created(
    serve: Serve, tmp_path: Path
) -> None:
    """`201 {"id": null}` is a broken answer: retried with the same key, then a failure, never id "None"."""

    async def null_ids(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return web.json_response({"id": None, "name": "x"}, status=201)
        return web.json_response({"data": [], "has_more": False})

    server = await serve(null_ids)
    code, _, _ = await run_against(server, tmp_path, "--max-attempts", "2")

    assert code == 1
    for record in records(tmp_path / "results.jsonl"):
        assert record["status"] == "failed"
        assert record["id"] is None
        assert record["error"]["type"] == "bad_answer"
        assert record["attempts"] == 2


def conflict_then_endless_list() -> Handler:
    counter = itertools.count(1)

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            return envelope(
                409, "conflict_error", "An environment with that name already exists"
            )
        n = next(counter)
        return web.json_response(
            {
                "data": [{"id": f"env_{n:032x}", "name": f"other-{n}"}],
                "has_more": True,
                "next_page": f"c{n}",
            }
        )

    return handler


async def test_a_409_followed_by_an_endless_list_fails_instead_of_hanging(
    serve: Serve, tmp_path: Path
) -> None:
    """A name conflict whose list never ends: the run ends, the record keeps the 409 with the walk's failure beside it."""
    server = await serve(conflict_then_endless_list())
    code, _, _ = await run_against(server, tmp_path, "--concurrency", "1")

    assert code == 1
    first, second = records(tmp_path / "results.jsonl")
    assert first["error"]["type"] == "conflict_error"
    assert first["error"]["lookup"]["type"] == "list_walk_limit"
    assert second["error"]["lookup"]["type"] == "list_walk_limit"
    # The second lookup did not walk the endless list again.
    assert sum(r.startswith("GET") for r in server.requests) == 10_000


async def test_a_timeout_then_a_failing_lookup_keeps_the_creates_error(
    serve: Serve, tmp_path: Path
) -> None:
    """After a timeout the retry looks first; when that look fails, the record names the timeout and the lookup beside it."""

    async def slow_create_broken_list(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            await asyncio.sleep(2)  # the server's latency under test: past the timeout
            return web.json_response({}, status=201)
        return envelope(500, "api_error", "the list is down")

    server = await serve(slow_create_broken_list)
    code, _, _ = await run_against(
        server, tmp_path, "--timeout", "0.3", "--max-attempts", "2", specs=1
    )

    assert code == 1
    (record,) = records(tmp_path / "results.jsonl")
    assert record["error"]["type"] == "timeout"
    assert "no answer within the timeout" in record["error"]["message"]
    assert record["error"]["lookup"]["type"] == "api_error"
    assert record["attempts"] == 1  # one create sent; the second try only looked
