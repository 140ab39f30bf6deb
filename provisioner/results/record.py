"""A result record: one spec's outcome, as the result log holds it.

The statuses, the error of a failed spec, and the record's JSON form (RFC 3339
timestamps in UTC, microseconds).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Status = Literal[
    "created", "updated", "exists", "failed", "invalid", "archived", "deleted"
]
SUCCESS: frozenset[str] = frozenset({"created", "updated", "exists"})
#: ``archived`` and ``deleted`` are written by ``provisioner archive``/``delete`` only.
STATUSES: tuple[Status, ...] = (
    "created",
    "updated",
    "exists",
    "failed",
    "invalid",
    "archived",
    "deleted",
)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a spec did not succeed: a machine-readable type and a sentence.

    ``lookup`` is set when the failure of a follow-up name lookup (after a lost
    or conflicting create) sits beside the create's own error.
    """

    type: str
    message: str
    lookup: ErrorInfo | None = None

    def to_dict(self, scrub: Callable[[str], str]) -> dict[str, Any]:
        """The error as written to the log, its messages scrubbed."""
        data: dict[str, Any] = {"type": self.type, "message": scrub(self.message)}
        if self.lookup is not None:
            data["lookup"] = self.lookup.to_dict(scrub)
        return data


@dataclass(frozen=True, slots=True)
class Result:
    """The final record of one spec.

    ``target`` is the API the record was made against (its base URL, or
    ``sandbox``): resume trusts a record only for the same target. ``drift``
    names the fields (dotted paths) where an environment that exists differed
    from its spec (``exists``: left as it was; ``updated``: changed to match);
    ``archived`` says the environment with the spec's name is archived.
    ``created_earlier`` says an earlier run of this log created the environment
    (an ``exists`` or ``updated`` record that replaced its ``created`` one when the
    spec was edited): teardown acts on it as on a ``created`` one. All three are
    written only when set, so records without them read as before. ``run_id``
    names the run (or worker process) that wrote the record, as its log events
    do; logs written before it existed have none, and resume reads them alike.
    ``is_permanent`` marks a ``failed`` record whose error retrying cannot fix (a
    4xx other than 408, 429 and a 409 "still in progress"): what ``--max-failures``
    counts. It is not written to the log.
    """

    name: str | None
    status: Status
    id: str | None
    attempts: int
    http_status: int | None
    error: ErrorInfo | None
    source: str
    started_at: datetime
    finished_at: datetime
    spec_key: str | None = None
    request_id: str | None = None
    target: str | None = None
    drift: tuple[str, ...] = ()
    archived: bool = False
    created_earlier: bool = False
    run_id: str | None = None
    is_permanent: bool = False

    @property
    def duration_ms(self) -> float:
        """Milliseconds from the first attempt to the final answer."""
        return round((self.finished_at - self.started_at).total_seconds() * 1000, 3)

    def to_dict(self, scrub: Callable[[str], str] = str) -> dict[str, Any]:
        """The record as written to the log (field order is part of the format)."""
        record: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "id": self.id,
            "attempts": self.attempts,
            "http_status": self.http_status,
            "error": None if self.error is None else self.error.to_dict(scrub),
            "source": self.source,
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
            "duration_ms": self.duration_ms,
            "spec_key": self.spec_key,
            "request_id": self.request_id,
            "target": self.target,
        }
        if self.run_id is not None:
            record["run_id"] = self.run_id
        if self.drift:
            record["drift"] = list(self.drift)
        if self.archived:
            record["archived"] = True
        if self.created_earlier:
            record["created_earlier"] = True
        return record


def new_run_id() -> str:
    """A fresh run id: 32 hex digits, unique to one run or worker process."""
    return uuid.uuid4().hex


def rfc3339(moment: datetime) -> str:
    """``moment`` (UTC) as RFC 3339 with microseconds: ``2026-12-06T22:31:42.123456Z``."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


__all__ = [
    "STATUSES",
    "SUCCESS",
    "ErrorInfo",
    "Result",
    "Status",
    "new_run_id",
    "rfc3339",
]
