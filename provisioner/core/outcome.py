"""What a spec's requests add up to: pure decisions and the records they make.

Nothing here sends a request or sleeps; every function takes what was seen and
returns a status or a record, so each rule is tested with plain values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from provisioner.errors import ApiError, ConflictError, TransportError
from provisioner.httpstatus import meaning
from provisioner.pacing.retry import decide
from provisioner.results import ErrorInfo, Result, Status
from provisioner.spec import InvalidSpec

OnConflict = Literal["exists", "fail"]


def replay_status(
    *, is_replay: bool, was_ambiguous: bool, replay_is_ours: bool
) -> Status:
    """``created``, unless the server replayed a create that predates this job.

    A replay answers a key sent before: by a lost attempt of this spec
    (``was_ambiguous``), or by an earlier, interrupted run of the same job or an
    earlier delivery of the same message (``replay_is_ours``). Otherwise the same
    spec was created by another, finished job: it was there before.
    """
    if not is_replay or was_ambiguous or replay_is_ours:
        return "created"
    return "exists"


def conflict_status(*, is_ours: bool, on_conflict: OnConflict) -> Status:
    """The outcome of a name conflict once the environment was found.

    ``is_ours``: it was made by a lost attempt of this spec (see
    ``reconcile.created_by_us``), so this spec created it.
    """
    if is_ours:
        return "created"
    return "failed" if on_conflict == "fail" else "exists"


def may_have_committed(exc: ApiError | TransportError) -> bool:
    """Whether a failed create may still have happened on the server."""
    if isinstance(exc, TransportError):
        return exc.is_ambiguous
    return meaning(exc.status).may_have_committed


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying can never fix ``exc`` (what ``--max-failures`` counts).

    A name or key conflict, and any 4xx the retry decision gives up on: not 408,
    429 or a 409 "still in progress" (retried, so a wait), never a 5xx, a reset or
    a timeout, which an outage produces and which pass.
    """
    if isinstance(exc, ConflictError):
        return True
    return (
        isinstance(exc, ApiError)
        and 400 <= exc.status <= 499  # noqa: PLR2004 - the client-error class
        and not decide(exc).retry
    )


def error_type(exc: BaseException) -> str:
    """The record's ``error.type`` for ``exc``."""
    if isinstance(exc, ApiError | TransportError):
        return exc.error_type
    return type(exc).__name__


def error_info(exc: BaseException, *, lookup: BaseException | None = None) -> ErrorInfo:
    """The record's ``error``: ``exc``, with a failed lookup's error beside it."""
    return ErrorInfo(
        type=error_type(exc),
        message=str(exc),
        lookup=None if lookup is None else error_info(lookup),
    )


def invalid_result(item: InvalidSpec, *, target: str | None, now: datetime) -> Result:
    """The record of a spec that was never sent: every broken rule in one message."""
    return Result(
        name=item.name,
        status="invalid",
        id=None,
        attempts=0,
        http_status=None,
        error=ErrorInfo(type="invalid_spec", message=item.reason),
        source=item.location,
        started_at=now,
        finished_at=now,
        target=target,
    )


__all__ = [
    "OnConflict",
    "conflict_status",
    "error_info",
    "error_type",
    "invalid_result",
    "is_permanent",
    "may_have_committed",
    "replay_status",
]
