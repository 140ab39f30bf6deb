"""When to try a request again, and how long to wait first.

:func:`decide` is the one retry decision (no / yes / yes after N s), in the shape
of stamina's backoff hook. :class:`RetryPolicy` turns it into a tenacity
``AsyncRetrying`` bounded by attempts *and* a deadline; after the last attempt
the last error is re-raised unchanged. :class:`RetryBudget` is the run-wide
retry allowance: it dries up only when most requests fail (an outage), so a run
fails fast then instead of multiplying the load, yet finishes under ordinary
transient faults however long it is.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, RetryCallState

from provisioner.errors import ApiError, ConfigError, RetryableApiError, TransportError

Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[BaseException, int, float], None]


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "try again?": ``retry``, and the server's wait if it named one."""

    retry: bool
    after_s: float | None = None


NO_RETRY = Decision(retry=False)


def decide(exc: BaseException) -> Decision:
    """Whether ``exc`` is worth another attempt.

    Yes for transport errors (refused, reset, timeout) unless they say another
    attempt cannot help (``is_retryable`` is ``False``: a TLS failure, an endless
    list), and for 408, 429, 5xx and a 409 "key still in flight"; no for every
    other 4xx or a redirect. A server's ``x-should-retry`` header overrides the
    status either way.
    """
    if isinstance(exc, ApiError):
        if exc.should_retry is False:
            return NO_RETRY
        if exc.should_retry or isinstance(exc, RetryableApiError):
            return Decision(retry=True, after_s=exc.retry_after_s)
        return NO_RETRY
    if isinstance(exc, TransportError):
        return Decision(retry=True) if exc.is_retryable else NO_RETRY
    return NO_RETRY


@dataclass(slots=True)
class RetryBudget:
    """A run-wide allowance of retries that runs dry only when most attempts fail.

    Every retry takes one token and every success gives one back, never above
    ``capacity``. Tokens therefore fall only while failures outnumber
    successes: at any fault rate below one request in two a run keeps
    retrying however long it is, while against an outage (every request
    failing) it stops after ``capacity`` retries and fails fast instead of
    multiplying the load. A throttling answer (429, or 409 "still being
    processed") costs nothing: the server asks for a wait, not a retry of a
    failure; attempts and the deadline still bound it.
    """

    capacity: int = 50
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        if self.capacity < 0:
            raise ConfigError(f"retry budget must be 0 or more, got {self.capacity}")
        self.tokens = self.capacity

    @staticmethod
    def cost_of(exc: BaseException) -> int:
        """What retrying after ``exc`` costs: 0 after a throttling answer, else 1."""
        return 0 if isinstance(exc, ApiError) and exc.is_throttled else 1

    def withdraw(self, cost: int) -> bool:
        """Take ``cost`` tokens if there are enough; ``False`` means do not retry."""
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True

    def deposit(self, amount: int = 1) -> None:
        """Give back ``amount`` tokens after a success, never above capacity."""
        self.tokens = min(self.capacity, self.tokens + amount)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one logical request.

    Attributes:
        max_attempts: attempts in all, the first included.
        deadline_s: no attempt starts later than this after the first one.
        wait_initial_s: backoff before the second attempt; doubles each time.
        wait_max_s: backoff cap.
        retry_after_max_s: the longest ``Retry-After`` honoured as given.
        jitter: fraction of the backoff taken off at random (0.25 = up to 25 %).
        sleep: the coroutine that waits; tests inject one that does not.
    """

    max_attempts: int = 5
    deadline_s: float = 300.0
    wait_initial_s: float = 0.5
    wait_max_s: float = 8.0
    retry_after_max_s: float = 60.0
    jitter: float = 0.25
    sleep: Sleep = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(
                f"--max-attempts must be at least 1, got {self.max_attempts}"
            )
        if self.deadline_s <= 0:
            raise ConfigError(f"--deadline must be positive, got {self.deadline_s}")
        if self.wait_initial_s < 0 or self.wait_max_s < 0:
            raise ConfigError("--backoff and --backoff-max must be 0 or more")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter must be between 0 and 1, got {self.jitter}")

    def wait_s(self, exc: BaseException, attempt: int) -> float:
        """Seconds to wait after attempt number ``attempt`` failed with ``exc``."""
        after = decide(exc).after_s
        if after is not None:
            return min(after, self.retry_after_max_s)
        base = min(self.wait_max_s, self.wait_initial_s * 2.0 ** (attempt - 1))
        return base * (1 - self.jitter * self.rng.random())

    def retrying(
        self,
        *,
        budget: RetryBudget,
        is_stopping: Callable[[], bool] = lambda: False,
        on_retry: OnRetry | None = None,
        sleep: Sleep | None = None,
    ) -> AsyncRetrying:
        """A tenacity controller for one logical request.

        Args:
            budget: the run's shared retry budget.
            is_stopping: ``True`` once the run drains; no new attempt starts then.
            on_retry: called with (error, attempt, wait_s) before each wait.
            sleep: waits instead of the policy's own ``sleep`` (the runner's
                version wakes early when the run drains).
        """
        return AsyncRetrying(
            sleep=sleep or self.sleep,
            stop=self._stop(is_stopping),
            wait=self._wait,
            retry=_retry_predicate(budget),
            before_sleep=_before_sleep(on_retry),
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = _exception(state)
        return 0.0 if exc is None else self.wait_s(exc, state.attempt_number)

    def _stop(
        self, is_stopping: Callable[[], bool]
    ) -> Callable[[RetryCallState], bool]:
        def stop(state: RetryCallState) -> bool:
            elapsed = state.seconds_since_start or 0.0
            return (
                state.attempt_number >= self.max_attempts
                or elapsed + state.upcoming_sleep >= self.deadline_s
                or is_stopping()
            )

        return stop


def _exception(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()


def _retry_predicate(budget: RetryBudget) -> Callable[[RetryCallState], bool]:
    def should_retry(state: RetryCallState) -> bool:
        exc = _exception(state)
        if exc is None or not decide(exc).retry:
            return False
        return budget.withdraw(budget.cost_of(exc))

    return should_retry


def _before_sleep(on_retry: OnRetry | None) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = _exception(state)
        if on_retry is not None and exc is not None:
            on_retry(exc, state.attempt_number, state.upcoming_sleep)

    return before_sleep
