"""Helpers that tests import; fixtures and hooks live in ``conftest.py``.

One of each: a poll (:func:`eventually`, :func:`eventually_sync`), a child
environment (:func:`child_env`), the CLI as a child process (:func:`run_cli` to the
end, :func:`spawn_cli` and :func:`start_cli` while it runs) and in this process
(:func:`cli`), and a result-log reader (:func:`records`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiohttp
import orjson
import pytest
import trustme
from aiohttp import web
from multidict import CIMultiDictProxy

from provisioner.cli.main import main
from provisioner.emulator import Emulator, EmulatorConfig
from provisioner.queue.streams import JobQueue
from provisioner.results import Result

T = TypeVar("T")

TEST_TOKEN = "pt-test-token"
CLOUD = {"type": "cloud"}

MakeEmulator = Callable[..., Awaitable[Emulator]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Write = Callable[[str, str | bytes], str]


# --- waiting for a condition ---------------------------------------------------

#: How often a poll looks again, unless told.
POLL_S = 0.005


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    timeout_s: float = 10.0,
    interval_s: float = POLL_S,
    message: str = "condition not reached in time",
) -> T:
    """Call ``check`` (a function or a coroutine function) until it returns something
    true and return that; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (after {timeout_s} s)")
        await asyncio.sleep(interval_s)


def eventually_sync(
    check: Callable[[], T],
    *,
    timeout_s: float = 10.0,
    interval_s: float = POLL_S,
    message: str = "condition not reached in time",
) -> T:
    """:func:`eventually` for a test without an event loop: it blocks between looks."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (after {timeout_s} s)")
        time.sleep(interval_s)


def read_until(pipe: Any, marker: str, timeout_s: float = 30.0) -> str:
    """Read a child's output pipe until ``marker`` shows; return what was read.

    It reads the file descriptor itself, unbuffered, so a later ``communicate()``
    gets the rest of the output.
    """
    fd = pipe.fileno()
    seen = b""
    deadline = time.monotonic() + timeout_s
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(
                f"{marker!r} not written within {timeout_s} s: {seen!r}"
            )
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"the output ended without {marker!r}: {seen!r}")
        seen += chunk
    return seen.decode(errors="replace")


class FakeTime:
    """Monotonic seconds that move only when a test, or a sleep, moves them.

    Pass the object as the clock and its :meth:`sleep` as the sleep; ``sleeps``
    lists what was slept.
    """

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def no_sleep(_: float) -> None:
    """A sleep that returns at once, so no test waits for a backoff."""


# --- specs and job files ---------------------------------------------------------


def spec(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "config": {"type": "cloud"}, **extra}


def jsonl(*bodies: object) -> str:
    return "".join(json.dumps(b) + "\n" for b in bodies)


def make_specs(count: int, *, prefix: str = "team") -> list[dict[str, Any]]:
    """``count`` distinct valid specs."""
    return [
        {
            "name": f"{prefix}-{i:05d}",
            "config": {"type": "cloud", "networking": {"type": "unrestricted"}},
            "metadata": {"team": f"{prefix}-{i}"},
        }
        for i in range(count)
    ]


# --- result logs -----------------------------------------------------------------

T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
TARGET = "https://api.example/api/v1/cloud"


def result(name: str | None, status: str = "created", **kw: object) -> Result:
    """A :class:`Result` for spec ``name`` (key ``key-<name>``) against ``TARGET``."""
    fields: dict[str, object] = {
        "spec_key": f"key-{name}",
        "target": TARGET,
        "name": name,
        "status": status,
        "id": f"env_{name}" if status in {"created", "exists"} else None,
        "attempts": 1,
        "http_status": 201,
        "error": None,
        "source": "jobs/a.jsonl:1",
        "started_at": T0,
        "finished_at": T0 + timedelta(milliseconds=12.5),
    }
    fields.update(kw)
    return Result(**fields)  # type: ignore[arg-type]


def records(path: Path, *, partial: bool = False) -> list[dict[str, Any]]:
    """The records of a result log, in order; every line must be one.

    ``partial=True`` reads a log a run may still be writing, or a killed run left:
    a missing file holds no records, and a torn line is not one (yet).
    """
    if partial and not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    if partial:
        lines = [line for line in lines if line.endswith(b"}")]
    return [orjson.loads(line) for line in lines]


# --- the CLI -------------------------------------------------------------------

CLI = [sys.executable, "-m", "provisioner"]

#: Variables of the host that would steer a test's run (besides ``PROVISIONER_*``).
LEFTOVER_VARS = frozenset({"REDIS_URL", "QODER_API_URL", "QODER_BASE_URL"})


def is_leftover(name: str) -> bool:
    """Whether the host's variable ``name`` is kept away from a test's runs."""
    return name.startswith("PROVISIONER_") or name in LEFTOVER_VARS


def child_env(*, token: str = TEST_TOKEN, **extra: str) -> dict[str, str]:
    """The environment of a child run: the host's without its ``PROVISIONER_*``,
    ``REDIS_URL`` and API URL leftovers, ``QODER_PAT=token``, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not is_leftover(k)}
    env["QODER_PAT"] = token
    env.update(extra)
    return env


def run_cli(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    **options: Any,
) -> subprocess.CompletedProcess[str]:
    """``provisioner ARGS`` as a child process, to the end: its exit code and output.

    By default stdout and stderr are captured as text and ``env`` is
    :func:`child_env`; ``options`` go to :func:`subprocess.run` (``cwd``, ``stdin``,
    ``stderr``, ``preexec_fn``...).
    """
    captured: dict[str, Any] = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
    }
    return subprocess.run(  # noqa: PLW1510 - the tests check the exit code
        [*CLI, *map(str, args)],
        env=child_env() if env is None else env,
        timeout=timeout,
        **(captured | options),
    )


#: Children :func:`spawn_cli` started; a fixture kills those still running after a test.
STARTED: list[subprocess.Popen[Any]] = []


def spawn_cli(
    *args: str | Path, env: Mapping[str, str] | None = None, **options: Any
) -> subprocess.Popen[Any]:
    """``provisioner ARGS`` started as a child process, and not waited for.

    By default its stdout and stderr are text pipes and ``env`` is :func:`child_env`;
    ``options`` go to :class:`subprocess.Popen`. A child still running at the end of
    its test is killed.
    """
    popen: dict[str, Any] = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
    }
    proc = subprocess.Popen(
        [*CLI, *map(str, args)],
        env=child_env() if env is None else env,
        **(popen | options),
    )
    STARTED.append(proc)
    return proc


def stop_children() -> None:
    """Kill the children :func:`spawn_cli` started that still run, and reap them all."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def wait_until_blocked_on_fifo(pid: int) -> None:
    """Wait until the child sleeps in open() of a FIFO that has no writer."""
    wchan = Path(f"/proc/{pid}/wchan")
    eventually_sync(
        lambda: wchan.read_text() in {"wait_for_partner", "fifo_open"},
        timeout_s=30,
        interval_s=0.01,
        message="the child never blocked on the FIFO",
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    """Wait for a child's end: its exit code and stderr."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


async def start_cli(
    *args: str | Path, env: Mapping[str, str] | None = None, **options: Any
) -> asyncio.subprocess.Process:
    """``provisioner ARGS`` as a child process of the running event loop.

    By default stdin is closed, stdout and stderr are pipes and ``env`` is
    :func:`child_env`; ``options`` go to :func:`asyncio.create_subprocess_exec`.
    """
    streams: dict[str, Any] = {
        "stdin": asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.PIPE,
    }
    return await asyncio.create_subprocess_exec(
        *CLI,
        *map(str, args),
        env=child_env() if env is None else env,
        **(streams | options),
    )


def cli(
    emulator: Emulator, command: str, *args: str | Path, rate: str | None = "0"
) -> int:
    """``provisioner COMMAND`` in this process against ``emulator``, without backoff
    waits, at ``--rate RATE`` (None: the default rate); ``args`` may override."""
    defaults = ["--api-url", emulator.url, "--backoff", "0"]
    if rate is not None:
        defaults += ["--rate", rate]
    if command == "run":
        defaults.append("--no-progress")
    return main([command, *defaults, *map(str, args)])


# --- emulators -----------------------------------------------------------------


class ThreadedEmulator:
    """An in-process emulator on its own thread and loop, for synchronous CLI tests.

    ``provisioner.cli.main`` runs its own event loop, so the server it talks to
    cannot live on the test's loop; here it gets a loop of its own.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.emulator: Emulator | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with Emulator(self._config) as emulator:
            self.emulator = emulator
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Emulator:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("emulator did not start")
        assert self.emulator is not None
        return self.emulator

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@dataclass(frozen=True, slots=True)
class Answer:
    """What an HTTP client saw: status, headers and raw body."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Caller:
    """Raw HTTP calls to an emulator (API paths relative to ``url``, admin to the root)."""

    def __init__(self, session: aiohttp.ClientSession, emulator: Emulator) -> None:
        self.session = session
        self.emulator = emulator

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = TEST_TOKEN,
        emulator: Emulator | None = None,
    ) -> Answer:
        emu = emulator or self.emulator
        base = emu.root_url if path.startswith(("/_emulator", "/v1")) else emu.url
        sent = dict(headers or {})
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        if json is not None:
            data = orjson.dumps(json)
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, base + path, data=data, headers=sent
        ) as r:
            return Answer(r.status, r.headers, await r.read())


async def create(api: Caller, name: str, **fields: object) -> dict[str, Any]:
    """Create ``name`` (a bare cloud config unless given) and return the environment."""
    answer = await api(
        "POST", "/environments", json={"name": name, "config": CLOUD, **fields}
    )
    assert answer.status == 201, answer.body
    env: dict[str, Any] = answer.json()
    return env


def assert_error(
    answer: Answer, status: int, error_type: str, param: str | None = None
) -> dict[str, Any]:
    """Check an error answer's status, envelope and ``request-id``; return ``error``."""
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    assert body["type"] == "error"
    assert body["request_id"] == answer.headers["request-id"]
    assert body["error"]["type"] == error_type
    assert body["error"].get("param") == param
    error: dict[str, Any] = body["error"]
    return error


# --- a hostile server ---------------------------------------------------------


@dataclass
class Server:
    """A running hostile server: its API base URL and what it was asked."""

    url: str
    port: int
    requests: list[str] = field(default_factory=list)


Serve = Callable[[Handler], Awaitable[Server]]


# --- redis -------------------------------------------------------------------

TEST_REDIS_URL_ENV = "PROVISIONER_TEST_REDIS_URL"


def redis_url() -> str:
    """The test Redis: ``$PROVISIONER_TEST_REDIS_URL``, else the local default."""
    return os.environ.get(TEST_REDIS_URL_ENV) or "redis://127.0.0.1:6379/0"


def redis_args(queue: JobQueue, url: str | None = None) -> list[str]:
    """The flags that point a queue command at ``queue``'s stream."""
    return ["--redis", url or redis_url(), "--stream", queue.stream]


async def wait_for_results(queue: JobQueue, count: int, timeout_s: float = 60) -> None:
    """Poll a queue's results stream until it holds ``count`` records."""

    async def enough() -> bool:
        return (await queue.status("provisioner")).results >= count

    await eventually(
        enough,
        timeout_s=timeout_s,
        interval_s=0.05,
        message=f"fewer than {count} results",
    )


def start_worker(
    queue: JobQueue,
    emulator: Emulator,
    *extra: str,
    url: str | None = None,
    name: str = "",
) -> subprocess.Popen[str]:
    """``provisioner worker`` on ``queue`` against ``emulator``: unpaced, JSON logs."""
    args = [
        "worker", *redis_args(queue, url), "--api-url", emulator.url, "--rate", "0",
        "--backoff", "0", "--claim-idle", "1", "--log-format", "json", *extra,
    ]  # fmt: skip
    if name:
        args += ["--consumer", name]
    return spawn_cli(*args)


# --- networks: ports, proxies, certificates -------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def missing(reason: str) -> NoReturn:
    """A real component the test needs is not here: skip it locally, fail it in CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _bindable(port: int) -> bool:
    """Whether loopback ``port`` can be bound now (nothing listens on it or uses it)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def is_listening(port: int) -> bool:
    """Whether something accepts connections on loopback ``port``."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Tinyproxy:
    """A running tinyproxy on loopback: its URL (without credentials) and its log."""

    url: str
    port: int
    log: Path

    def requests(self) -> list[str]:
        """The request lines it was asked, in order (``CONNECT 127.0.0.1:PORT HTTP/1.1``)."""
        marker = "): "
        return [
            line.split(marker, 1)[1].strip()
            for line in self.log.read_text().splitlines()
            if "Request (file descriptor" in line and marker in line
        ]


@dataclass(frozen=True)
class Pki:
    """A private CA and a server certificate, as PEM files."""

    ca: trustme.CA
    ca_file: str
    cert_file: str
    key_file: str


def issue(tmp_path: Path, *hosts: str) -> Pki:
    """A new CA in ``tmp_path`` and a server certificate from it for ``hosts``."""
    ca = trustme.CA()
    server = ca.issue_cert(*hosts)
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "c.pem", "k.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(cert_file), append=True)
    server.private_key_pem.write_to_path(str(key_file))
    return Pki(ca, str(ca_file), str(cert_file), str(key_file))


# --- a real Redis Cluster -------------------------------------------------------


class RedisClusterNodes:
    """Six private ``redis-server`` nodes on loopback joined as a Redis Cluster:
    three masters, one replica each (``redis-cli --cluster create``).

    Each node has its own folder under ``folder``; :meth:`stop` kills them all.
    """

    SIZE = 6

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports = self._free_ports()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def _free_ports(self) -> list[int]:
        """Consecutive ports that, with their cluster bus ports (+10000), can be bound.

        Both stay below the kernel's ephemeral range (32768 up), where the suite's
        own outgoing connections would take a port between the check and the start.
        """
        rng = random.Random()
        for _ in range(200):
            base = rng.randrange(12_000, 22_700)
            ports = list(range(base, base + self.SIZE))
            if all(_bindable(p) and _bindable(p + 10_000) for p in ports):
                return ports
        raise RuntimeError("no free range of ports for a Redis Cluster")

    def start(self, attempts: int = 3) -> None:
        """Start the nodes, join them, wait until every node says ``cluster_state:ok``.

        A node that cannot take its port (another process took it meanwhile) sends
        the whole cluster to another range of ports, up to ``attempts`` times.
        """
        for attempt in range(attempts):
            try:
                self._start_nodes()
                break
            except AssertionError:
                self.stop()
                self.procs.clear()
                if attempt == attempts - 1:
                    raise
                self.ports = self._free_ports()
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        create = ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "1"]
        create.append("--cluster-yes")
        subprocess.run(create, check=True, stdout=subprocess.DEVNULL, timeout=60)
        for port in self.ports:
            self.wait_ok(port)
        self.wait_replicas()

    def wait_replicas(self, timeout_s: float = 30) -> None:
        """Wait until each replica has synced with its master: a replica that never
        has refuses to take over (``cluster-replica-validity-factor``)."""

        def synced() -> bool:
            infos = [self.cli(port, "info", "replication") for port in self.live()]
            replicas = [info for info in infos if "role:slave" in info]
            return len(replicas) == self.SIZE // 2 and all(
                "master_link_status:up" in info for info in replicas
            )

        eventually_sync(
            synced, timeout_s=timeout_s, interval_s=0.1, message="replicas not synced"
        )

    def _start_nodes(self) -> None:
        """Start the six nodes; wait until each listens."""
        for port in self.ports:
            folder = self.folder / str(port)
            folder.mkdir(parents=True, exist_ok=True)
            command = [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--dir", str(folder), "--cluster-enabled", "yes",
                "--cluster-config-file", str(folder / f"nodes-{port}.conf"),
                "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no",
                "--repl-diskless-sync-delay", "0",
                "--daemonize", "no", "--logfile", str(folder / "redis.log"),
            ]  # fmt: skip
            self.procs[port] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            eventually_sync(
                lambda: all(map(is_listening, self.ports)),
                timeout_s=20,
                interval_s=0.02,
                message="a cluster node did not start",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self._logs()}") from None

    def _logs(self) -> str:
        """The last lines of each node that is not listening (why it did not start)."""
        tails = []
        for port in self.ports:
            log = self.folder / str(port) / "redis.log"
            if not is_listening(port) and log.exists():
                tails.append(
                    f"{port}: " + " | ".join(log.read_text().splitlines()[-3:])
                )
        return "; ".join(tails) or "no log"

    def cli(self, port: int, *args: str) -> str:
        """``redis-cli -p PORT ARGS``: its output."""
        command = ["redis-cli", "-p", str(port), *args]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout

    def wait_ok(self, port: int, timeout_s: float = 30) -> None:
        """Wait until node ``port`` says ``cluster_state:ok``."""
        eventually_sync(
            lambda: "cluster_state:ok" in self.cli(port, "cluster", "info"),
            timeout_s=timeout_s,
            interval_s=0.1,
            message=f"cluster node {port} not ok",
        )

    def url(self, port: int | None = None, scheme: str = "redis") -> str:
        """A node's URL (the first node's by default)."""
        return f"{scheme}://127.0.0.1:{port or self.ports[0]}/0"

    def master_of(self, key: str, via: int | None = None) -> int:
        """The port of the master that serves ``key``'s slot now."""
        via = via or self.live()[0]
        slot = int(self.cli(via, "cluster", "keyslot", key).strip())
        for line in self.cli(via, "cluster", "nodes").splitlines():
            # <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slots>...
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for ranges in fields[8:]:
                low, _, high = ranges.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise AssertionError(f"no live master serves slot {slot}")

    def wait_failover(self, key: str, old: int, timeout_s: float = 30) -> int:
        """Wait until every live node names a master other than ``old`` for
        ``key``'s slot and says ``cluster_state:ok``; return the new master's port."""

        def moved() -> bool:
            with contextlib.suppress(AssertionError):
                return all(
                    self.master_of(key, via) != old
                    and "cluster_state:ok" in self.cli(via, "cluster", "info")
                    for via in self.live()
                )
            return False

        eventually_sync(
            moved, timeout_s=timeout_s, interval_s=0.1, message="no failover"
        )
        return self.master_of(key)

    def kill(self, port: int) -> None:
        """SIGKILL node ``port``."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(10)

    def live(self) -> list[int]:
        """The ports of the nodes still running."""
        return [port for port in self.ports if port in self.procs]

    def stop(self) -> None:
        """Kill every node still running."""
        for port in self.live():
            self.kill(port)
