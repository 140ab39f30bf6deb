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
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_run import TOKEN, write_jobs

ROOT = Path(__file__).resolve().parent.parent
BARE_LOOP = Path(__file__).resolve().parent / "bare_loop.py"
API_PREFIX = "/api/v1/cloud"
CONCURRENCY = 64
LATENCY_MS = 50.0
RATE_PER_S = 200.0
BURST = 1
CURL_PARALLEL = 32
MEMORY_TARGET_MB = 150.0
READY_TIMEOUT_S = 15.0
CHILD_TIMEOUT_S = 240.0
RUN_MEMORY_TIMEOUT_S = 900.0
KILL_GRACE_S = 15.0


@dataclass(frozen=True, slots=True)
class Sizes:
    """How many specs each row sends."""

    latency_specs: int
    cpu_specs: int
    rate_specs: int
    adaptive_specs: int
    memory_specs: int
    curl_requests: int


FULL = Sizes(5_000, 20_000, 2_000, 6_000, 1_000_000, 2_000)
QUICK = Sizes(2_000, 5_000, 600, 2_000, 200_000, 500)


@dataclass(frozen=True, slots=True)
class Child:
    """One finished child process, measured by ``os.wait4``."""

    returncode: int
    wall_s: float
    cpu_s: float
    maxrss_mb: float
    output: str
    timed_out: bool


@dataclass(slots=True)
class Row:
    """One line of the table, and its figures for the JSON line."""

    row: str
    measured: str
    yardstick: str
    ratio: float | None
    target: str
    ok: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Context:
    """What every row gets: a scratch folder, the sizes, the CPUs to pin to."""

    workdir: Path
    sizes: Sizes
    server_cpus: set[int]

    def jobs(self, name: str, count: int) -> Path:
        """Write ``count`` specs with names unique to this file."""
        path = self.workdir / f"{name}-{count}.jsonl"
        if not path.exists():
            write_jobs(path, count, f"{name}-{uuid.uuid4().hex[:8]}")
        return path


def verdict(is_ok: bool) -> str:
    return "yes" if is_ok else "NO"


def child_env() -> dict[str, str]:
    """This environment without PROVISIONER_*/QODER_* settings, plus the bench token."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PROVISIONER_", "QODER_"))
    }
    return {**env, "QODER_PAT": TOKEN}


def run_child(
    command: list[str],
    ctx: Context,
    *,
    stdin: Path | None = None,
    timeout_s: float = CHILD_TIMEOUT_S,
) -> Child:
    """Run ``command`` to the end and measure it alone (``os.wait4``).

    After ``timeout_s`` it gets SIGTERM (the CLI then drains and writes its summary),
    KILL_GRACE_S later SIGKILL.
    """
    out = ctx.workdir / f"child-{uuid.uuid4().hex[:8]}.out"
    with out.open("w") as sink, (stdin or Path(os.devnull)).open("rb") as source:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            stdin=source,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=ROOT,
        )
        timers = [
            threading.Timer(timeout_s, proc.terminate),
            threading.Timer(timeout_s + KILL_GRACE_S, proc.kill),
        ]
        for timer in timers:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            for timer in timers:
                timer.cancel()
        wall_s = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Child(
        returncode=proc.returncode,
        wall_s=wall_s,
        cpu_s=usage.ru_utime + usage.ru_stime,
        maxrss_mb=usage.ru_maxrss * 1024 / 1e6,
        output=out.read_text(errors="replace"),
        timed_out=wall_s >= timeout_s,
    )


def failure(what: str, child: Child) -> RuntimeError:
    tail = " | ".join(child.output.strip().splitlines()[-3:])
    return RuntimeError(f"{what} exited {child.returncode}: {tail}")


@contextmanager
def emulator(ctx: Context, *flags: str) -> Iterator[str]:
    """Start ``python -m provisioner.emulator`` with ``flags``; yield its API URL."""
    command = [sys.executable, "-m", "provisioner.emulator", "--host", "127.0.0.1"]
    proc = subprocess.Popen(
        [*command, "--port", "0", "--no-unique-names", *flags],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        if ctx.server_cpus:
            os.sched_setaffinity(proc.pid, ctx.server_cpus)
        yield ready_url(proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def ready_url(proc: subprocess.Popen[str]) -> str:
    """Read the emulator's 'listening on URL' line, then keep draining its stdout."""
    if proc.stdout is None:
        raise RuntimeError("the emulator's stdout is not a pipe")
    ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
    line = proc.stdout.readline() if ready else ""
    if " listening on " not in line:
        raise RuntimeError(f"the emulator did not start: {line!r}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return line.split(" listening on ")[1].split()[0]


def call(url: str, method: str = "GET") -> Any:
    """One JSON request to the emulator, with the bench token."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    request = urllib.request.Request(url, method=method, headers=auth)  # noqa: S310 - a loopback http URL built here
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - same
        return json.load(response)


def admin(api_url: str, route: str, method: str = "GET") -> Any:
    return call(api_url.removesuffix(API_PREFIX) + "/_emulator" + route, method)


def created_times(api_url: str) -> list[float]:
    """Every environment's ``created_at`` (epoch seconds), sorted, via the list route."""
    base = f"{api_url}/environments?limit=100&include_archived=true"
    times: list[float] = []
    page = call(base)
    while True:
        times += [
            datetime.fromisoformat(e["created_at"]).timestamp() for e in page["data"]
        ]
        if not page.get("has_more") or not page.get("next_page"):
            return sorted(times)
        page = call(f"{base}&page={page['next_page']}")


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most timestamps in any half-open window of ``window_s`` (times sorted)."""
    best, left = 0, 0
    for right, moment in enumerate(times):
        while moment - times[left] >= window_s:
            left += 1
        best = max(best, right - left + 1)
    return best


def run_cli(
    ctx: Context, url: str, jobs: Path, *flags: str, timeout_s: float = CHILD_TIMEOUT_S
) -> tuple[dict[str, Any], Child]:
    """``provisioner run`` with a fresh result log; return its summary and measures."""
    tag = uuid.uuid4().hex[:8]
    summary = ctx.workdir / f"summary-{tag}.json"
    results = ctx.workdir / f"results-{tag}.jsonl"
    command = [
        sys.executable, "-m", "provisioner", "run", str(jobs), "--api-url", url,
        "--results", str(results), "--summary", str(summary),
        "--log-level", "warning", "--no-progress", *flags,
    ]  # fmt: skip
    child = run_child(command, ctx, timeout_s=timeout_s)
    if not summary.exists():
        raise failure("provisioner run", child)
    return json.loads(summary.read_text()), child


def cli_figures(summary: dict[str, Any], child: Child, specs: int) -> dict[str, Any]:
    """What the JSON line keeps of one ``provisioner run``."""
    return {
        "specs": specs,
        "created": summary["counts"]["created"],
        "failed": summary["counts"]["failed"],
        "creates_per_s": summary["creates_per_s"],
        "run_wall_s": summary["wall_s"],
        "process_wall_s": round(child.wall_s, 3),
        "cpu_s": round(child.cpu_s, 3),
        "timed_out": child.timed_out,
    }


def shortfall(figures: dict[str, Any]) -> str:
    """Empty when every spec was created, else e.g. ``, 586/600 created``."""
    note = ""
    if figures["created"] != figures["specs"]:
        note = f", {figures['created']:,}/{figures['specs']:,} created"
    return note + (", timed out" if figures.get("timed_out") else "")


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
        "5 adaptive, 6 peers.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--rows", default="1,2,3,4,5,6", help="e.g. 1,3 (default: all)")
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
