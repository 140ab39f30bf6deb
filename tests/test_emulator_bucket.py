"""The emulator's rate limit: a token bucket that means exactly its rate."""

from __future__ import annotations

from provisioner.emulator.faults import TokenBucket


def test_requests_exactly_one_interval_apart_all_pass_on_a_millisecond_clock():
    """At 200/s, requests 5 ms apart by a clock that ticks in whole ms (uvloop's) are never refused."""
    bucket = TokenBucket()
    stamps = [(1_000_000 + 5 * i) / 1000 for i in range(2000)]
    assert all(bucket.take(200, 1, now) for now in stamps)


def test_a_request_early_by_a_millisecond_is_refused_then_the_next_on_time_passes():
    """4 ms after the last at 200/s: 429; 1 ms later the same bucket lets one through."""
    bucket = TokenBucket()
    assert bucket.take(200, 1, 10.000)
    assert not bucket.take(200, 1, 10.004)
    assert bucket.take(200, 1, 10.005)
    assert not bucket.take(200, 1, 10.006)
