"""Shared fixtures: a real emulator on loopback, started in the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    MutableMapping,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web
from multidict import CIMultiDictProxy

from provisioner.emulator import Emulator, EmulatorConfig
from provisioner.proxy import PROXY_VARS
from provisioner.retry import RetryPolicy

TEST_TOKEN = "pt-test-token"
CLOUD = {"type": "cloud"}

MakeEmulator = Callable[..., Awaitable[Emulator]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture(autouse=True)
def _no_proxy_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's proxy variables never route a test's loopback traffic; tests that
    want a proxy set them."""
    for name in (*PROXY_VARS, "PROVISIONER_PROXY", "PROVISIONER_PROXY_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """An in-process ``main()`` points structlog at the test's captured stderr, which
    is closed after the test: every test starts and ends with structlog's defaults."""
    yield
    structlog.reset_defaults()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A running emulator that accepts ``TEST_TOKEN``; its ``faults`` plan is live."""
    async with Emulator(EmulatorConfig(token=TEST_TOKEN)) as emu:
        yield emu


@pytest.fixture
async def make_emulator() -> AsyncIterator[MakeEmulator]:
    """A factory: ``await make_emulator(unique_names=False)`` starts one with those switches."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**config: Any) -> Emulator:
            config.setdefault("token", TEST_TOKEN)
            emu = Emulator(EmulatorConfig(**config))
            return await stack.enter_async_context(emu)

        yield make


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` every few milliseconds until it holds; fail after ``timeout_s``."""
    for _ in range(int(timeout_s / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in time")


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


@pytest.fixture
async def api(emulator: Emulator) -> AsyncIterator[Caller]:
    """Raw HTTP calls to the ``emulator`` fixture, closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield Caller(session, emulator)


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


# --- job files written by hand -------------------------------------------------

Write = Callable[[str, str | bytes], str]


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Write:
    """Write a job file under tmp_path and return its name as a user types it."""
    monkeypatch.chdir(tmp_path)

    def _write(name: str, content: str | bytes) -> str:
        data = content.encode() if isinstance(content, str) else content
        (tmp_path / name).write_bytes(data)
        return name

    return _write


def spec(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "config": {"type": "cloud"}, **extra}


def jsonl(*bodies: object) -> str:
    return "".join(json.dumps(b) + "\n" for b in bodies)


# --- a hostile server ---------------------------------------------------------


@dataclass
class Server:
    """A running hostile server: its API base URL and what it was asked."""

    url: str
    port: int
    requests: list[str] = field(default_factory=list)


Serve = Callable[[Handler], Awaitable[Server]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Factory: ``await serve(handler)`` starts a small hostile server on 127.0.0.1:0.

    ``handler`` answers every method and path; the server notes each request.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(handler: Handler) -> Server:
            seen: list[str] = []

            async def record(request: web.Request) -> web.StreamResponse:
                seen.append(f"{request.method} {request.path_qs}")
                return await handler(request)

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", record)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = int(runner.addresses[0][1])
            return Server(url=f"http://127.0.0.1:{port}/api", port=port, requests=seen)

        yield start


# --- run-path fixtures -------------------------------------------------------


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


@pytest.fixture
def make_live_emulator() -> Iterator[Callable[..., Emulator]]:
    """Factory: a threaded emulator with the given EmulatorConfig fields."""
    with contextlib.ExitStack() as stack:

        def make(**config: Any) -> Emulator:
            config.setdefault("token", TEST_TOKEN)
            return stack.enter_context(ThreadedEmulator(EmulatorConfig(**config)))

        yield make


@pytest.fixture
def live_emulator(make_live_emulator: Callable[..., Emulator]) -> Emulator:
    """A threaded emulator with default switches, for tests that call ``main()``."""
    return make_live_emulator()


@pytest.fixture
def write_jobs(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write specs to a job file and return its path.

    ``write_jobs(specs)`` writes JSONL; ``write_jobs(text, name="x.yaml")`` writes text.
    """

    def write(content: list[dict[str, Any]] | str, *, name: str = "jobs.jsonl") -> Path:
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(b"".join(orjson.dumps(spec) + b"\n" for spec in content))
        return path

    return write


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


@pytest.fixture
def fast_policy() -> RetryPolicy:
    """A retry policy that never really sleeps."""

    async def no_sleep(_: float) -> None:
        return None

    return RetryPolicy(
        max_attempts=8, wait_initial_s=0.0, wait_max_s=0.0, sleep=no_sleep
    )


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every structlog event emitted during the test, as dicts."""
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean environment for in-process CLI runs: the test token, no PROVISIONER_* leftovers."""
    for key in list(os.environ):
        if key.startswith("PROVISIONER_") or key in {"QODER_API_URL", "QODER_BASE_URL"}:
            monkeypatch.delenv(key)
    monkeypatch.setenv("QODER_PAT", TEST_TOKEN)


# --- redis -------------------------------------------------------------------
# Imported here, not at the top, so this section is one appended block.

import uuid  # noqa: E402

from provisioner.errors import QueueError  # noqa: E402
from provisioner.settings import RedisSettings  # noqa: E402
from provisioner.stream import JobQueue  # noqa: E402

TEST_REDIS_URL_ENV = "PROVISIONER_TEST_REDIS_URL"


def redis_url() -> str:
    """The test Redis: ``$PROVISIONER_TEST_REDIS_URL``, else the local default."""
    return os.environ.get(TEST_REDIS_URL_ENV) or "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis() -> AsyncIterator[JobQueue]:
    """A queue on the test Redis whose stream is unique to the test; its keys go after.

    An unreachable Redis skips the test, or fails it when ``CI=true``.
    """
    settings = RedisSettings(url=redis_url(), stream=f"test-{uuid.uuid4().hex}")
    probe = JobQueue.connect(settings, retries=0)
    try:
        await probe.ping()
    except QueueError as exc:
        reason = f"no Redis for the tests at {settings.shown_url} (${TEST_REDIS_URL_ENV}): {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        await probe.close()
    queue = JobQueue.connect(settings)
    try:
        yield queue
    finally:
        await queue.delete_all()
        await queue.close()


async def wait_for_results(queue: JobQueue, count: int, timeout_s: float = 60) -> None:
    """Poll a queue's results stream until it holds ``count`` records."""
    for _ in range(int(timeout_s / 0.05)):
        if (await queue.status("provisioner")).results >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} results after {timeout_s} s")


# --- a real HTTP proxy --------------------------------------------------------

import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402


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


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def make_tinyproxy(tmp_path: Path) -> Iterator[Callable[..., Tinyproxy]]:
    """Factory: ``make_tinyproxy(auth=("user", "password"))`` starts Debian's tinyproxy.

    Missing tinyproxy skips the test, or fails it when ``CI=true``.
    """
    binary = shutil.which("tinyproxy")
    if binary is None:
        reason = "tinyproxy is not installed (apt-get install tinyproxy)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    procs: list[subprocess.Popen[bytes]] = []

    def start(*, auth: tuple[str, str] | None = None) -> Tinyproxy:
        port = free_port()
        log = tmp_path / f"tinyproxy-{port}.log"
        lines = [
            f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 64",
            "Allow 127.0.0.1", f'LogFile "{log}"', "LogLevel Connect",
            "DisableViaHeader Yes",
        ]  # fmt: skip
        if auth is not None:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        conf = tmp_path / f"tinyproxy-{port}.conf"
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen(
            [binary, "-d", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        for _ in range(200):
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.1),
            ):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"tinyproxy exited with {proc.returncode}")
            threading.Event().wait(0.02)  # the port opens within milliseconds
        else:
            raise RuntimeError("tinyproxy did not open its port")
        return Tinyproxy(url=f"http://127.0.0.1:{port}", port=port, log=log)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)
