"""Emulator throughput: creates per second on one core, driven from another core.

    python bench/bench_emulator.py [--creates 20000] [--concurrency 64]
                                   [--client aiohttp|raw] [--idempotency-keys]

The emulator runs as ``python -m provisioner.emulator --port 0`` pinned to one CPU; a
separate load-generator process, pinned to another CPU, sends ``--creates`` creates with
unique names over ``--concurrency`` keep-alive connections on loopback and measures each
one. ``--client raw`` uses a minimal HTTP/1.1 client on asyncio streams, to show whether
the aiohttp client or the server is the bottleneck. Prints creates/s, p50/p99 latency,
the CPU each side used, and the ratio to the 3,000 creates/s goal.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

GOAL_PER_S = 3000.0
READY_TIMEOUT_S = 15.0
RUN_TIMEOUT_S = 300.0
WARMUP = 500


def _body(run: str, index: int) -> bytes:
    return orjson.dumps(
        {
            "name": f"bench-{run}-{index}",
            "config": {
                "type": "cloud",
                "networking": {"type": "limited", "allowed_hosts": ["pypi.org"]},
                "packages": {"pip": ["requests"]},
            },
            "metadata": {"team": "bench"},
        }
    )


async def _aiohttp_driver(
    url: str, concurrency: int
) -> tuple[
    Callable[[bytes, str | None], Awaitable[int]], Callable[[], Awaitable[None]]
]:
    token = os.environ["QODER_PAT"]
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        },
    )

    async def create(body: bytes, key: str | None) -> int:
        headers = None if key is None else {"Idempotency-Key": key}
        async with session.post(
            f"{url}/environments", data=body, headers=headers
        ) as response:
            await response.read()
            return response.status

    return create, session.close


async def _raw_driver(
    url: str, concurrency: int
) -> tuple[
    Callable[[bytes, str | None], Awaitable[int]], Callable[[], Awaitable[None]]
]:
    """Keep-alive connections in a pool; one request at a time on each."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.rpartition(":")
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.Queue()
    )
    for _ in range(concurrency):
        pool.put_nowait(await asyncio.open_connection(host, int(port)))
    head = (
        f"POST /{path}/environments HTTP/1.1\r\nHost: {host_port}\r\n"
        f"Authorization: Bearer {os.environ['QODER_PAT']}\r\nContent-Type: application/json\r\n"
    ).encode()

    async def create(body: bytes, key: str | None) -> int:
        reader, writer = await pool.get()
        extra = b"" if key is None else f"Idempotency-Key: {key}\r\n".encode()
        length = b"Content-Length: %d\r\n\r\n" % len(body)
        writer.write(head + extra + length + body)
        headers = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in headers.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        pool.put_nowait((reader, writer))
        return int(headers[9:12])

    async def close() -> None:
        while not pool.empty():
            _, writer = pool.get_nowait()
            writer.close()

    return create, close


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    """Send ``--creates`` creates to the ``--worker`` URL, ``--concurrency`` at a time."""
    make = _raw_driver if args.client == "raw" else _aiohttp_driver
    create, close = await make(args.worker, args.concurrency)
    run = os.urandom(4).hex()
    try:
        for start in range(0, WARMUP, args.concurrency):
            warm = (f"warm-{run}", range(start, start + args.concurrency))
            await asyncio.gather(*(create(_body(warm[0], i), None) for i in warm[1]))
        cpu_before, server_before = time.process_time(), _cpu_seconds(args.server_pid)
        started = time.perf_counter()
        latencies, failures = await _measure(create, run, args)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        server_cpu = _cpu_seconds(args.server_pid) - server_before
    finally:
        await close()
    latencies.sort()
    return {
        "creates": args.creates,
        "failures": failures,
        "elapsed_s": elapsed,
        "client_cpu_s": cpu,
        "server_cpu_s": server_cpu,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


async def _measure(
    create: Callable[[bytes, str | None], Awaitable[int]],
    run: str,
    args: argparse.Namespace,
) -> tuple[list[float], int]:
    """The latency of every create, and how many did not answer 201."""
    counter = itertools.count()
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while (index := next(counter)) < args.creates:
            body = _body(run, index)
            key = f"{run}-{index}" if args.idempotency_keys else None
            started = time.perf_counter()
            status = await create(body, key)
            latencies.append(time.perf_counter() - started)
            failures += status != 201

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return latencies, failures


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_server(cpu: int) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "provisioner.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    os.sched_setaffinity(server.pid, {cpu})
    if server.stdout is None:
        raise SystemExit("no pipe to the emulator")
    ready, _, _ = select.select([server.stdout], [], [], READY_TIMEOUT_S)
    line = server.stdout.readline() if ready else ""
    if " listening on " not in line:
        server.kill()
        raise SystemExit(f"the emulator did not start: {line!r}")
    return server, line.split(" listening on ")[1].split()[0]


def _run_load(args: argparse.Namespace, url: str, server_pid: int) -> dict[str, Any]:
    command = [
        sys.executable, __file__, "--worker", url,
        "--creates", str(args.creates), "--concurrency", str(args.concurrency),
        "--client", args.client, "--server-pid", str(server_pid),
        *(["--idempotency-keys"] if args.idempotency_keys else []),
    ]  # fmt: skip
    load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    os.sched_setaffinity(load.pid, {args.client_cpu})
    try:
        out, _ = load.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        load.kill()
        load.wait()
        raise SystemExit(
            f"the load generator did not finish in {RUN_TIMEOUT_S:.0f} s"
        ) from None
    if load.returncode != 0:
        raise SystemExit(f"the load generator failed with exit code {load.returncode}")
    result: dict[str, Any] = orjson.loads(out)
    return result


def report(result: dict[str, Any], client: str, keys: bool) -> None:
    """Print the figures."""
    rate = result["creates"] / result["elapsed_s"]
    if keys:
        client += " client with Idempotency-Key"
    else:
        client += " client"
    print(
        f"emulator creates ({client}, 1 server core): {result['creates']} in {result['elapsed_s']:.2f} s"
    )
    print(
        f"  throughput   {rate:,.0f} creates/s ({rate / GOAL_PER_S:.2f}x the {GOAL_PER_S:,.0f}/s goal)"
    )
    print(
        f"  latency      p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms"
    )
    print(
        f"  server CPU   {result['server_cpu_s'] / result['elapsed_s']:.0%} of one core"
    )
    print(
        f"  client CPU   {result['client_cpu_s'] / result['elapsed_s']:.0%} of one core"
    )
    print(f"  failures     {result['failures']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--creates", type=int, default=20_000, help="measured creates (default 20000)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="requests in flight (default 64)"
    )
    parser.add_argument("--client", choices=("aiohttp", "raw"), default="aiohttp")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument(
        "--idempotency-keys",
        action="store_true",
        help="send a unique Idempotency-Key with every create, as provisioner does",
    )
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = asyncio.run(drive(args))
        sys.stdout.write(orjson.dumps(result).decode())
        return 0
    if len(os.sched_getaffinity(0)) < 2:
        print(
            "note: fewer than 2 CPUs available; server and client share one",
            file=sys.stderr,
        )
    # the emulator and the load generator inherit a one-off token (never on argv)
    os.environ["QODER_PAT"] = "pt-bench-" + os.urandom(12).hex()
    server, url = _start_server(args.server_cpu)
    try:
        result = _run_load(args, url, server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    report(result, args.client, args.idempotency_keys)
    return 0 if result["failures"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
