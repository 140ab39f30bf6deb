"""``--rate auto``: find an unknown rate limit instead of hammering it.

The controller is CUBIC as in the AWS SDKs' adaptive retry mode (C = 0.4,
beta = 0.7, never above twice the rate that really goes out), on a rate in
requests per second, fitted to a server whose limit is a token bucket:

- **Slow start.** From ``start_rate_per_s`` (20/s, the API's recommended write
  rate) the rate doubles every ``ramp_s`` (0.1 s) while answers are clean: it
  reaches 200/s in about half a second, not four (a run of 2,000 specs at 200/s
  lasts ten seconds). Each rate is held for ``ramp_s`` so that the answered rate
  (answers per second, the mean of their last eight gaps: the rate requests
  really went out at) shows it before the next doubling.
- **An episode is more than jitter.** A 429 or 503 is a throttle. An episode
  starts when the throttles of about the last ``window_s`` (1 s, a decay) are
  more than a ``tolerance`` share (5 %) would give by chance: its mean, two
  standard deviations and one. A bucket that holds one token rejects a request
  that arrives a fraction of a millisecond early by its clock, so a few 429s
  come well below any limit; cutting for each (the old controller) kept the
  rate at a third of the limit.
- **One cut per episode.** A cut starts a new *epoch*. Each request is tagged
  with the epoch it was sent in (:meth:`AdaptiveRateLimiter.acquire`) and the
  answers to requests sent before the last cut are ignored: the requests in
  flight at a cut cannot cut again however long they take, and a rate still too
  high after a cut is cut again one round trip later, not after a fixed cooldown.
- **The cut is proportional, at most AWS's.** ``w_max`` is the rate sent when
  the episode came (the current rate, or the answered rate if less); the cut
  keeps the share of answers that were clean, but never less than ``beta``
  (0.7): a rate 5 % over a limit meets some 10 % of 429s and is cut by about
  10 %, a wall of 429s by 30 % (the decrease is in proportion to the extent of
  the throttling, not its mere presence, as DCTCP's, RFC 8257). Cutting 30 %
  for every probe just above a fixed limit wasted a tenth of it (bench row 5,
  one sitting: 0.74 and 0.86 of the limit with a fixed 0.7, 0.87 to 0.91 with
  this).
- **CUBIC regrowth.** ``rate(t) = C (t - K)^3 + w_max`` with
  ``K = cbrt(w_max (1 - kept) / C)``: from the cut rate back to ``w_max`` in
  ``K`` seconds (3.7 s after a 10 % cut from 200/s, 5.3 s after a 30 % one),
  fast at first, flat near ``w_max``, then probing beyond it, slowly at first.
- **Bounds.** Always within ``[min_rate_per_s, max_rate_per_s]``, and never
  grown beyond twice the answered rate: a rate nobody uses is no knowledge.
- **Retry-After** is always honoured by the throttled request: its retry waits
  the server's ``Retry-After`` (the retry policy). The other requests go on at
  the cut rate: a rate limiter's ``Retry-After`` says when that request would
  pass, and stopping every request for it (a second per 429 on the benchmark)
  would cap a 200/s limit at a fraction of it.

:func:`step` is that decision as a pure function of the state, the time and the
answers; :class:`AdaptiveRate` applies it on an injected clock, and the queue's
Lua script (``ADAPT_LUA`` in ``queue/scripts.py``) runs the same steps on Redis's
clock for a pool of workers, so that they learn one rate together.
:class:`AdaptiveRateLimiter` paces one process; :class:`SharedAdaptiveRateLimiter`
paces a worker at its pool's rate.

Pacing is sub-millisecond: asyncio's and uvloop's timers fire up to a
millisecond off, a fifth of the gap at 200/s, and a one-token bucket rejects a
request that arrives early while one that arrives late wastes its capacity. So
the limiters sleep to within :data:`SPIN_S` of the send time and yield to the
loop for the rest, and each send is spaced from the previous one as it really
went out (no catching up with two sends back to back after a late wake-up).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, replace

from provisioner.errors import ConfigError
from provisioner.pacing.limiter import SharedRateLimiter

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: The last stretch of a wait shorter than this is spent yielding to the event loop
#: (``sleep(0)``) rather than on a timer that may fire a millisecond off.
SPIN_S = 0.001
#: The answered rate is the mean of about this many gaps between answers.
ANSWERED_GAPS = 8

# The epoch a request was sent in: set by acquire(), read by feedback(). Both run
# in the request's own task (and a task's context is its own), so each answer is
# matched with its own send, whatever the other tasks do in between.
_SENT_IN_EPOCH: ContextVar[int | None] = ContextVar(
    "provisioner_sent_in_epoch", default=None
)


@dataclass(frozen=True, slots=True)
class AdaptiveTuning:
    """The controller's constants (see the module docstring).

    Attributes:
        start_rate_per_s: the rate before anything is known.
        min_rate_per_s: never slower than this.
        max_rate_per_s: never faster than this.
        beta: the least share of the rate a cut keeps (0.7, the AWS SDKs' cut).
        scale: CUBIC's C, in requests/s per s³ (0.4, the AWS SDKs').
        ramp_s: slow start doubles the rate this often.
        tolerance: throttles up to this share of the answers (and chance) are jitter.
        window_s: how far back the answers count, in seconds (a decay constant).
    """

    start_rate_per_s: float = 20.0
    min_rate_per_s: float = 0.5
    max_rate_per_s: float = 10_000.0
    beta: float = 0.7
    scale: float = 0.4
    ramp_s: float = 0.1
    tolerance: float = 0.05
    window_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.min_rate_per_s <= self.start_rate_per_s <= self.max_rate_per_s:
            raise ConfigError("adaptive rate: need 0 < min <= start <= max")
        if not 0 < self.beta < 1:
            raise ConfigError(f"adaptive rate: beta must be in (0, 1), got {self.beta}")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(
                f"adaptive rate: tolerance must be in [0, 1), got {self.tolerance}"
            )
        if min(self.scale, self.ramp_s, self.window_s) <= 0:
            raise ConfigError("adaptive rate: scale, ramp_s and window_s must be > 0")

    def clamp(self, rate_per_s: float) -> float:
        """``rate_per_s`` within the bounds."""
        return min(self.max_rate_per_s, max(self.min_rate_per_s, rate_per_s))

    def cubic(self, w_max: float, kept: float, since_cut_s: float) -> float:
        """CUBIC's rate ``since_cut_s`` after a cut from ``w_max`` to ``kept * w_max``."""
        k = math.cbrt(w_max * (1 - kept) / self.scale)
        return self.scale * (since_cut_s - k) ** 3 + w_max


@dataclass(frozen=True, slots=True)
class PaceState:
    """What the controller knows; :func:`step` makes the next one.

    Attributes:
        rate_per_s: the rate to send at now.
        epoch: cuts so far; answers to requests sent in an older epoch are ignored.
        w_max: the rate at the last cut, where the curve flattens; ``None`` in
            slow start.
        kept: the share of the rate the last cut kept.
        cut_at: when the last cut happened (clock seconds).
        grown_at: when the rate last grew.
        clean: clean answers of this epoch, decayed over ``window_s``.
        throttled: throttles of this epoch, decayed alike.
        counted_at: when the counts were last decayed.
        gap_s: the mean gap between answers (1 / the answered rate).
        answered_at: when the last answer came, if any did.
    """

    rate_per_s: float
    epoch: int = 0
    w_max: float | None = None
    kept: float = 1.0
    cut_at: float = 0.0
    grown_at: float = 0.0
    clean: float = 0.0
    throttled: float = 0.0
    counted_at: float = 0.0
    gap_s: float = 1.0
    answered_at: float | None = None

    @classmethod
    def initial(cls, tuning: AdaptiveTuning, now: float) -> PaceState:
        """Slow start at ``start_rate_per_s``, as if answers came at that rate."""
        rate = tuning.start_rate_per_s
        return cls(rate, cut_at=now, grown_at=now, counted_at=now, gap_s=1 / rate)

    @property
    def answered_rate_per_s(self) -> float:
        """Answers per second, lately: the rate requests really went out at."""
        return 1 / self.gap_s


def step(
    state: PaceState,
    tuning: AdaptiveTuning,
    *,
    now: float,
    clean: int = 0,
    throttled: int = 0,
) -> PaceState:
    """The state after ``clean`` and ``throttled`` answers of the current epoch at ``now``."""
    if clean + throttled == 0:
        return state
    keep = math.exp(-max(0.0, now - state.counted_at) / tuning.window_s)
    state = _answered(state, tuning, now, clean + throttled)
    state = replace(
        state,
        clean=state.clean * keep + clean,
        throttled=state.throttled * keep + throttled,
        counted_at=now,
    )
    if throttled and _is_episode(state, tuning):
        return _cut(state, tuning, now)
    if clean:
        return _grow(state, tuning, now)
    return state


def _answered(
    state: PaceState, tuning: AdaptiveTuning, now: float, answers: int
) -> PaceState:
    if state.answered_at is None:
        return replace(state, answered_at=now)
    # An idle spell counts as one window, not as a collapse of the rate.
    gap = min(now - state.answered_at, tuning.window_s) / answers
    weight = 1 - (1 - 1 / ANSWERED_GAPS) ** answers
    gap_s = max(1 / tuning.max_rate_per_s, state.gap_s + (gap - state.gap_s) * weight)
    return replace(state, gap_s=gap_s, answered_at=now)


def _is_episode(state: PaceState, tuning: AdaptiveTuning) -> bool:
    # More throttles than a `tolerance` share would give by chance: its mean, two
    # standard deviations (binomial, about sqrt(mean)) and one more.
    expected = tuning.tolerance * (state.clean + state.throttled)
    return state.throttled > expected + 2 * math.sqrt(expected) + 1


def _cut(state: PaceState, tuning: AdaptiveTuning, now: float) -> PaceState:
    base = min(state.rate_per_s, state.answered_rate_per_s)
    kept = max(tuning.beta, state.clean / (state.clean + state.throttled))
    return replace(
        state,
        rate_per_s=tuning.clamp(base * kept),
        epoch=state.epoch + 1,
        w_max=base,
        kept=kept,
        cut_at=now,
        clean=0.0,
        throttled=0.0,
    )


def _grow(state: PaceState, tuning: AdaptiveTuning, now: float) -> PaceState:
    if state.w_max is not None:
        target = tuning.cubic(state.w_max, state.kept, now - state.cut_at)
    elif now - state.grown_at >= tuning.ramp_s:
        # Slow start holds each rate for ramp_s, long enough for the answers to
        # show it, then doubles it.
        target = 2 * state.rate_per_s
    else:
        return state
    cap = max(state.rate_per_s, 2 * state.answered_rate_per_s)
    return replace(state, rate_per_s=tuning.clamp(min(target, cap)), grown_at=now)


class AdaptiveRate:
    """The rate learnt from the answers: :func:`step` on a clock.

    Args:
        tuning: the constants (the defaults are the documented ones).
        clock: monotonic seconds; tests inject one they move by hand.
    """

    def __init__(
        self, tuning: AdaptiveTuning | None = None, *, clock: Clock = time.monotonic
    ) -> None:
        self.tuning = tuning or AdaptiveTuning()
        self._clock = clock
        self.state = PaceState.initial(self.tuning, clock())

    @property
    def rate_per_s(self) -> float:
        """Requests per second to send now."""
        return self.state.rate_per_s

    @property
    def epoch(self) -> int:
        """Cuts so far (the tag of a request sent now)."""
        return self.state.epoch

    def on_answer(self, *, throttled: bool, epoch: int | None = None) -> None:
        """One answer to a request sent in ``epoch`` (``None``: the current one)."""
        if epoch is not None and epoch != self.state.epoch:
            return  # sent before the last cut, which has seen its like already
        self.state = step(
            self.state,
            self.tuning,
            now=self._clock(),
            clean=0 if throttled else 1,
            throttled=1 if throttled else 0,
        )


async def wait_until(
    deadline: Callable[[], float], *, clock: Clock, sleep: Sleep, spin_s: float
) -> None:
    """Return once ``clock()`` reaches ``deadline()`` (read again after each wake-up).

    Timers take the wait down to ``spin_s``; the rest yields to the loop
    (``sleep(0)``) until the clock says so, so an early or late timer moves a
    send by microseconds, not a millisecond.
    """
    while (left := deadline() - clock()) > 0:
        await sleep(left - spin_s if left > spin_s else 0.0)


class AdaptiveRateLimiter:
    """Paces one process's requests at an :class:`AdaptiveRate` and feeds it the answers.

    Each send goes out ``1 / rate`` after the previous one really went out, at
    the rate of the moment (a cut applies to the very next send, even one
    already waiting).

    Args:
        controller: the rate to follow (a new one on ``clock`` by default).
        clock: monotonic seconds (the controller's).
        sleep: the coroutine that waits; tests inject one that moves their clock.
        spin_s: see :func:`wait_until`; tests whose sleep moves a clock pass 0.
    """

    def __init__(
        self,
        controller: AdaptiveRate | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        spin_s: float = SPIN_S,
    ) -> None:
        self.controller = controller or AdaptiveRate(clock=clock)
        self._clock = clock
        self._sleep = sleep
        self._spin_s = spin_s
        self._last_send = float("-inf")
        self._turn = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for the next send time at the current rate (one caller at a time)."""
        async with self._turn:
            await wait_until(
                lambda: self._last_send + 1 / self.controller.rate_per_s,
                clock=self._clock,
                sleep=self._sleep,
                spin_s=self._spin_s,
            )
            self._last_send = self._clock()
        _SENT_IN_EPOCH.set(self.controller.epoch)

    def feedback(self, *, throttled: bool, retry_after_s: float | None = None) -> None:
        """One answer, throttled (429, 503) or not; ``Retry-After`` is the retry's to wait."""
        self.controller.on_answer(throttled=throttled, epoch=_SENT_IN_EPOCH.get())


@dataclass(frozen=True, slots=True)
class PoolFeedback:
    """Answers a worker heard since its last reservation, all of one epoch."""

    epoch: int
    clean: int = 0
    throttled: int = 0


@dataclass(frozen=True, slots=True)
class Reservation:
    """A send slot of the pool: wait this long; the pool's epoch and rate now."""

    wait_s: float
    epoch: int
    rate_per_s: float


class SharedAdaptiveRateLimiter:
    """Paces a worker at its pool's adaptive rate, learnt by every worker together.

    Each reservation (the queue's Lua script, one atomic step on Redis's clock)
    first applies the answers this worker heard since its last one, so a throttle
    seen by any worker cuts the pool's rate once for all and clean answers raise
    it, then reserves the next slot of the pool's schedule at that rate.

    Args:
        reserve: reports a :class:`PoolFeedback`, returns a :class:`Reservation`;
            a ``QueueError`` while Redis is away is waited out with a backoff.
        is_stopping: when it turns true, stop waiting (the caller drains).
        clock: monotonic seconds.
        sleep: the coroutine that waits; tests inject one that moves their clock.
        spin_s: see :func:`wait_until`.
    """

    def __init__(
        self,
        reserve: Callable[[PoolFeedback], Awaitable[Reservation]],
        *,
        is_stopping: Callable[[], bool] = lambda: False,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        spin_s: float = SPIN_S,
    ) -> None:
        self._reserve = reserve
        self._clock = clock
        self._sleep = sleep
        self._spin_s = spin_s
        self._pending = PoolFeedback(epoch=0)
        self.rate_per_s: float | None = None  # the pool's, as of the last reservation
        self._pacer = SharedRateLimiter(
            self._reserve_slot, is_stopping=is_stopping, sleep=self._wait
        )

    async def acquire(self) -> None:
        """Report what was heard, then wait for this worker's slot of the pool's rate."""
        await self._pacer.acquire()

    def feedback(self, *, throttled: bool, retry_after_s: float | None = None) -> None:
        """Count one answer for the next reservation (answers of an older epoch are dropped)."""
        pending = self._pending
        epoch = _SENT_IN_EPOCH.get()
        if epoch is not None and epoch != pending.epoch:
            return
        self._pending = replace(
            pending,
            clean=pending.clean + (not throttled),
            throttled=pending.throttled + throttled,
        )

    async def _reserve_slot(self) -> float:
        heard, self._pending = self._pending, PoolFeedback(epoch=self._pending.epoch)
        reservation = await self._reserve(heard)
        if reservation.epoch != self._pending.epoch:
            self._pending = PoolFeedback(epoch=reservation.epoch)
        self.rate_per_s = reservation.rate_per_s
        _SENT_IN_EPOCH.set(reservation.epoch)
        return reservation.wait_s

    async def _wait(self, seconds: float) -> None:
        deadline = self._clock() + seconds
        await wait_until(
            lambda: deadline, clock=self._clock, sleep=self._sleep, spin_s=self._spin_s
        )


__all__ = [
    "AdaptiveRate",
    "AdaptiveRateLimiter",
    "AdaptiveTuning",
    "PaceState",
    "PoolFeedback",
    "Reservation",
    "SharedAdaptiveRateLimiter",
    "step",
    "wait_until",
]
