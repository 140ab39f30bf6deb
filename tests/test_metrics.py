"""``--metrics-port``: /metrics, /healthz and /readyz scraped from a real ``run`` and a real worker."""

from __future__ import annotations

import math
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from provisioner.cli.main import main
from provisioner.emulator import Emulator, EmulatorConfig, FaultPlan
from provisioner.observe.health import HealthServer, redis_check, serve
from provisioner.observe.metrics import Metrics
from provisioner.queue.streams import JobQueue
from provisioner.settings import MetricsSettings, RedisSettings
from tests.helpers import (
    TEST_TOKEN,
    ThreadedEmulator,
    eventually,
    free_port,
    make_specs,
    redis_args,
    spawn_cli,
)


@dataclass(frozen=True, slots=True)
class Scrape:
    """One ``/metrics`` answer: the TYPE of each family and the value of each sample."""

    types: dict[str, str]
    values: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        return self.values.get((name, frozenset(labels.items())), 0.0)


class Endpoint:
    """The metrics port of a child process, asked over HTTP."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self._session = session
        self._base = f"http://127.0.0.1:{port}"

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self._session.get(self._base + path) as response:
            return response.status, response.content_type, await response.text()

    async def scrape(self) -> Scrape:
        status, _, text = await self.get("/metrics")
        assert status == 200
        types = {
            line.split()[2]: line.split()[3]
            for line in text.splitlines()
            if line.startswith("# TYPE ")
        }
        values = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        return Scrape(types, values)

    async def wait_up(self, proc: subprocess.Popen[str]) -> None:
        """Poll ``/healthz`` until the child serves it."""

        async def serving() -> bool:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                return (await self.get("/healthz"))[0] == 200
            except aiohttp.ClientConnectionError:
                return False

        await eventually(
            serving, interval_s=0.025, message="the metrics port never answered"
        )

    async def wait_for(
        self, name: str, above: float, timeout_s: float = 30, **labels: str
    ) -> Scrape:
        """Scrape until the sample ``name{labels}`` is above ``above``."""

        async def above_it() -> Scrape | None:
            scrape = await self.scrape()
            return scrape if scrape.value(name, **labels) > above else None

        return await eventually(
            above_it,
            timeout_s=timeout_s,
            interval_s=0.05,
            message=f"{name}{labels} never went above {above}",
        )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


RUN_TYPES = {
    "provisioner_requests_total": "counter",
    "provisioner_request_retries_total": "counter",
    "provisioner_requests_in_flight": "gauge",
    "provisioner_records_total": "counter",
    "provisioner_rate_limit_requests_per_second": "gauge",
}


async def test_a_run_serves_metrics_that_move_and_its_probes(
    make_live_emulator, write_jobs, tmp_path, session
):
    """While a run works, /metrics shows its requests, retries, records and rate moving; /healthz and /readyz say 200."""
    emulator = make_live_emulator(
        faults=FaultPlan(latency_ms=20, error_503=0.1, seed=3)
    )
    port = free_port()
    proc = spawn_cli(
        "run", write_jobs(make_specs(150)), "--api-url", emulator.url,
        "--results", tmp_path / "r.jsonl", "--concurrency", "2", "--rate", "100",
        "--backoff", "0", "--max-attempts", "10", "--no-progress",
        "--log-format", "json", "--metrics-port", str(port),
    )  # fmt: skip
    endpoint = Endpoint(session, port)
    await endpoint.wait_up(proc)

    first = await endpoint.wait_for("provisioner_records_total", 0, status="created")
    later = await endpoint.wait_for(
        "provisioner_records_total",
        first.value("provisioner_records_total", status="created") + 5,
        status="created",
    )
    health = await endpoint.get("/healthz")
    ready = await endpoint.get("/readyz")
    assert proc.wait(60) == 0, proc.communicate()[1]

    assert RUN_TYPES.items() <= later.types.items()
    assert not any(name.endswith("_created") for name in later.types)
    assert later.value("provisioner_requests_total", code="201") > first.value(
        "provisioner_requests_total", code="201"
    )
    assert later.value("provisioner_requests_total", code="503") > 0
    assert later.value("provisioner_request_retries_total") > 0
    assert 0 <= later.value("provisioner_requests_in_flight") <= 2
    assert later.value("provisioner_rate_limit_requests_per_second") == pytest.approx(
        98
    )
    assert health == (200, "text/plain", "ok\n")
    assert ready == (200, "text/plain", "api: ok\n")


async def test_readyz_says_503_once_the_api_stops_answering(
    write_jobs, tmp_path, session
):
    """When the API goes away mid-run, /readyz answers 503 naming the failure, while /healthz stays 200."""
    threaded = ThreadedEmulator(
        EmulatorConfig(token=TEST_TOKEN, faults=FaultPlan(latency_ms=20))
    )
    emulator = threaded.__enter__()
    port = free_port()
    proc = spawn_cli(
        "run", write_jobs(make_specs(500)), "--api-url", emulator.url,
        "--results", tmp_path / "r.jsonl", "--concurrency", "1", "--rate", "0",
        "--timeout", "1", "--backoff", "0.05", "--backoff-max", "0.1",
        "--max-attempts", "1000", "--deadline", "60", "--no-progress",
        "--log-format", "json", "--metrics-port", str(port),
    )  # fmt: skip
    endpoint = Endpoint(session, port)
    await endpoint.wait_up(proc)
    await endpoint.wait_for("provisioner_records_total", 0, status="created")
    assert (await endpoint.get("/readyz"))[0] == 200

    threaded.__exit__(None, None, None)

    async def not_ready() -> tuple[int, str, str] | None:
        answer = await endpoint.get("/readyz")
        return answer if answer[0] == 503 else None

    status, _, body = await eventually(not_ready, interval_s=0.025)
    scrape = await endpoint.scrape()
    health = await endpoint.get("/healthz")
    proc.send_signal(signal.SIGINT)
    proc.wait(60)

    assert status == 503
    assert body.startswith("api: the last request got no answer (")
    assert health[0] == 200
    assert math.isinf(scrape.value("provisioner_rate_limit_requests_per_second"))
    assert any(
        name == "provisioner_requests_total" and not dict(labels)["code"].isdigit()
        for name, labels in scrape.values
    )


async def test_a_worker_serves_queue_lag_pending_and_redis_readiness(
    redis: JobQueue, make_live_emulator, write_jobs, session
):
    """A worker's /metrics shows the queue's lag falling and its records rising; /readyz checks Redis and the API."""
    emulator = make_live_emulator(faults=FaultPlan(latency_ms=30))
    queue_args = redis_args(redis)
    enqueue = spawn_cli("enqueue", write_jobs(make_specs(120)), *queue_args)
    assert enqueue.wait(60) == 0
    port = free_port()
    worker = spawn_cli(
        "worker", *queue_args, "--api-url", emulator.url, "--rate", "0",
        "--concurrency", "2", "--log-format", "json", "--metrics-port", str(port),
    )  # fmt: skip
    endpoint = Endpoint(session, port)
    await endpoint.wait_up(worker)

    first = await endpoint.wait_for("provisioner_records_total", 0, status="created")
    later = await endpoint.wait_for(
        "provisioner_records_total",
        first.value("provisioner_records_total", status="created") + 5,
        status="created",
    )
    ready = await endpoint.get("/readyz")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0, worker.communicate()[1]

    for name in ("lag", "pending", "dead_letters"):
        assert later.types[f"provisioner_queue_{name}_messages"] == "gauge"
    lag = "provisioner_queue_lag_messages"
    assert 0 < later.value(lag) < first.value(lag) <= 120
    assert 0 <= later.value("provisioner_queue_pending_messages") <= 2
    assert later.value("provisioner_queue_dead_letters_messages") == 0
    assert later.value("provisioner_requests_total", code="201") >= 5
    assert math.isinf(later.value("provisioner_rate_limit_requests_per_second"))
    assert ready == (200, "text/plain", "redis: ok\napi: ok\n")


async def test_readyz_says_503_when_redis_does_not_answer(session):
    """/readyz with a Redis that does not answer is 503 and says why; /metrics still answers."""
    gone = RedisSettings(url="redis://127.0.0.1:1/0", stream="nowhere")
    queue = JobQueue.connect(gone, retries=0)
    metrics = Metrics()

    async def refresh() -> None:
        metrics.show_queue(await queue.status("provisioner"))

    server = HealthServer(
        metrics=metrics, checks={"redis": redis_check(queue.ping)}, refresh=refresh
    )
    try:
        async with serve(MetricsSettings(port=0, host="127.0.0.1"), server) as port:
            endpoint = Endpoint(session, port)
            status, _, body = await endpoint.get("/readyz")
            scrape = await endpoint.scrape()
    finally:
        await queue.close()

    assert status == 503
    assert body.startswith("redis: ")
    assert body != "redis: ok\n"
    assert "provisioner_requests_total" in scrape.types


def test_a_metrics_port_in_use_is_one_line_and_exit_2(
    live_emulator: Emulator, write_jobs, tmp_path, monkeypatch, capsys
):
    """A --metrics-port another process holds stops the run before anything is sent: one line, exit 2."""
    monkeypatch.setenv("QODER_PAT", TEST_TOKEN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main([
            "run", str(write_jobs(make_specs(3))), "--api-url", live_emulator.url,
            "--results", str(tmp_path / "r.jsonl"), "--no-progress",
            "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
        ])  # fmt: skip

    assert code == 2
    assert (
        f"--metrics-port {port}: cannot listen on 127.0.0.1" in capsys.readouterr().err
    )
    assert live_emulator.creation_counts() == {}


@pytest.mark.parametrize("value", ["70000", "-1", "http"])
def test_an_impossible_metrics_port_is_a_usage_error(value, write_jobs, capsys):
    """--metrics-port outside 0-65535 is refused at the door, naming the flag."""
    code = main(["run", str(write_jobs(make_specs(1))), "--metrics-port", value])

    assert code == 2
    assert "--metrics-port" in capsys.readouterr().err
