"""``ApiClient`` against the emulator over loopback, and its answer parsing."""

from __future__ import annotations

import email.utils

import orjson
import pytest
from multidict import CIMultiDict

from provisioner.api.client import (
    ApiClient,
    open_session,
    parse_retry_after,
    translate_error,
)
from provisioner.emulator import Emulator
from provisioner.errors import (
    ApiError,
    AuthError,
    ConflictError,
    RetryableApiError,
    TransportError,
)
from provisioner.redact import Secret
from provisioner.settings import ApiSettings
from tests.helpers import TEST_TOKEN

BODY = {"name": "alpha", "config": {"type": "cloud"}}


def settings_for(emulator: Emulator, token: str = TEST_TOKEN) -> ApiSettings:
    return ApiSettings(token=Secret(token), base_url=emulator.url, timeout_s=5)


async def test_create_returns_the_environment_and_replays_with_the_same_key(emulator):
    """A create gives 201 and the env; the same key again replays it without a second env."""
    async with open_session(concurrency=2, timeout_s=5) as session:
        client = ApiClient(session, settings=settings_for(emulator))
        first = await client.create(BODY, idempotency_key="k-1")
        again = await client.create(BODY, idempotency_key="k-1", attempt=2)
    assert first.http_status == 201
    assert first.env_id.startswith("env_")
    assert first.request_id
    assert not first.is_replay
    assert again.env_id == first.env_id
    assert again.is_replay
    assert emulator.creation_counts() == {"alpha": 1}


async def test_a_duplicate_name_is_a_name_conflict(emulator):
    """A second create of one name with another key is a 409 ConflictError for the name."""
    async with open_session(concurrency=2, timeout_s=5) as session:
        client = ApiClient(session, settings=settings_for(emulator))
        await client.create(BODY, idempotency_key="k-1")
        with pytest.raises(ConflictError) as caught:
            await client.create(BODY, idempotency_key="k-2")
    assert caught.value.reason == "name"
    assert caught.value.status == 409
    assert caught.value.error_type == "conflict_error"


async def test_a_key_reused_with_another_body_is_an_idempotency_conflict(emulator):
    """The same key with a different body is a 409 that names the key, not the name."""
    async with open_session(concurrency=2, timeout_s=5) as session:
        client = ApiClient(session, settings=settings_for(emulator))
        await client.create(BODY, idempotency_key="k-1")
        with pytest.raises(ConflictError) as caught:
            await client.create({**BODY, "name": "beta"}, idempotency_key="k-1")
    assert caught.value.reason == "idempotency"


async def test_a_wrong_token_is_an_auth_error(emulator):
    """401 becomes AuthError with the server's error type."""
    async with open_session(concurrency=2, timeout_s=5) as session:
        client = ApiClient(session, settings=settings_for(emulator, "pt-nope"))
        with pytest.raises(AuthError) as caught:
            await client.create(BODY, idempotency_key="k")
    assert caught.value.status == 401
    assert caught.value.error_type == "authentication_error"


async def test_list_pages_through_every_environment_newest_first(emulator):
    """iter_environments follows the cursor across pages and returns all, newest first."""
    async with open_session(concurrency=2, timeout_s=5) as session:
        client = ApiClient(session, settings=settings_for(emulator))
        for i in range(230):
            await client.create(
                {**BODY, "name": f"env-{i:03d}"}, idempotency_key=f"k{i}"
            )
        names = [env["name"] async for env in client.iter_environments()]
    assert names == [f"env-{i:03d}" for i in reversed(range(230))]


async def test_a_refused_connection_is_an_unambiguous_transport_error():
    """Nothing listening: the request surely did not commit."""
    async with open_session(concurrency=1, timeout_s=2) as session:
        settings = ApiSettings(
            token=Secret("t"), base_url="http://127.0.0.1:9/api", timeout_s=2
        )
        with pytest.raises(TransportError) as caught:
            await ApiClient(session, settings=settings).create(
                BODY, idempotency_key="k"
            )
    assert caught.value.error_type == "connection_error"
    assert not caught.value.is_ambiguous


async def test_a_reset_after_commit_is_an_ambiguous_transport_error(emulator):
    """A connection dropped after the server committed may hide a create."""
    emulator.faults.reset_after_commit = 1.0
    async with open_session(concurrency=1, timeout_s=5) as session:
        with pytest.raises(TransportError) as caught:
            await ApiClient(session, settings=settings_for(emulator)).create(
                BODY, idempotency_key="k"
            )
    assert caught.value.is_ambiguous
    assert emulator.creation_counts() == {"alpha": 1}


async def test_a_slow_answer_is_an_ambiguous_timeout(emulator):
    """No answer within the timeout is a timeout that may have committed."""
    emulator.faults.slow, emulator.faults.slow_s = 1.0, 2.0
    async with open_session(concurrency=1, timeout_s=0.2) as session:
        settings = ApiSettings(
            token=Secret(TEST_TOKEN), base_url=emulator.url, timeout_s=0.2
        )
        with pytest.raises(TransportError) as caught:
            await ApiClient(session, settings=settings).create(
                BODY, idempotency_key="k"
            )
    assert caught.value.error_type == "timeout"
    assert caught.value.is_ambiguous


def test_409s_are_told_apart_by_their_message() -> None:
    """Name conflicts, key reuse and keys in flight are three different outcomes."""

    def conflict(message: str) -> ApiError:
        body = orjson.dumps(
            {"type": "error", "error": {"type": "conflict_error", "message": message}}
        )
        return translate_error(409, orjson.loads(body), body, CIMultiDict())

    assert conflict("An environment named 'a' already exists").reason == "name"  # type: ignore[attr-defined]
    reused = conflict("Idempotency key reused with a different request body")
    assert isinstance(reused, ConflictError)
    assert reused.reason == "idempotency"
    for text in (
        "A request with this Idempotency-Key is still in progress; retry later",
        "Another request with the same idempotency key is being processed",
    ):
        assert type(conflict(text)) is RetryableApiError


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "error_type"),
    [
        (
            502,
            b"<html><h1>502 Bad Gateway</h1></html>",
            {},
            RetryableApiError,
            "http_502",
        ),
        (503, b"", {"Retry-After": "3"}, RetryableApiError, "http_503"),
        (429, b"", {"retry-after-ms": "250"}, RetryableApiError, "http_429"),
        (408, b"", {}, RetryableApiError, "http_408"),
        (
            403,
            b'{"type":"error","error":{"type":"permission_error","message":"no"}}',
            {},
            AuthError,
            "permission_error",
        ),
        (
            404,
            b'{"type":"error","error":{"type":"not_found_error","message":"gone"}}',
            {},
            ApiError,
            "not_found_error",
        ),
        (
            409,
            b'{"type":"error","error":{"type":"conflict_error","message":"A request with this Idempotency-Key is still in progress"}}',
            {},
            RetryableApiError,
            "conflict_error",
        ),
    ],
)
def test_error_answers_are_read_defensively(status, body, headers, cls, error_type):
    """HTML, empty and JSON error bodies all become a typed error with a readable message."""
    payload = orjson.loads(body) if body.startswith(b"{") else None
    error = translate_error(status, payload, body, CIMultiDict(headers))
    assert type(error) is cls
    assert error.error_type == error_type
    assert error.message


def test_retry_after_forms():
    """retry-after-ms wins; Retry-After is read as seconds or as an HTTP date."""
    assert (
        parse_retry_after(CIMultiDict({"retry-after-ms": "1500", "Retry-After": "9"}))
        == 1.5
    )
    assert parse_retry_after(CIMultiDict({"Retry-After": "4"})) == 4.0
    date = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after(CIMultiDict({"Retry-After": date}), now=1_000_000) == 10.0
    assert parse_retry_after(CIMultiDict({"Retry-After": "soon"})) is None
    assert parse_retry_after(CIMultiDict()) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "-5"},
        {"Retry-After": "nan"},
        {"Retry-After": "inf"},
        {"Retry-After": "-Infinity"},
        {"Retry-After": "1e999"},
        {"retry-after-ms": "-1"},
        {"retry-after-ms": "nan"},
        {"retry-after-ms": "inf"},
    ],
)
def test_negative_or_non_finite_retry_after_counts_as_absent(headers):
    """A wait that is negative, NaN or infinite is no wait at all."""
    assert parse_retry_after(CIMultiDict(headers)) is None


def test_a_bad_retry_after_ms_leaves_retry_after_in_charge():
    """retry-after-ms that is nonsense gives way to a sane Retry-After; a past date is 0."""
    headers = CIMultiDict({"retry-after-ms": "-5", "Retry-After": "3"})
    assert parse_retry_after(headers) == 3.0
    past = email.utils.formatdate(1_000_000, usegmt=True)
    assert parse_retry_after(CIMultiDict({"Retry-After": past}), now=1_000_010) == 0.0


def test_error_text_from_the_server_is_scrubbed() -> None:
    """translate_error masks credential-shaped text even without knowing the token."""
    body = b'{"error":{"type":"invalid_request_error","message":"bad Authorization: Bearer pt-abcdefgh12345"}}'
    error = translate_error(400, orjson.loads(body), body, CIMultiDict())
    assert "pt-abcdefgh12345" not in str(error)
    assert "Authorization: ***" in str(error)


async def test_the_emulator_answers_are_believed(emulator):
    """The emulator's ids have the shape the client requires (env_ + 32 hex digits)."""
    async with open_session(concurrency=1, timeout_s=5) as session:
        client = ApiClient(session, settings=settings_for(emulator))
        created = await client.create(BODY, idempotency_key="k-1")
        listed = [env["id"] async for env in client.iter_environments()]
    assert listed == [created.env_id]
