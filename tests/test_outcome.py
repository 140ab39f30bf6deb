"""The outcome decisions, with plain values: what a spec's answers add up to."""

from __future__ import annotations

import pytest

from provisioner.core.outcome import (
    conflict_status,
    error_info,
    may_have_committed,
    replay_status,
)
from provisioner.errors import ApiError, TransportError
from provisioner.httpstatus import meaning


@pytest.mark.parametrize(
    ("is_replay", "was_ambiguous", "replay_is_ours", "status"),
    [
        (False, False, False, "created"),
        (True, True, False, "created"),
        (True, False, True, "created"),
        (True, False, False, "exists"),
    ],
)
def test_a_replay_is_created_only_when_this_job_may_have_sent_it(
    is_replay, was_ambiguous, replay_is_ours, status
):
    """A replayed 201 of another, finished job means the environment was there before."""
    assert (
        replay_status(
            is_replay=is_replay,
            was_ambiguous=was_ambiguous,
            replay_is_ours=replay_is_ours,
        )
        == status
    )


@pytest.mark.parametrize(
    ("is_ours", "on_conflict", "status"),
    [(True, "fail", "created"), (False, "exists", "exists"), (False, "fail", "failed")],
)
def test_a_found_name_is_ours_exists_or_a_failure(is_ours, on_conflict, status):
    """After a 409 the found environment is ours (a lost answer), or there before."""
    assert conflict_status(is_ours=is_ours, on_conflict=on_conflict) == status


@pytest.mark.parametrize(
    ("http_status", "committed"),
    [(500, True), (503, True), (408, True), (429, False), (400, False)],
)
def test_which_failed_answers_may_have_committed(http_status, committed):
    """5xx and 408 may hide a commit; a 429 or a 400 does not."""
    exc = ApiError("x", status=http_status, error_type="t")
    assert may_have_committed(exc) is committed
    assert meaning(http_status).may_have_committed is committed


def test_a_reset_may_have_committed_a_refused_connection_not():
    """A reset after sending is ambiguous; a connection never made is not."""
    assert may_have_committed(TransportError("reset", is_ambiguous=True))
    assert not may_have_committed(TransportError("refused", is_ambiguous=False))


def test_the_lookup_error_sits_beside_the_create_error():
    """error_info keeps the create's error first and the lookup's beside it."""
    info = error_info(
        TransportError("timed out", is_ambiguous=True, error_type="timeout"),
        lookup=ApiError("down", status=500, error_type="api_error"),
    )
    assert (info.type, info.lookup and info.lookup.type) == ("timeout", "api_error")


def test_the_status_table_names_throttling_and_final_answers():
    """429 is throttled (free retry), 401 stops the run, 404 is final."""
    assert meaning(429).is_throttled
    assert meaning(429).is_retryable
    assert meaning(401).stops_run
    assert not meaning(404).is_retryable
