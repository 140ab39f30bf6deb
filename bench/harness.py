"""What every benchmark row shares: sizes, a measured child process, the emulator, the CLI."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    queue_cpu_specs: int
    scale_out_specs: int
    queue_memory_specs: int


FULL = Sizes(5_000, 20_000, 2_000, 6_000, 1_000_000, 2_000, 10_000, 2_000, 100_000)
QUICK = Sizes(2_000, 5_000, 600, 2_000, 200_000, 500, 3_000, 2_000, 25_000)


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
