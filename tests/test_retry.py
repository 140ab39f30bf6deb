"""The retry decision, backoff, deadline and the run-wide retry budget."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from provisioner.api.responses import translate_error
from provisioner.errors import (
    ApiError,
    AuthError,
    ConfigError,
    ConflictError,
    RetryableApiError,
    TransportError,
)
from provisioner.pacing.retry import Decision, RetryBudget, RetryPolicy, decide
from tests.helpers import no_sleep


def api_error(cls: type[ApiError], status: int, **kw: object) -> ApiError:
    return cls("boom", status=status, error_type=f"http_{status}", **kw)  # type: ignore[arg-type]


async def attempts_until_raise(
    policy: RetryPolicy,
    make_error: Callable[[int], BaseException],
    *,
    budget: RetryBudget | None = None,
    is_stopping: Callable[[], bool] = lambda: False,
) -> tuple[int, BaseException]:
    """Drive the policy with a call that always fails; return (attempts, raised)."""
    calls = 0

    async def call() -> None:
        nonlocal calls
        async for attempt in policy.retrying(
            budget=budget or RetryBudget(), is_stopping=is_stopping
        ):
            with attempt:
                calls += 1
                raise make_error(calls)

    with pytest.raises(Exception) as caught:  # noqa: PT011 - each test checks the type
        await call()
    return calls, caught.value


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (api_error(RetryableApiError, 429, retry_after_s=3.0), Decision(True, 3.0)),
        (api_error(RetryableApiError, 503), Decision(True, None)),
        (api_error(RetryableApiError, 503, should_retry=False), Decision(False)),
        (api_error(ApiError, 400), Decision(False)),
        (api_error(ApiError, 422), Decision(False)),
        (api_error(ApiError, 400, should_retry=True), Decision(True, None)),
        (api_error(AuthError, 401), Decision(False)),
        (
            ConflictError(
                "dup", reason="name", status=409, error_type="conflict_error"
            ),
            Decision(False),
        ),
        (TransportError("reset", is_ambiguous=True), Decision(True, None)),
        (
            TransportError(
                "bad cert",
                is_ambiguous=False,
                error_type="tls_error",
                is_retryable=False,
            ),
            Decision(False),
        ),
        (ValueError("bug"), Decision(False)),
    ],
)
def test_decide_retries_only_transient_errors(
    exc: BaseException, expected: Decision
) -> None:
    """Transient errors are retried, client errors are not, and x-should-retry wins."""
    assert decide(exc) == expected


def test_retry_after_is_honoured_and_capped() -> None:
    """A server's Retry-After sets the wait, up to retry_after_max_s."""
    policy = RetryPolicy(retry_after_max_s=10.0)
    assert policy.wait_s(api_error(RetryableApiError, 429, retry_after_s=2.5), 1) == 2.5
    assert (
        policy.wait_s(api_error(RetryableApiError, 429, retry_after_s=99.0), 1) == 10.0
    )


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    """Without Retry-After the wait doubles per attempt, less up to 25 % jitter, capped."""
    policy = RetryPolicy(wait_initial_s=1.0, wait_max_s=4.0, rng=random.Random(7))
    exc = api_error(RetryableApiError, 502)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        wait = policy.wait_s(exc, attempt)
        assert base * 0.75 <= wait <= base


async def test_stops_after_max_attempts_and_reraises_the_last_error() -> None:
    """After the last attempt the last error comes out unchanged."""
    errors = [api_error(RetryableApiError, 500 + i) for i in range(5)]
    calls, raised = await attempts_until_raise(
        RetryPolicy(max_attempts=3, sleep=no_sleep), lambda n: errors[n - 1]
    )
    assert calls == 3
    assert raised is errors[2]


async def test_client_errors_are_not_retried() -> None:
    """A 400 is raised after one attempt."""
    calls, raised = await attempts_until_raise(
        RetryPolicy(sleep=no_sleep), lambda _: api_error(ApiError, 400)
    )
    assert calls == 1
    assert type(raised) is ApiError


async def test_an_empty_budget_fails_fast() -> None:
    """With no retry tokens left, a transient error is not retried."""
    budget = RetryBudget(capacity=3)
    calls, raised = await attempts_until_raise(
        RetryPolicy(max_attempts=10, sleep=no_sleep),
        lambda _: TransportError("reset", is_ambiguous=True),
        budget=budget,
    )
    assert isinstance(raised, TransportError)
    assert calls == 4  # three retries at one token each, then none left
    assert budget.tokens == 0


def spend(budget: RetryBudget, outcomes: list[bool]) -> int:
    """Retries refused while ``outcomes`` (True: success) go through the budget."""
    refused = 0
    for ok in outcomes:
        if ok:
            budget.deposit()
        elif not budget.withdraw(1):
            refused += 1
    return refused


def test_the_budget_never_runs_dry_while_most_requests_succeed() -> None:
    """At 40 % failures, 100,000 requests never find the budget empty."""
    rng = random.Random(7)
    outcomes = [rng.random() >= 0.4 for _ in range(100_000)]
    assert spend(RetryBudget(), outcomes) == 0


def test_the_budget_runs_dry_when_most_requests_fail() -> None:
    """At 70 % failures only as many retries pass as requests succeed: most are refused."""
    rng = random.Random(7)
    outcomes = [rng.random() >= 0.7 for _ in range(10_000)]
    successes = sum(outcomes)
    refused = spend(RetryBudget(capacity=50), outcomes)
    assert refused >= (10_000 - successes) - successes - 50


def test_an_outage_costs_at_most_capacity_retries() -> None:
    """Against a server that fails every request, exactly ``capacity`` retries pass."""
    budget = RetryBudget(capacity=50)
    assert spend(budget, [False] * 300) == 250


async def test_a_transport_error_that_cannot_improve_is_tried_once() -> None:
    """A TransportError with is_retryable=False is raised after one attempt."""
    error = TransportError(
        "endless list",
        is_ambiguous=False,
        error_type="list_walk_limit",
        is_retryable=False,
    )
    calls, raised = await attempts_until_raise(
        RetryPolicy(max_attempts=5, sleep=no_sleep), lambda _: error
    )
    assert calls == 1
    assert raised is error


async def test_deadline_stops_before_a_wait_that_would_overrun_it() -> None:
    """No attempt starts after the deadline, even with attempts left."""
    calls, _ = await attempts_until_raise(
        RetryPolicy(max_attempts=10, deadline_s=5.0, sleep=no_sleep),
        lambda _: api_error(RetryableApiError, 429, retry_after_s=6.0),
    )
    assert calls == 1


async def test_draining_run_stops_retrying() -> None:
    """Once the run drains, a failed attempt is not tried again."""
    calls, _ = await attempts_until_raise(
        RetryPolicy(max_attempts=5, sleep=no_sleep),
        lambda _: TransportError("reset", is_ambiguous=True),
        is_stopping=lambda: True,
    )
    assert calls == 1


def test_budget_refills_up_to_capacity() -> None:
    """Deposits never push the budget above its capacity."""
    budget = RetryBudget(capacity=10)
    assert budget.withdraw(5)
    budget.deposit(100)
    assert budget.tokens == 10
    assert not budget.withdraw(11)


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"deadline_s": 0}, {"jitter": 2}]
)
def test_impossible_policies_are_refused(kwargs: dict[str, float]) -> None:
    """A policy that could never work raises at construction."""
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def answer(status: int, message: str = "boom") -> ApiError:
    """The error the client raises for an answer with ``status`` and ``message``."""
    body = {"error": {"type": "conflict_error", "message": message}}
    return translate_error(status, body, b"", {})


def test_throttling_retries_are_free_but_failures_are_not() -> None:
    """A 429 and a 409 "still being processed" draw nothing; 5xx and resets one token."""
    budget = RetryBudget()
    in_flight = answer(
        409,
        "A request with this Idempotency-Key is still being processed; retry later",
    )
    assert decide(in_flight).retry
    assert budget.cost_of(in_flight) == 0
    assert budget.cost_of(answer(429)) == 0
    assert budget.cost_of(answer(503)) == 1
    assert budget.cost_of(TransportError("reset", is_ambiguous=True)) == 1
