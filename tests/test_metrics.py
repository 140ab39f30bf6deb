"""``--metrics-port``: /metrics, /healthz and /readyz scraped from a real ``run`` and a real worker."""

from __future__ import annotations

import base64
import signal
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from provisioner.cli.main import main
from provisioner.emulator import Emulator, EmulatorConfig, FaultPlan
from provisioner.observe.health import HealthServer, redis_check, serve
from provisioner.observe.metrics import Metrics
from provisioner.queue.streams import JobQueue
from provisioner.settings import VERSION, MetricsSettings, RedisSettings
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
    "provisioner_request_duration_seconds": "histogram",
    "provisioner_requests_total": "counter",
    "provisioner_request_errors_total": "counter",
    "provisioner_request_retries_total": "counter",
    "provisioner_requests_in_flight": "gauge",
    "provisioner_records_total": "counter",
    "provisioner_rate_limit_requests_per_second": "gauge",
    "provisioner_build_info": "gauge",
}
#: The histogram's upper bounds: API latencies from 5 ms to 30 s.
BUCKETS = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0",
    "10.0", "30.0", "+Inf",
]  # fmt: skip
RATE = "provisioner_rate_limit_requests_per_second"


def buckets(scrape: Scrape, **labels: str) -> list[str]:
    """The ``le`` bounds of the duration histogram's series with ``labels``, in order."""
    found = [
        dict(key)["le"]
        for name, key in scrape.values
        if name == "provisioner_request_duration_seconds_bucket"
        and labels.items() <= dict(key).items()
    ]
    return sorted(found, key=float)


def labels_of(scrape: Scrape, name: str) -> list[dict[str, str]]:
    return [dict(key) for sample, key in scrape.values if sample == name]


async def test_a_run_serves_metrics_that_move_and_its_probes(
    make_live_emulator, write_jobs, tmp_path, session
):
    """While a run works, /metrics shows its requests, retries, records and rate moving; /healthz and /readyz say 200."""
    emulator = make_live_emulator(
        faults=FaultPlan(latency_ms=20, error_503=0.1, retry_after_s=None, seed=3)
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
    created = {"operation": "create", "code": "201"}
    assert later.value("provisioner_requests_total", **created) > first.value(
        "provisioner_requests_total", **created
    )
    assert later.value("provisioner_requests_total", operation="create", code="503")
    assert later.value("provisioner_request_retries_total") > 0
    assert 0 <= later.value("provisioner_requests_in_flight") <= 2
    assert later.value(RATE) == pytest.approx(98)
    ok = {"operation": "create", "outcome": "2xx"}
    assert buckets(later, **ok) == BUCKETS
    count = later.value("provisioner_request_duration_seconds_count", **ok)
    assert count == later.value("provisioner_requests_total", **created)
    assert later.value("provisioner_request_duration_seconds_bucket", le="+Inf", **ok)
    assert later.value("provisioner_request_duration_seconds_sum", **ok) > 0.02 * count
    assert later.value(
        "provisioner_request_duration_seconds_count", operation="create", outcome="5xx"
    ) == later.value("provisioner_requests_total", operation="create", code="503")
    assert {label["outcome"] for label in labels_of(
        later, "provisioner_request_duration_seconds_count"
    )} <= {"2xx", "4xx", "5xx"}  # fmt: skip
    assert labels_of(later, "provisioner_build_info") == [{"version": VERSION}]
    assert later.value("provisioner_build_info", version=VERSION) == 1
    assert later.types["process_cpu_seconds_total"] == "counter"
    assert later.value("process_resident_memory_bytes") > 0
    assert later.value("process_open_fds") > 0
    assert later.types["python_info"] == "gauge"
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
    assert scrape.types[RATE] == "gauge"
    assert (RATE, frozenset()) not in scrape.values  # --rate 0: no +Inf sample
    assert all(
        label["code"].isdigit()
        for label in labels_of(scrape, "provisioner_requests_total")
    )
    errors = labels_of(scrape, "provisioner_request_errors_total")
    assert errors
    assert {label["operation"] for label in errors} <= {"create", "list"}
    assert {label["error_type"] for label in errors} <= {
        "timeout", "connection_error", "connection_reset", "cancelled",
    }  # fmt: skip
    no_answer = sum(
        scrape.value("provisioner_request_errors_total", **label)
        for label in errors
        if label["operation"] == "create" and label["error_type"] != "cancelled"
    )
    assert no_answer > 0
    assert no_answer == scrape.value(
        "provisioner_request_duration_seconds_count",
        operation="create",
        outcome="error",
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
    assert (
        later.value("provisioner_requests_total", operation="create", code="201") >= 5
    )
    assert (RATE, frozenset()) not in later.values  # --rate 0: no +Inf sample
    assert later.value("process_resident_memory_bytes") > 0
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


# --- the last run: --metrics-textfile and --pushgateway ------------------------


def families(text: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """Every sample of a text exposition, by name and labels."""
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = (
                sample.value
            )
    return found


def run_main(jobs: Path, emulator: Emulator, results: Path, *extra: str) -> int:
    return main([
        "run", str(jobs), "--api-url", emulator.url, "--results", str(results),
        "--no-progress", "--backoff", "0", "--max-attempts", "1", *extra,
    ])  # fmt: skip


def test_a_run_leaves_its_series_in_a_textfile_and_keeps_the_last_success(
    make_live_emulator, write_jobs, tmp_path, monkeypatch
):
    """--metrics-textfile holds the last run's histogram, counters and exit code, and a failed run keeps the last success."""
    monkeypatch.setenv("QODER_PAT", TEST_TOKEN)
    textfile = tmp_path / "provisioner.prom"
    good = make_live_emulator()
    code = run_main(write_jobs(make_specs(5)), good, tmp_path / "a.jsonl",
                    "--metrics-textfile", str(textfile))  # fmt: skip
    first = families(textfile.read_text())
    down = make_live_emulator(faults=FaultPlan(error_503=1.0, seed=1))
    failed = run_main(write_jobs(make_specs(2, prefix="other")), down,
                      tmp_path / "b.jsonl", "--metrics-textfile", str(textfile))  # fmt: skip
    second = families(textfile.read_text())

    assert (code, failed) == (0, 1)
    ok = frozenset({("operation", "create"), ("outcome", "2xx")})
    assert first["provisioner_request_duration_seconds_count"][ok] == 5
    assert first["provisioner_records_total"][frozenset({("status", "created")})] == 5
    assert first["provisioner_build_info"] == {frozenset({("version", VERSION)}): 1}
    assert first["provisioner_run_exit_code"][frozenset()] == 0
    start = first["provisioner_run_start_timestamp_seconds"][frozenset()]
    end = first["provisioner_run_end_timestamp_seconds"][frozenset()]
    assert 0 < start <= end
    success = first["provisioner_run_last_success_timestamp_seconds"][frozenset()]
    assert success == end
    assert not [name for name in first if name.startswith(("process_", "python_"))]
    assert second["provisioner_run_exit_code"][frozenset()] == 1
    assert second["provisioner_run_end_timestamp_seconds"][frozenset()] > end
    assert (
        second["provisioner_run_last_success_timestamp_seconds"][frozenset()] == success
    )
    fails = frozenset({("operation", "create"), ("outcome", "5xx")})
    assert second["provisioner_request_duration_seconds_count"][fails] == 2
    assert ok not in second["provisioner_request_duration_seconds_count"]
    assert [p.name for p in tmp_path.glob("provisioner.prom*")] == ["provisioner.prom"]


@dataclass
class Pushgateway:
    """A stand-in Pushgateway on loopback: what was pushed, and how."""

    url: str
    pushes: list[tuple[str, str, dict[str, str], str]] = field(default_factory=list)


@pytest.fixture
def pushgateway() -> Iterator[Pushgateway]:
    gateway = Pushgateway(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            gateway.pushes.append(
                (self.command, self.path, dict(self.headers), body.decode())
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    gateway.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_run_pushes_its_series_to_a_pushgateway_with_basic_auth_from_env(
    live_emulator, write_jobs, monkeypatch, pushgateway, capsys
):
    """--pushgateway PUTs the run's series to /metrics/job/<job>; a user:password from PROVISIONER_PUSHGATEWAY becomes basic auth."""
    monkeypatch.setenv("QODER_PAT", TEST_TOKEN)
    with_login = pushgateway.url.replace("http://", "http://ops:s3cr%3At@")
    monkeypatch.setenv("PROVISIONER_PUSHGATEWAY", with_login)
    code = run_main(write_jobs(make_specs(3)), live_emulator, Path("-"),
                    "--pushgateway-job", "nightly")  # fmt: skip

    assert code == 0, capsys.readouterr().err
    ((method, path, headers, body),) = pushgateway.pushes
    assert (method, path) == ("PUT", "/metrics/job/nightly")
    assert (
        headers["Authorization"] == "Basic " + base64.b64encode(b"ops:s3cr:t").decode()
    )
    pushed = families(body)
    ok = frozenset({("operation", "create"), ("outcome", "2xx")})
    assert pushed["provisioner_request_duration_seconds_count"][ok] == 3
    assert pushed["provisioner_run_exit_code"][frozenset()] == 0
    assert "provisioner_build_info" in pushed
    assert "s3cr" not in capsys.readouterr().err


def test_a_pushgateway_password_on_the_command_line_is_refused(write_jobs, capsys):
    """A --pushgateway URL with a password is a usage error that does not echo it (ps would show it)."""
    code = main(["run", str(write_jobs(make_specs(1))),
                 "--pushgateway", "http://ops:hunter2@127.0.0.1:9091"])  # fmt: skip

    err = capsys.readouterr().err
    assert code == 2
    assert "PROVISIONER_PUSHGATEWAY" in err
    assert "hunter2" not in err


def test_an_unreachable_pushgateway_is_a_warning_not_a_failed_run(
    live_emulator, write_jobs, tmp_path, monkeypatch, capsys
):
    """When the push fails the run still exits 0, saying so in one warning line."""
    monkeypatch.setenv("QODER_PAT", TEST_TOKEN)
    port = free_port()
    code = run_main(write_jobs(make_specs(2)), live_emulator, tmp_path / "r.jsonl",
                    "--pushgateway", f"http://127.0.0.1:{port}")  # fmt: skip

    assert code == 0
    (line,) = [
        line for line in capsys.readouterr().err.splitlines() if "--pushgateway" in line
    ]
    assert line.startswith(
        f"provisioner: warning: --pushgateway http://127.0.0.1:{port}: "
    )


def test_a_textfile_in_a_missing_folder_is_a_usage_error(write_jobs, tmp_path, capsys):
    """--metrics-textfile in a folder that does not exist stops the run before anything is sent."""
    code = main(["run", str(write_jobs(make_specs(1))), "--sandbox",
                 "--metrics-textfile", str(tmp_path / "nowhere" / "p.prom")])  # fmt: skip

    assert code == 2
    assert "--metrics-textfile" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(200, "2xx"), (201, "2xx"), (409, "4xx"), (429, "4xx"), (503, "5xx"),
     ("timeout", "error"), ("connection_reset", "error"), ("cancelled", "cancelled")],
)  # fmt: skip
def test_a_request_is_classed_by_its_answer(code, outcome):
    """An HTTP status counts under its class and its code; an error type only under error_type."""
    metrics = Metrics()
    metrics.request_started()
    metrics.request_ended("create", code, 0.004)
    scrape = families(metrics.render().decode())

    ended = frozenset({("operation", "create"), ("outcome", outcome)})
    assert scrape["provisioner_request_duration_seconds_count"] == {ended: 1}
    assert (
        scrape["provisioner_request_duration_seconds_bucket"][ended | {("le", "0.005")}]
        == 1
    )
    answered = scrape.get("provisioner_requests_total", {})
    errors = scrape.get("provisioner_request_errors_total", {})
    if isinstance(code, int):
        assert answered == {
            frozenset({("operation", "create"), ("code", str(code))}): 1
        }
        assert errors == {}
    else:
        assert answered == {}
        assert errors == {frozenset({("operation", "create"), ("error_type", code)}): 1}
    assert scrape["provisioner_requests_in_flight"] == {frozenset(): 0}


@pytest.mark.parametrize("value", ["pushgateway:9091", "ftp://host", "http://[::1"])
def test_an_impossible_pushgateway_url_is_a_usage_error(value, write_jobs, capsys):
    """--pushgateway takes an http:// or https:// URL with a host; anything else is refused at the door."""
    code = main(["run", str(write_jobs(make_specs(1))), "--pushgateway", value])

    assert code == 2
    assert "--pushgateway" in capsys.readouterr().err
