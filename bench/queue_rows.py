"""The queue-mode rows of the benchmark suite (7 and 8): they need a Redis.

7a. CPU per spec: ``provisioner worker --exit-when-empty`` draining a stream against
    ``provisioner run`` of the same file, server without latency, both ``--concurrency 64
    --rate 0``; the worker's CPU-seconds per spec over run's (os.wait4 of each child),
    the median of three alternating pairs; <= 1.5.
7b. scale-out: the same job drained by 1 worker and by 4 (``--concurrency 8`` each,
    100 ms latency); drain time of one over that of four; >= 3.5.
8.  Redis memory: 100,000 specs enqueued, then drained by one worker with the default
    retention; ``used_memory`` at the end above that of the empty queue (target < 50 MB),
    and the results stream's size once trimming starts against at the end (flat: <= 1.2x).

``REDIS_URL`` names the Redis (default ``redis://127.0.0.1:6379/0``); every stream is
new and deleted afterwards. Without a Redis the rows say "n/a".
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from harness import (
    CONCURRENCY,
    Child,
    Context,
    Row,
    admin,
    child_env,
    emulator,
    failure,
    run_child,
    run_cli,
    verdict,
)

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CPU_PAIRS = 3
SCALE_WORKERS = 4
SCALE_CONCURRENCY = 8
SCALE_LATENCY_MS = 100.0
CLI = [sys.executable, "-m", "provisioner"]
QUIET = ("--log-level", "warning", "--log-format", "json")


def reachable() -> redis.Redis | None:
    """A client on ``REDIS_URL``, or ``None`` when it does not answer."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError:
        return None
    return client


def keys_of(stream: str) -> list[str]:
    """Every key a queue can have (outcome buckets included), for the clean-up."""
    client = redis.Redis.from_url(REDIS_URL)
    return [key.decode() for key in client.scan_iter(f"provisioner:{{{stream}}}:*")]


def purge(stream: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = keys_of(stream)
    if keys:
        client.delete(*keys)


def enqueue(ctx: Context, jobs: Path, stream: str) -> None:
    """``provisioner enqueue`` (not measured)."""
    command = [*CLI, "enqueue", str(jobs), "--redis", REDIS_URL, "--stream", stream]
    child = run_child([*command, *QUIET], ctx, timeout_s=600)
    if child.returncode != 0:
        raise failure("provisioner enqueue", child)


def worker_command(
    stream: str, api_url: str, concurrency: int, name: str, *, until_empty: bool = True
) -> list[str]:
    command = [
        *CLI, "worker", "--redis", REDIS_URL, "--stream", stream, "--api-url", api_url,
        "--rate", "0", "--concurrency", str(concurrency), "--consumer", name, *QUIET,
    ]  # fmt: skip
    return [*command, "--exit-when-empty"] if until_empty else command


def drain_one(ctx: Context, stream: str, api_url: str, concurrency: int) -> Child:
    """One worker drains ``stream``; measured alone (os.wait4)."""
    command = worker_command(stream, api_url, concurrency, "bench-0")
    child = run_child(command, ctx, timeout_s=900)
    if child.returncode != 0:
        raise failure("provisioner worker", child)
    return child


def drain_many(
    ctx: Context, jobs: Path, workers: int, *, stream: str, api_url: str
) -> float:
    """``workers`` workers drain ``jobs`` from ``stream``: seconds from the first record
    to the last (the results stream's entry ids, on Redis's clock).

    The workers start first and the job is enqueued once each has joined the group,
    so the figure is the pool's pace, not the processes' staggered start-up.
    """
    client = redis.Redis.from_url(REDIS_URL)
    results = f"provisioner:{{{stream}}}:results"
    waiting = readers(client)
    procs = [
        subprocess.Popen(
            worker_command(stream, api_url, SCALE_CONCURRENCY, f"bench-{i}", until_empty=False),
            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i in range(workers)
    ]  # fmt: skip
    try:
        wait_until(lambda: readers(client) >= waiting + workers, "the workers to wait")
        enqueue(ctx, jobs, stream)
        count = sum(1 for _ in jobs.open())
        wait_until(lambda: client.xlen(results) >= count, "the queue to drain", 600)
    finally:
        for proc in procs:
            proc.terminate()
        codes = [proc.wait(60) for proc in procs]
    if any(codes):
        raise RuntimeError(f"a worker failed: exit codes {codes}")
    first = client.xrange(results, count=1)[0][0]
    last = client.xrevrange(results, count=1)[0][0]
    return (_ms(last) - _ms(first)) / 1000


def readers(client: redis.Redis) -> int:
    """How many clients wait in XREADGROUP (Redis 7.0 adds a consumer to the group
    only once it gets a message, so the group cannot tell who is waiting)."""
    return sum(c.get("cmd") == "xreadgroup" for c in client.client_list())


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


def no_redis(*names: str) -> list[Row]:
    return [
        Row(row=name, measured=f"n/a (no Redis at {REDIS_URL})", yardstick="-",
            ratio=None, target="-", ok="n/a")
        for name in names
    ]  # fmt: skip


def row_queue(ctx: Context) -> list[Row]:
    if reachable() is None:
        return no_redis("7a queue CPU per spec", "7b queue scale-out")
    return [cpu_row(ctx), scale_out_row(ctx)]


def cpu_row(ctx: Context) -> Row:
    count = ctx.sizes.queue_cpu_specs
    jobs = ctx.jobs("queue-cpu", count)
    flags = ("--concurrency", str(CONCURRENCY), "--rate", "0")
    pairs: list[tuple[float, float]] = []
    with emulator(ctx) as url:
        for number in range(CPU_PAIRS):
            runs: dict[str, float] = {}
            for side in ("run", "worker") if number % 2 == 0 else ("worker", "run"):
                admin(url, "/reset?state=true", "POST")
                if side == "run":
                    summary, child = run_cli(ctx, url, jobs, *flags)
                    if summary["counts"]["created"] != count:
                        raise failure("provisioner run (not all created)", child)
                    runs[side] = child.cpu_s / count
                else:
                    stream = f"bench-{uuid.uuid4().hex[:8]}"
                    try:
                        enqueue(ctx, jobs, stream)
                        child = drain_one(ctx, stream, url, CONCURRENCY)
                        creations = admin(url, "/stats")["creations"]
                        if creations != count:
                            raise failure(
                                f"worker ({creations} of {count} created)", child
                            )
                    finally:
                        purge(stream)
                    runs[side] = child.cpu_s / count
            pairs.append((runs["worker"], runs["run"]))
    ratios = [worker / run for worker, run in pairs]
    worker_s, run_s = pairs[ratios.index(statistics.median(ratios))]
    ratio = statistics.median(ratios)
    figures = {
        "specs": count, "worker_cpu_ms_per_spec": round(worker_s * 1000, 4),
        "run_cpu_ms_per_spec": round(run_s * 1000, 4),
        "pair_ratios": [round(r, 3) for r in ratios],
    }  # fmt: skip
    return Row(
        row=f"7a queue CPU per spec ({count:,} specs)",
        measured=f"worker {worker_s * 1000:.3f} CPU-ms/spec",
        yardstick=f"run {run_s * 1000:.3f} CPU-ms/spec",
        ratio=ratio, target="<= 1.50", ok=verdict(ratio <= 1.5), figures=figures,
    )  # fmt: skip


def scale_out_row(ctx: Context) -> Row:
    count = ctx.sizes.scale_out_specs
    jobs = ctx.jobs("scale-out", count)
    times: list[float] = []
    with emulator(ctx, "--latency-ms", f"{SCALE_LATENCY_MS:g}") as url:
        for workers in (1, SCALE_WORKERS):
            admin(url, "/reset?state=true", "POST")
            stream = f"bench-{uuid.uuid4().hex[:8]}"
            try:
                times.append(drain_many(ctx, jobs, workers, stream=stream, api_url=url))
            finally:
                purge(stream)
    ratio = times[0] / times[1]
    figures = {
        "specs": count,
        "one_s": round(times[0], 3),
        "pool_s": round(times[1], 3),
    }
    return Row(
        row=f"7b queue scale-out ({count:,} specs)",
        measured=f"{SCALE_WORKERS} workers {count / times[1]:,.0f}/s",
        yardstick=f"1 worker {count / times[0]:,.0f}/s (8 in flight, 100 ms)",
        ratio=ratio, target=">= 3.50", ok=verdict(ratio >= 3.5), figures=figures,
    )  # fmt: skip


@dataclass(slots=True)
class MemorySampler:
    """``used_memory`` and the results stream's size every ``every_s`` in a thread."""

    client: redis.Redis
    results_key: str
    every_s: float = 0.5
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(self.sample())

    def sample(self) -> dict[str, float]:
        pipe = self.client.pipeline(transaction=False)
        pipe.info("memory")
        pipe.xlen(self.results_key)
        pipe.memory_usage(self.results_key, samples=0)
        info, length, usage = pipe.execute()
        return {
            "used": info["used_memory"],
            "results": length,
            "results_bytes": usage or 0,
        }

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def row_queue_memory(ctx: Context) -> list[Row]:
    client = reachable()
    if client is None:
        return no_redis("8 queue Redis memory")
    count = ctx.sizes.queue_memory_specs
    jobs = ctx.jobs("queue-memory", count)
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    results_key = f"provisioner:{{{stream}}}:results"
    try:
        with emulator(ctx) as url:
            empty = client.info("memory")["used_memory"]
            enqueue(ctx, jobs, stream)
            queued = client.info("memory")["used_memory"]
            with MemorySampler(client, results_key) as sampler:
                drain_one(ctx, stream, url, CONCURRENCY)
            end = sampler.sample()
            breakdown = key_sizes(client, stream)
    finally:
        purge(stream)
    return [
        memory_row(
            count, empty=empty, queued=queued, end=end,
            samples=sampler.samples, breakdown=breakdown,
        )
    ]  # fmt: skip


def key_sizes(client: redis.Redis, stream: str) -> dict[str, int]:
    """``MEMORY USAGE`` of each key of the queue (outcome buckets summed)."""
    sizes: dict[str, int] = {}
    for key in keys_of(stream):
        role = key.split(":", 2)[2].split(":")[0]
        sizes[role] = sizes.get(role, 0) + int(client.memory_usage(key, samples=0) or 0)
    return sizes


def memory_row(
    count: int,
    *,
    empty: int,
    queued: int,
    end: dict[str, float],
    samples: list[dict[str, float]],
    breakdown: dict[str, int],
) -> Row:
    cap = max((s["results"] for s in samples), default=0)
    trimmed = [s for s in samples if s["results"] >= 0.95 * cap]
    at_trim = trimmed[0] if trimmed else end
    above_mb = (end["used"] - empty) / 1e6
    flat = (
        end["results_bytes"] / at_trim["results_bytes"]
        if at_trim["results_bytes"]
        else 0.0
    )
    figures: dict[str, Any] = {
        "specs": count, "empty_mb": round(empty / 1e6, 2),
        "queued_above_mb": round((queued - empty) / 1e6, 2), "end_above_mb": round(above_mb, 2),
        "results_cap": cap, "results_mb_at_trim": round(at_trim["results_bytes"] / 1e6, 2),
        "results_mb_at_end": round(end["results_bytes"] / 1e6, 2), "results_flat": round(flat, 3),
        "keys_mb": {k: round(v / 1e6, 2) for k, v in sorted(breakdown.items())},
        "outcome_bytes_per_spec": round(breakdown.get("outcomes", 0) / count, 1),
    }  # fmt: skip
    is_ok = above_mb < 50 and flat <= 1.2
    return Row(
        row=f"8 queue Redis memory ({count:,} specs)",
        measured=f"{above_mb:.1f} MB above empty at the end; results {flat:.2f}x from trim start",
        yardstick=f"{(queued - empty) / 1e6:.0f} MB while all were queued",
        ratio=above_mb / 50, target="< 50 MB, flat <= 1.2x", ok=verdict(is_ok), figures=figures,
    )  # fmt: skip


ROWS: dict[int, Callable[[Context], list[Row]]] = {7: row_queue, 8: row_queue_memory}
