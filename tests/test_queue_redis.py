"""Redis as users run it: restarted under a running pool, behind TLS, behind a password.

These tests start private ``redis-server`` processes on free loopback ports, so they can
stop and restart them without touching the shared Redis.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from provisioner.emulator import FaultPlan
from provisioner.queue.streams import JobQueue
from provisioner.settings import RedisSettings
from tests.helpers import (
    child_env,
    eventually_sync,
    free_port,
    is_listening,
    make_specs,
    run_cli,
    spawn_cli,
    wait_for_results,
)

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and os.environ.get("CI") != "true",
    reason="redis-server is not installed (CI installs it and fails without it)",
)


class RedisServer:
    """A private redis-server in ``folder``, with the AOF on so a restart keeps the data."""

    def __init__(self, folder: Path, *options: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
            "--save", "", *self.options,
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        eventually_sync(
            lambda: is_listening(self.port),
            timeout_s=5,
            interval_s=0.01,
            message="redis-server did not start",
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)  # Redis flushes its AOF and exits
            self.proc.wait(30)
            self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
async def test_a_redis_restart_under_a_running_pool_costs_nothing(
    redis_server: RedisServer, make_live_emulator, write_jobs
):
    """Redis stopped and started again on its port mid-run: workers reconnect, every spec created once, one record each."""
    emulator = make_live_emulator(faults=FaultPlan(latency_ms=20))
    total = 600
    redis_args = ["--redis", redis_server.url, "--stream", "restart"]
    assert (
        run_cli("enqueue", write_jobs(make_specs(total)), *redis_args).returncode == 0
    )
    args = [*redis_args, "--api-url", emulator.url, "--rate", "0", "--backoff", "0",
            "--claim-idle", "2", "--exit-when-empty", "--concurrency", "8"]  # fmt: skip
    workers = [spawn_cli("worker", *args, "--consumer", f"w{i}") for i in range(2)]
    queue = JobQueue.connect(RedisSettings(url=redis_server.url, stream="restart"))
    try:
        await wait_for_results(queue, 100)
        redis_server.stop()
        await asyncio.sleep(1.0)  # the outage under test: Redis stays down for a second
        redis_server.start()
        outcomes = [w.communicate(timeout=120) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], [
            err[-2000:] for _, err in outcomes
        ]
        results = await queue.results()
        status = await queue.status("provisioner")
    finally:
        await queue.close()
    counts = emulator.creation_counts()
    assert (len(counts), set(counts.values())) == (total, {1})
    assert len(results) == total
    assert Counter(r["status"] for r in results) == {"created": total}
    assert (status.length, status.pending) == (0, 0)


def test_rediss_with_a_private_ca(tmp_path: Path, write_jobs):
    """rediss:// is verified: with --redis-ca-file the queue works; without it the certificate is refused."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = RedisServer(
        tmp_path, "--tls-port", str(free_port()), "--tls-cert-file", str(tmp_path / "server.pem"),
        "--tls-key-file", str(tmp_path / "server.pem"), "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    tls_port = int(server.options[1])
    server.start()
    try:
        url = f"rediss://localhost:{tls_port}/0"
        jobs = write_jobs(make_specs(3))
        trusted = run_cli(
            "enqueue", jobs, "--redis", url, "--redis-ca-file", tmp_path / "ca.pem"
        )
        untrusted = run_cli("enqueue", jobs, "--redis", url)
    finally:
        server.stop()
    assert trusted.returncode == 0, trusted.stderr
    assert "queued 3 specs" in trusted.stdout
    assert untrusted.returncode == 2
    assert (
        "certificate" in untrusted.stderr.lower() or "ssl" in untrusted.stderr.lower()
    )


def test_a_redis_password_is_never_printed(redis_server: RedisServer, tmp_path: Path):
    """A password in the URL or in --redis-password-file appears in no output, whatever fails."""
    in_url = run_cli(
        "queue-status",
        "--redis",
        f"redis://user:pw-in-url-123@127.0.0.1:{free_port()}/0",
    )
    secret_file = tmp_path / "redis-password"
    secret_file.write_text("pw-in-file-456\n")
    from_file = run_cli(
        "queue-status", "--redis", redis_server.url, "--redis-password-file", secret_file,
        env=child_env(REDIS_URL="redis://ignored:pw-in-env-789@127.0.0.1:1/0"),
    )  # fmt: skip
    assert in_url.returncode == 2
    assert "***" in in_url.stderr
    for result in (in_url, from_file):
        for secret in ("pw-in-url-123", "pw-in-file-456", "pw-in-env-789"):
            assert secret not in result.stdout + result.stderr
