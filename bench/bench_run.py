"""Benchmark: `provisioner run` throughput against the ideal, and its memory.

Starts the emulator in its own process with a fixed latency, then runs the real CLI as
another process and compares creates/s with the ideal ``concurrency / latency`` (or the
rate limit, when lower). Ratios are measured in one run, so a noisy machine moves both
sides together. Peak RSS of the CLI shows that memory stays flat as the job grows.

    python bench/bench_run.py [--specs 2000] [--concurrency 32] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOKEN = "pt-bench-token"  # noqa: S105 - a throwaway token for a local emulator


def start_emulator(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provisioner.emulator",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--latency-ms",
            str(latency_ms),
            "--no-unique-names",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.stdout is None:
        raise RuntimeError("the emulator's stdout is not a pipe")
    line = proc.stdout.readline()
    url = next(word for word in line.split() if word.startswith("http://"))
    return proc, url


def write_jobs(path: Path, count: int, prefix: str) -> None:
    with path.open("w") as fh:
        for i in range(count):
            spec = {
                "name": f"{prefix}-{i:07d}",
                "config": {"type": "cloud", "networking": {"type": "unrestricted"}},
                "metadata": {"team": f"t{i}"},
            }
            fh.write(json.dumps(spec) + "\n")


def run_cli(
    url: str, jobs: Path, workdir: Path, *flags: str
) -> tuple[dict[str, object], float]:
    """Run the CLI; return its summary and the peak RSS (MiB) of the child."""
    summary = workdir / "summary.json"
    results = workdir / f"results-{time.monotonic_ns()}.jsonl"
    env = {**os.environ, "QODER_PAT": TOKEN}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [
            sys.executable,
            "-m",
            "provisioner",
            "run",
            str(jobs),
            "--api-url",
            url,
            "--results",
            str(results),
            "--summary",
            str(summary),
            "--log-level",
            "warning",
            *flags,
        ],
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    data = json.loads(summary.read_text())
    return data, max(peak, before) / 1024


def throughput(url: str, workdir: Path, args: argparse.Namespace) -> None:
    jobs = workdir / "throughput.jsonl"
    write_jobs(jobs, args.specs, f"tp{time.time_ns()}")
    flags = ["--concurrency", str(args.concurrency), "--rate", str(args.rate)]
    summary, _ = run_cli(url, jobs, workdir, *flags)
    ideal = args.concurrency / (args.latency_ms / 1000)
    if args.rate:
        ideal = min(ideal, args.rate)
    rate = float(summary["creates_per_s"])  # type: ignore[arg-type]
    print(
        f"throughput: {args.specs} specs, concurrency {args.concurrency}, latency {args.latency_ms} ms, "
        f"rate {'unlimited' if not args.rate else args.rate}"
    )
    print(
        f"  achieved {rate:.0f} creates/s; ideal {ideal:.0f}/s; ratio {rate / ideal:.2f}"
    )


def memory(url: str, workdir: Path, args: argparse.Namespace) -> None:
    rows = []
    for count in (args.specs, args.specs * 10):
        jobs = workdir / f"memory-{count}.jsonl"
        write_jobs(jobs, count, f"mem{count}-{time.time_ns()}")
        _, peak = run_cli(url, jobs, workdir, "--concurrency", "64", "--rate", "0")
        rows.append((count, peak))
    print("memory (peak RSS of the CLI process, so far in this benchmark):")
    for count, peak in rows:
        print(f"  {count:>8} specs: {peak:.0f} MiB")
    print(f"  growth for 10x the specs: {rows[1][1] / rows[0][1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args()
    emulator, url = start_emulator(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            throughput(url, Path(tmp), args)
        emulator.terminate()
        emulator.wait(10)
        emulator, url = start_emulator(0)
        with tempfile.TemporaryDirectory() as tmp:
            memory(url, Path(tmp), args)
    finally:
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    main()
