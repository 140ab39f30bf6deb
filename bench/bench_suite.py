"""Benchmark suite: each figure of `provisioner` next to a yardstick from the same run.

    .venv/bin/python bench/bench_suite.py [--quick] [--rows 1,3] [--no-pin]

Every row starts the emulator (``--no-unique-names``) in its own process on 127.0.0.1,
runs the real CLI or a peer as a child process, and stops what it started. With two or
more CPUs the emulator is pinned to one and every client to another (``--no-pin``: not).
Rows (full sizes; ``--quick`` uses about a quarter):

1. latency-bound: 5,000 specs, 50 ms latency, ``--concurrency 64 --rate 0``;
   creates/s (the CLI's own summary) against the ideal 64 / 50 ms = 1,280/s; >= 0.9.
2. CPU-bound: 20,000 specs, no latency; the CLI's creates/s against ``bench/bare_loop.py``
   (a bare aiohttp loop, the same HTTP client) on the same server: the cost budget of what
   provisioner adds per spec. Five back-to-back pairs, alternating which goes first; ratio =
   the median pair's CLI creates/s / bare creates/s; >= 0.75. CPU-seconds per 1,000 specs
   of each are in the figures.
3. rate-bound: 2,000 specs at ``--rate 200``, server without a limit; creates/s within
   5 % of 200, and the most creates in any 1 s window of the server's ``created_at``
   (list route) at most 200 + burst 1.
4. memory: ``provisioner validate`` of 1,000,000 specs; peak RSS against 150 MB
   (10^6 bytes), and specs/s. 4b: ``provisioner run`` of the same file (no latency,
   ``--concurrency 64 --rate 0``): peak RSS against 150 MB, and against a run of a
   fiftieth of it (flat: about 1x). The slowest row (about 3 minutes in full).
5. adaptive: 6,000 specs (30 s at the limit: the figure of merit of a controller is
   where it settles, and a 10 s job is a third start-up and a 1 s Retry-After tail),
   server ``--rate-limit 200 --retry-after 1``, client ``--rate auto``;
   creates/s against the server's 200/s, >= 0.85, and a share of 429s under 10 %; stopped
   (SIGTERM) after 20 s + 5x the ideal time. "n/a" while ``provisioner run --help``
   does not list ``auto`` for ``--rate``.
6. peers on row 1's server setup: ``xargs -P 32 curl`` and the bare loop, each against
   its own ideal (in flight / latency); for information.
7, 8. queue mode (bench/queue_rows.py, a Redis at ``REDIS_URL``): a worker's CPU per
   spec against run's (<= 1.5x), 4 workers against 1 (>= 3.5x), and Redis's memory
   after 100,000 specs through the queue (< 50 MB above empty, results stream flat).

CPU time and peak RSS come from ``os.wait4`` of the one child measured (the same
numbers as ``getrusage(RUSAGE_CHILDREN)`` deltas, without the other children). Prints
the machine, one table and a JSON line with every figure. On 2 cores the full run
takes about 3 minutes, ``--quick`` about 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench_run import TOKEN
from harness import (
    BARE_LOOP,
    BURST,
    CONCURRENCY,
    CURL_PARALLEL,
    FULL,
    LATENCY_MS,
    MEMORY_TARGET_MB,
    QUICK,
    RATE_PER_S,
    RUN_MEMORY_TIMEOUT_S,
    Child,
    Context,
    Row,
    admin,
    cli_figures,
    created_times,
    emulator,
    failure,
    max_in_window,
    run_child,
    run_cli,
    shortfall,
    verdict,
)
from queue_rows import ROWS as QUEUE_ROWS


def run_bare(ctx: Context, url: str, jobs: Path) -> tuple[dict[str, Any], Child]:
    """``bench/bare_loop.py`` on ``jobs``; return its JSON line and measures."""
    command = [sys.executable, str(BARE_LOOP), url, str(jobs), str(CONCURRENCY)]
    child = run_child(command, ctx)
    if child.returncode != 0:
        raise failure("bare_loop.py", child)
    return json.loads(child.output.strip().splitlines()[-1]), child


def run_curl(ctx: Context, url: str, count: int) -> Child:
    """``xargs -P 32 curl``: one process per create, each with its own key."""
    body = ctx.workdir / "curl-body.json"
    body.write_text(json.dumps({"name": "curl-peer", "config": {"type": "cloud"}}))
    headers = ctx.workdir / "curl-headers.txt"
    headers.write_text(
        f"Authorization: Bearer {TOKEN}\nContent-Type: application/json\n"
    )
    keys = ctx.workdir / "curl-keys.txt"
    keys.write_text("".join(f"{uuid.uuid4()}\n" for _ in range(count)))
    command = [
        "xargs", "-P", str(CURL_PARALLEL), "-I{}",
        "curl", "-s", "-o", "/dev/null", "--max-time", "30", "-w", "%{http_code}\\n",
        "-H", f"@{headers}", "-H", "Idempotency-Key: {}",
        "--data-binary", f"@{body}", f"{url}/environments",
    ]  # fmt: skip
    return run_child(command, ctx, stdin=keys)


UNLIMITED = ("--concurrency", str(CONCURRENCY), "--rate", "0")
IDEAL_PER_S = CONCURRENCY / (LATENCY_MS / 1000)


def row_latency(ctx: Context) -> list[Row]:
    count = ctx.sizes.latency_specs
    jobs = ctx.jobs("latency", count)
    with emulator(ctx, "--latency-ms", f"{LATENCY_MS:g}") as url:
        summary, child = run_cli(ctx, url, jobs, *UNLIMITED)
    figures = {**cli_figures(summary, child, count), "ideal_per_s": IDEAL_PER_S}
    ratio = figures["creates_per_s"] / IDEAL_PER_S
    is_ok = ratio >= 0.9 and figures["created"] == count
    return [
        Row(
            row=f"1 latency-bound ({count:,} specs)",
            measured=f"{figures['creates_per_s']:,.0f} creates/s{shortfall(figures)}",
            yardstick=f"ideal {IDEAL_PER_S:,.0f}/s (64 / 50 ms)",
            ratio=ratio, target=">= 0.90", ok=verdict(is_ok), figures=figures,
        )
    ]  # fmt: skip


CPU_PAIRS = 5  # row 2: back-to-back pairs of runs; the median pair's ratio counts


def row_cpu(ctx: Context) -> list[Row]:
    count = ctx.sizes.cpu_specs
    jobs = ctx.jobs("cpu", count)
    pairs: list[tuple[tuple[dict[str, Any], Child], tuple[dict[str, Any], Child]]] = []
    with emulator(ctx) as url:
        for number in range(CPU_PAIRS):
            # Alternate who goes first, so neither side always meets a warmer server.
            runs: dict[str, Any] = {}
            for side in ("bare", "cli") if number % 2 == 0 else ("cli", "bare"):
                admin(url, "/reset?state=true", "POST")
                runs[side] = (
                    run_bare(ctx, url, jobs)
                    if side == "bare"
                    else run_cli(ctx, url, jobs, *UNLIMITED)
                )
            pairs.append((runs["cli"], runs["bare"]))
    ratios = [cli[0]["creates_per_s"] / bare[0]["creates_per_s"] for cli, bare in pairs]
    (summary, child), (bare, bare_child) = pairs[
        ratios.index(statistics.median(ratios))
    ]
    figures = cli_figures(summary, child, count)
    cli_per_k = child.cpu_s / count * 1000
    bare_per_k = bare_child.cpu_s / count * 1000
    figures |= {
        "cpu_s_per_1k": cli_per_k,
        "bare": {**bare, "cpu_s": bare_child.cpu_s, "cpu_s_per_1k": bare_per_k},
        "pair_ratios": [round(ratio, 3) for ratio in ratios],
    }
    # The cost budget on aiohttp: what provisioner adds per spec (validation, pacing,
    # records, logs) may cost at most a quarter of a bare aiohttp loop's throughput.
    ratio = statistics.median(ratios)
    figures["cpu_ratio"] = bare_per_k / cli_per_k
    all_created = all(cli[0]["counts"]["created"] == count for cli, _ in pairs)
    is_ok = ratio >= 0.75 and all_created
    return [
        Row(
            row=f"2 CPU-bound ({count:,} specs)",
            measured=f"{figures['creates_per_s']:,.0f}/s, {cli_per_k:.2f} CPU-s/1k{shortfall(figures)}",
            yardstick=f"bare aiohttp loop {bare['creates_per_s']:,.0f}/s, {bare_per_k:.2f} CPU-s/1k",
            ratio=ratio, target=">= 0.75", ok=verdict(is_ok), figures=figures,
        )
    ]  # fmt: skip


def row_rate(ctx: Context) -> list[Row]:
    count = ctx.sizes.rate_specs
    jobs = ctx.jobs("rate", count)
    with emulator(ctx) as url:
        flags = ("--concurrency", str(CONCURRENCY), "--rate", f"{RATE_PER_S:g}")
        summary, child = run_cli(ctx, url, jobs, *flags)
        times = created_times(url)
    peak, ceiling = max_in_window(times), RATE_PER_S + BURST
    figures = cli_figures(summary, child, count)
    figures |= {"server_creates": len(times), "max_in_1s": peak, "ceiling": ceiling}
    ratio = figures["creates_per_s"] / RATE_PER_S
    in_band = abs(ratio - 1) <= 0.05 and figures["created"] == count
    return [
        Row(
            row=f"3a rate-bound ({count:,} specs)",
            measured=f"{figures['creates_per_s']:,.1f} creates/s{shortfall(figures)}",
            yardstick=f"--rate {RATE_PER_S:g}/s",
            ratio=ratio, target="0.95-1.05", ok=verdict(in_band), figures=figures,
        ),
        Row(
            row="3b rate-bound, busiest 1 s",
            measured=f"{peak} creates (server created_at)",
            yardstick=f"{RATE_PER_S:g} + burst {BURST} = {ceiling:g}",
            ratio=peak / ceiling, target="<= 1.00", ok=verdict(peak <= ceiling),
            figures={"max_in_1s": peak},
        ),
    ]  # fmt: skip


def row_memory(ctx: Context) -> list[Row]:
    count = ctx.sizes.memory_specs
    jobs = ctx.jobs("memory", count)
    command = [sys.executable, "-m", "provisioner", "validate", str(jobs)]
    child = run_child(command, ctx)
    if child.returncode != 0:
        raise failure("provisioner validate", child)
    per_s = count / child.wall_s
    figures = {
        "specs": count,
        "peak_rss_mb": round(child.maxrss_mb, 1),
        "specs_per_s": round(per_s),
        "process_wall_s": round(child.wall_s, 3),
        "cpu_s": round(child.cpu_s, 3),
        "file_mb": round(jobs.stat().st_size / 1e6, 1),
    }
    ratio = child.maxrss_mb / MEMORY_TARGET_MB
    return [
        Row(
            row=f"4 memory: validate {count:,} specs",
            measured=f"{child.maxrss_mb:.0f} MB peak RSS ({per_s:,.0f} specs/s)",
            yardstick=f"target {MEMORY_TARGET_MB:g} MB",
            ratio=ratio, target="<= 1.00", ok=verdict(ratio <= 1.0), figures=figures,
        )
    ]  # fmt: skip


def row_run_memory(ctx: Context) -> list[Row]:
    """``provisioner run`` of the memory row's file: peak RSS, flat in the job's size."""
    count = ctx.sizes.memory_specs
    jobs = ctx.jobs("memory", count)
    small = ctx.jobs("memory-small", count // 50)
    with emulator(ctx) as url:
        _, small_child = run_cli(ctx, url, small, *UNLIMITED)
        admin(url, "/reset?state=true", "POST")
        summary, child = run_cli(
            ctx, url, jobs, *UNLIMITED, timeout_s=RUN_MEMORY_TIMEOUT_S
        )
    figures = cli_figures(summary, child, count)
    figures |= {"peak_rss_mb": round(child.maxrss_mb, 1),
                "small_specs": count // 50, "small_peak_rss_mb": round(small_child.maxrss_mb, 1)}  # fmt: skip
    ratio = child.maxrss_mb / MEMORY_TARGET_MB
    is_ok = ratio <= 1.0 and figures["created"] == count
    growth = child.maxrss_mb / small_child.maxrss_mb
    return [
        Row(
            row=f"4b memory: run {count:,} specs",
            measured=f"{child.maxrss_mb:.0f} MB peak RSS ({growth:.2f}x that of {count // 50:,} specs){shortfall(figures)}",
            yardstick=f"target {MEMORY_TARGET_MB:g} MB",
            ratio=ratio, target="<= 1.00", ok=verdict(is_ok), figures=figures,
        )
    ]  # fmt: skip


def row_memories(ctx: Context) -> list[Row]:
    return row_memory(ctx) + row_run_memory(ctx)


def rate_accepts_auto(help_text: str) -> bool:
    """Whether the ``--rate`` entry of ``provisioner run --help`` mentions ``auto``."""
    lines = help_text.splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("--rate "):
            entry = [line]
            for more in lines[index + 1 :]:
                if more.strip().startswith("-"):
                    break
                entry.append(more)
            return "auto" in " ".join(entry)
    return False


def row_adaptive(ctx: Context) -> list[Row]:
    helped = run_child([sys.executable, "-m", "provisioner", "run", "--help"], ctx)
    if not rate_accepts_auto(helped.output):
        return [
            Row(
                row="5 adaptive", measured="n/a (--rate auto not implemented)",
                yardstick="-", ratio=None, target="-", ok="n/a",
                figures={"implemented": False},
            )
        ]  # fmt: skip
    count = ctx.sizes.adaptive_specs
    jobs = ctx.jobs("adaptive", count)
    limit = ("--rate-limit", f"{RATE_PER_S:g}", "--retry-after", "1")
    flags = ("--concurrency", str(CONCURRENCY), "--rate", "auto")
    # An adaptive client should need about count / RATE_PER_S; stop it well after that.
    timeout_s = 20 + 5 * count / RATE_PER_S
    with emulator(ctx, *limit) as url:
        summary, child = run_cli(ctx, url, jobs, *flags, timeout_s=timeout_s)
        stats = admin(url, "/stats")
    figures = cli_figures(summary, child, count)
    limited = stats["faults"]["rate_limited"]
    figures |= {"implemented": True, "rate_limited_429": limited,
                "requests": summary["requests"], "retries": summary["retries"]}  # fmt: skip
    ratio = figures["creates_per_s"] / RATE_PER_S
    share_429 = limited / max(1, summary["requests"])
    figures["share_429"] = round(share_429, 4)
    is_ok = ratio >= 0.85 and share_429 < 0.10 and figures["created"] == count
    return [
        Row(
            row=f"5 adaptive ({count:,} specs)",
            measured=f"{figures['creates_per_s']:,.1f} creates/s, {limited:,} x 429 ({share_429:.1%}){shortfall(figures)}",
            yardstick=f"server limit {RATE_PER_S:g}/s",
            ratio=ratio, target=">= 0.85, 429s < 10 %", ok=verdict(is_ok), figures=figures,
        )
    ]  # fmt: skip


def curl_row(ctx: Context, url: str) -> Row:
    requests = ctx.sizes.curl_requests
    if not (shutil.which("curl") and shutil.which("xargs")):
        return Row(row="6a peer: xargs -P 32 curl", measured="n/a (no curl)",
                   yardstick="-", ratio=None, target="info", ok="n/a")  # fmt: skip
    child = run_curl(ctx, url, requests)
    created = child.output.split().count("201")
    rate, ideal = created / child.wall_s, CURL_PARALLEL / (LATENCY_MS / 1000)
    figures = {"specs": requests, "created": created, "creates_per_s": round(rate, 1),
               "ideal_per_s": ideal, "process_wall_s": round(child.wall_s, 3)}  # fmt: skip
    return Row(
        row=f"6a peer: xargs -P 32 curl ({requests:,})",
        measured=f"{rate:,.0f} creates/s{shortfall(figures)}",
        yardstick=f"ideal {ideal:,.0f}/s (32 / 50 ms)",
        ratio=rate / ideal, target="info", ok="-", figures=figures,
    )  # fmt: skip


def row_peers(ctx: Context) -> list[Row]:
    count = ctx.sizes.latency_specs
    jobs = ctx.jobs("peers", count)
    with emulator(ctx, "--latency-ms", f"{LATENCY_MS:g}") as url:
        curl = curl_row(ctx, url)
        admin(url, "/reset?state=true", "POST")
        bare, child = run_bare(ctx, url, jobs)
    figures = {**bare, "specs": count, "ideal_per_s": IDEAL_PER_S,
               "process_wall_s": round(child.wall_s, 3), "cpu_s": round(child.cpu_s, 3)}  # fmt: skip
    rate = bare["creates_per_s"]
    bare_row = Row(
        row=f"6b peer: bare aiohttp loop ({count:,})",
        measured=f"{rate:,.0f} creates/s{shortfall(figures)}",
        yardstick=f"ideal {IDEAL_PER_S:,.0f}/s (64 / 50 ms)",
        ratio=rate / IDEAL_PER_S, target="info", ok="-", figures=figures,
    )  # fmt: skip
    return [curl, bare_row]


ROWS: dict[int, Callable[[Context], list[Row]]] = {
    1: row_latency,
    2: row_cpu,
    3: row_rate,
    4: row_memories,
    5: row_adaptive,
    6: row_peers,
    **QUEUE_ROWS,
}


def machine() -> dict[str, Any]:
    """nproc, the CPU model from /proc/cpuinfo and the Python version."""
    model = "unknown"
    with Path("/proc/cpuinfo").open() as info:
        for line in info:
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def pin(is_wanted: bool) -> tuple[set[int], str]:
    """Pin this process (so every client) to one CPU; return another for the emulator."""
    cpus = sorted(os.sched_getaffinity(0))
    if not is_wanted or len(cpus) < 2:
        return set(), "not pinned"
    server, client = cpus[0], cpus[1]
    os.sched_setaffinity(0, {client})
    return {server}, f"emulator pinned to CPU {server}, clients to CPU {client}"


def print_table(rows: list[Row]) -> None:
    head = ("row", "measured", "yardstick", "ratio", "target", "ok?")
    cells = [
        (r.row, r.measured, r.yardstick,
         "-" if r.ratio is None else f"{r.ratio:.2f}", r.target, r.ok)
        for r in rows
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in [head, *cells]) for i in range(len(head))]
    for line in [head, tuple("-" * width for width in widths), *cells]:
        padded = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("  ".join(padded).rstrip())


def run_rows(ctx: Context, numbers: list[int]) -> list[Row]:
    """Run the rows in order; a row that breaks becomes an ERROR line."""
    rows: list[Row] = []
    for number in numbers:
        started = time.perf_counter()
        print(f"row {number} ...", file=sys.stderr, flush=True)
        try:
            rows += ROWS[number](ctx)
        except Exception as exc:  # noqa: BLE001 - a broken row is reported, the others still run
            error = Row(row=f"{number} {ROWS[number].__name__}", measured=f"error: {exc}",
                        yardstick="-", ratio=None, target="-", ok="ERROR")  # fmt: skip
            rows.append(error)
        elapsed = time.perf_counter() - started
        print(f"row {number} done in {elapsed:.1f} s", file=sys.stderr, flush=True)
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        epilog="Rows: 1 latency-bound, 2 CPU-bound, 3 rate-bound, 4 memory, "
        "5 adaptive, 6 peers, 7 queue CPU and scale-out, 8 queue Redis memory.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument(
        "--rows", default="1,2,3,4,5,6,7,8", help="e.g. 1,3 (default: all)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs")
    args = parser.parse_args()
    try:
        args.rows = sorted({int(part) for part in args.rows.split(",") if part.strip()})
    except ValueError:
        parser.error(f"--rows: expected numbers like 1,3, got {args.rows!r}")
    if not args.rows or not set(args.rows) <= set(ROWS):
        parser.error(f"--rows: choose from {sorted(ROWS)}")
    return args


def main() -> None:
    args = parse_args()
    sizes = QUICK if args.quick else FULL
    server_cpus, pinning = pin(not args.no_pin)
    host = machine()
    print(f"machine: nproc {host['nproc']}, {host['cpu']}, Python {host['python']}")
    print(f"sizes: {'quick' if args.quick else 'full'} {asdict(sizes)}; {pinning}")
    sys.stdout.flush()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        ctx = Context(workdir=Path(tmp), sizes=sizes, server_cpus=server_cpus)
        rows = run_rows(ctx, args.rows)
    total_s = time.perf_counter() - started
    print_table(rows)
    report = {
        "machine": host, "quick": args.quick, "sizes": asdict(sizes),
        "pinning": pinning, "total_s": round(total_s, 1),
        "rows": [
            {"row": r.row, "measured": r.measured, "yardstick": r.yardstick,
             "ratio": None if r.ratio is None else round(r.ratio, 4),
             "target": r.target, "ok": r.ok, **r.figures}
            for r in rows
        ],
    }  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
