"""What an HTTP status means to provisioner: one table, read by everyone.

The client (which exception to raise), the retry policy (whether to try again,
what a retry costs) and the pipeline (whether a failed create may still have
happened) all ask :func:`meaning` instead of keeping status lists of their own.
A 409 is the one status whose meaning depends on its message; the client tells
its three kinds apart (see ``api/responses.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Meaning:
    """What one HTTP status says about a request.

    Attributes:
        is_retryable: another attempt may succeed.
        may_have_committed: the request may have been carried out although it
            failed (a create must then be looked for before it is sent again).
        is_throttled: the server is pacing us, not failing: a retry costs
            nothing from the retry budget, and the wait it names is honoured.
        stops_run: every further request would fail the same way (bad token).
        slows_down: the server is overloaded or limiting us: an adaptive rate
            (``--rate auto``) sends more slowly.
    """

    is_retryable: bool = False
    may_have_committed: bool = False
    is_throttled: bool = False
    stops_run: bool = False
    slows_down: bool = False


_FINAL = Meaning()
_TABLE: dict[int, Meaning] = {
    401: Meaning(stops_run=True),
    403: Meaning(stops_run=True),
    # The server gave up waiting for the request; it may have started on it.
    408: Meaning(is_retryable=True, may_have_committed=True),
    429: Meaning(is_retryable=True, is_throttled=True, slows_down=True),
    503: Meaning(is_retryable=True, may_have_committed=True, slows_down=True),
}
# Any 5xx: the server (or a gateway in front of it) failed, perhaps after the commit.
_SERVER_ERROR = Meaning(is_retryable=True, may_have_committed=True)


def meaning(status: int) -> Meaning:
    """The meaning of ``status``; statuses the table does not name are final."""
    found = _TABLE.get(status)
    if found is not None:
        return found
    if 500 <= status <= 599:  # noqa: PLR2004 - the server-error class
        return _SERVER_ERROR
    return _FINAL


__all__ = ["Meaning", "meaning"]
