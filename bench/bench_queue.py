"""Benchmark: queue-mode scale-out, 1 worker against N workers on one stream.

Starts the emulator in its own process with a fixed latency (so the server's latency is
the limit, not our CPU), enqueues the same job twice on fresh streams of one Redis, drains
the first with one ``provisioner worker`` and the second with N of them (each
``--exit-when-empty``), and prints the drain times and their ratio. Both sides run in one
invocation, so a noisy machine moves them together. Target: 4 workers at least 3.2x one.

    python bench/bench_queue.py [--specs 2000] [--workers 4] [--concurrency 8] [--latency-ms 100]
    REDIS_URL=redis://127.0.0.1:6379/0 python bench/bench_queue.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench_run import TOKEN, start_emulator, write_jobs

CLI = [sys.executable, "-m", "provisioner"]


def env() -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    values["QODER_PAT"] = TOKEN
    return values


def enqueue(jobs: Path, redis: str, stream: str) -> None:
    subprocess.run(
        [
            *CLI,
            "enqueue",
            str(jobs),
            "--redis",
            redis,
            "--stream",
            stream,
            "--log-format",
            "json",
        ],
        env=env(),
        check=True,
        capture_output=True,
    )


def drain(
    workers: int, *, redis: str, stream: str, api_url: str, concurrency: int
) -> float:
    """Seconds for ``workers`` processes to drain ``stream`` (from their start to the last exit)."""
    args = [
        "worker", "--redis", redis, "--stream", stream, "--api-url", api_url, "--rate", "0",
        "--concurrency", str(concurrency), "--exit-when-empty", "--log-format", "json",
        "--log-level", "warning",
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*CLI, *args, "--consumer", f"bench-{i}"],
            env=env(),
            stderr=subprocess.DEVNULL,
        )
        for i in range(workers)
    ]
    codes = [proc.wait() for proc in procs]
    if any(codes):
        raise SystemExit(f"a worker failed: exit codes {codes}")
    return result_span_s(redis, stream)


def result_span_s(redis: str, stream: str) -> float:
    """Seconds between the first and the last entry of the results stream."""
    key = f"provisioner:{{{stream}}}:results"
    ids = []
    for command in (
        ["XRANGE", key, "-", "+", "COUNT", "1"],
        ["XREVRANGE", key, "+", "-", "COUNT", "1"],
    ):
        out = subprocess.run(
            ["redis-cli", "-u", redis, *command],  # noqa: S607 - the Redis client on PATH
            check=True,
            capture_output=True,
            text=True,
        )
        ids.append(int(out.stdout.split()[0].split("-")[0]))
    return (ids[1] - ids[0]) / 1000


def purge(redis: str, stream: str) -> None:
    keys = [
        f"provisioner:{{{stream}}}:{part}"
        for part in ("specs", "results", "dead", "outcomes", "rate")
    ]
    subprocess.run(
        ["redis-cli", "-u", redis, "DEL", *keys],  # noqa: S607 - the Redis client on PATH
        check=False,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8, help="per worker")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    opts = parser.parse_args()
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    emulator, api_url = start_emulator(opts.latency_ms)
    streams = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        with tempfile.TemporaryDirectory() as folder:
            times = []
            for stream, workers, prefix in (
                (streams[0], 1, "one"),
                (streams[1], opts.workers, "pool"),
            ):
                jobs = Path(folder) / f"{prefix}.jsonl"
                write_jobs(jobs, opts.specs, prefix)
                enqueue(jobs, redis, stream)
                times.append(
                    drain(
                        workers,
                        redis=redis,
                        stream=stream,
                        api_url=api_url,
                        concurrency=opts.concurrency,
                    )
                )
    finally:
        emulator.terminate()
        emulator.wait()
        for stream in streams:
            purge(redis, stream)
    ideal_one = opts.concurrency / (opts.latency_ms / 1000)
    print(
        f"queue scale-out: {opts.specs} specs, latency {opts.latency_ms:g} ms, --concurrency {opts.concurrency} per worker"
    )
    print(f"{'workers':>8} {'drain s':>9} {'creates/s':>10} {'of ideal':>9}")
    for workers, seconds in ((1, times[0]), (opts.workers, times[1])):
        rate = opts.specs / seconds
        print(
            f"{workers:>8} {seconds:>9.2f} {rate:>10.1f} {rate / (ideal_one * workers):>9.2f}"
        )
    speedup = times[0] / times[1]
    target = 0.8 * opts.workers
    print(
        f"speed-up: {speedup:.2f}x with {opts.workers} workers (target {target:.1f}x): {'ok' if speedup >= target else 'BELOW TARGET'}"
    )
    print(
        json.dumps(
            {
                "specs": opts.specs,
                "workers": opts.workers,
                "one_s": round(times[0], 3),
                "pool_s": round(times[1], 3),
                "speedup": round(speedup, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
