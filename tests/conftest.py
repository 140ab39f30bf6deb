"""Fixtures (and only fixtures): emulators on loopback, job files, Redis, a proxy.

What tests import lives in ``tests/helpers.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web

from provisioner.emulator import Emulator, EmulatorConfig
from provisioner.errors import QueueError
from provisioner.pacing.retry import RetryPolicy
from provisioner.proxy import PROXY_VARS
from provisioner.queue.streams import JobQueue
from provisioner.settings import RedisSettings
from tests.helpers import (
    TEST_REDIS_URL_ENV,
    TEST_TOKEN,
    Caller,
    Handler,
    MakeEmulator,
    Serve,
    Server,
    ThreadedEmulator,
    Tinyproxy,
    Write,
    eventually_sync,
    free_port,
    is_leftover,
    is_listening,
    missing,
    no_sleep,
    redis_url,
    stop_children,
)


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


@pytest.fixture(autouse=True)
def _no_child_outlives_its_test() -> Iterator[None]:
    """A test that fails half-way does not leave the children it spawned running."""
    yield
    stop_children()


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


@pytest.fixture
async def api(emulator: Emulator) -> AsyncIterator[Caller]:
    """Raw HTTP calls to the ``emulator`` fixture, closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield Caller(session, emulator)


# --- job files written by hand -------------------------------------------------


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Write:
    """Write a job file under tmp_path and return its name as a user types it."""
    monkeypatch.chdir(tmp_path)

    def _write(name: str, content: str | bytes) -> str:
        data = content.encode() if isinstance(content, str) else content
        (tmp_path / name).write_bytes(data)
        return name

    return _write


# --- a hostile server ---------------------------------------------------------


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


@pytest.fixture
def fast_policy() -> RetryPolicy:
    """A retry policy that never really sleeps."""
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
    """A clean environment for in-process CLI runs: the test token, none of the
    host's leftovers (as :func:`tests.helpers.child_env` gives a child run)."""
    for key in list(os.environ):
        if is_leftover(key):
            monkeypatch.delenv(key)
    monkeypatch.setenv("QODER_PAT", TEST_TOKEN)


# --- redis -------------------------------------------------------------------


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
        missing(
            f"no Redis for the tests at {settings.shown_url} (${TEST_REDIS_URL_ENV}): {exc}"
        )
    finally:
        await probe.close()
    queue = JobQueue.connect(settings)
    try:
        yield queue
    finally:
        await queue.delete_all()
        await queue.close()


# --- a real HTTP proxy --------------------------------------------------------


@pytest.fixture
def make_tinyproxy(tmp_path: Path) -> Iterator[Callable[..., Tinyproxy]]:
    """Factory: ``make_tinyproxy(auth=("user", "password"))`` starts Debian's tinyproxy.

    Missing tinyproxy skips the test, or fails it when ``CI=true``.
    """
    binary = shutil.which("tinyproxy")
    if binary is None:
        missing("tinyproxy is not installed (apt-get install tinyproxy)")
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

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"tinyproxy exited with {proc.returncode}")
            return is_listening(port)

        eventually_sync(
            up, timeout_s=4, interval_s=0.02, message="tinyproxy did not open its port"
        )
        return Tinyproxy(url=f"http://127.0.0.1:{port}", port=port, log=log)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)
