"""Queue mode on a real Redis Cluster: three masters and their replicas, started here.

Every command works when ``--redis`` names any node (the cluster is detected),
the Lua scripts keep to the queue's one slot, and a master killed mid-drain
(its replica promoted) costs nothing: every spec created once, nothing pending.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from provisioner.emulator import Emulator, FaultPlan
from provisioner.queue.streams import JobQueue, queue_keys
from provisioner.settings import RedisSettings
from tests.helpers import (
    RedisClusterNodes,
    finish,
    make_specs,
    run_cli,
    spawn_cli,
    wait_for_results,
)

MISSING = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]

pytestmark = pytest.mark.skipif(
    bool(MISSING) and os.environ.get("CI") != "true",
    reason=f"{' and '.join(MISSING)} not installed (CI installs them and fails without)",
)

BROKEN = {"spec": '{"name": "broken", "config": "cloud"}', "key": "k", "name": "broken"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A fresh 3-master, 3-replica cluster for this module; killed at its end."""
    if MISSING:
        pytest.fail(f"{' and '.join(MISSING)} not installed, and CI=true")
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("cluster"))
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


def queue_on(cluster: RedisClusterNodes, stream: str) -> JobQueue:
    """The test's own view of ``stream``, said to be on a cluster."""
    url = cluster.url(scheme="redis+cluster")
    return JobQueue.connect(RedisSettings(url=url, stream=stream))


def worker_args(url: str, stream: str, emulator: Emulator) -> list[str]:
    return [
        "worker", "--redis", url, "--stream", stream, "--api-url", emulator.url,
        "--rate", "0", "--backoff", "0", "--claim-idle", "2", "--exit-when-empty",
        "--log-format", "json",
    ]  # fmt: skip


async def test_every_command_works_on_any_node_of_a_cluster(
    cluster: RedisClusterNodes, live_emulator: Emulator, write_jobs
):
    """enqueue, worker, queue-status and dead-letters, each pointed at a different node."""
    stream, total = "cluster-cli", 40
    queue = queue_on(cluster, stream)
    urls = [cluster.url(port) for port in cluster.ports]
    try:
        assert queue.is_cluster
        enqueued = run_cli(
            "enqueue",
            write_jobs(make_specs(total)),
            "--redis",
            urls[1],
            "--stream",
            stream,
        )
        assert enqueued.returncode == 0, enqueued.stderr
        await queue.add([BROKEN])
        code, err = finish(spawn_cli(*worker_args(urls[2], stream, live_emulator)))
        assert code == 1, err[-2000:]  # the broken spec was dead-lettered
        status = run_cli(
            "queue-status", "--redis", urls[3], "--stream", stream, "--format", "json"
        )
        letters = run_cli(
            "dead-letters", "list", "--redis", urls[4], "--stream", stream, "--format", "json"
        )  # fmt: skip
        results = await queue.results()
    finally:
        await queue.delete_all()
        await queue.close()
    counts = live_emulator.creation_counts()
    assert (len(counts), set(counts.values())) == (total, {1})
    assert len(results) == total
    assert status.returncode == 0, status.stderr
    data = orjson.loads(status.stdout)
    assert (data["length"], data["pending"], data["dead_letters"]) == (0, 0, 1)
    assert letters.returncode == 0, letters.stderr
    listed = orjson.loads(letters.stdout)["dead_letters"]
    assert [d["fields"]["name"] for d in listed] == ["broken"]


async def test_a_plain_url_of_a_cluster_node_is_detected(cluster: RedisClusterNodes):
    """JobQueue.open asks the node: a cluster node gets the cluster client."""
    queue = await JobQueue.open(
        RedisSettings(url=cluster.url(cluster.ports[5]), stream="probe")
    )
    try:
        assert queue.is_cluster
        await queue.ensure_group("provisioner")
        assert (await queue.status("provisioner")).length == 0
    finally:
        await queue.delete_all()
        await queue.close()


@pytest.mark.slow
async def test_a_master_killed_mid_drain_costs_nothing(
    cluster: RedisClusterNodes, make_live_emulator, write_jobs, tmp_path: Path
):
    """The master of the queue's slot SIGKILLed mid-drain: its replica takes over,
    two workers carry on, every spec is created once and nothing is left pending."""
    emulator = make_live_emulator(faults=FaultPlan(latency_ms=100))
    stream, total = "cluster-failover", 300
    master = cluster.master_of(queue_keys(stream)["specs"])
    url = cluster.url(next(p for p in cluster.live() if p != master))
    enqueued = run_cli(
        "enqueue", write_jobs(make_specs(total)), "--redis", url, "--stream", stream
    )
    assert enqueued.returncode == 0, enqueued.stderr
    args = [*worker_args(url, stream, emulator), "--concurrency", "4"]
    workers = [spawn_cli(*args, "--consumer", f"w{i}") for i in range(2)]
    queue = queue_on(cluster, stream)
    try:
        await wait_for_results(queue, 40)
        cluster.kill(master)
        await asyncio.to_thread(
            cluster.wait_failover, queue_keys(stream)["specs"], master
        )
        outcomes = [finish(w, timeout=60) for w in workers]
        assert [code for code, _ in outcomes] == [0, 0], [
            e[-2000:] for _, e in outcomes
        ]
        results = await queue.results()
        status = await queue.status("provisioner")
    finally:  # the keys go with the module's cluster; a delete here could hide a failure
        await queue.close()
    counts = emulator.creation_counts()
    assert (len(counts), set(counts.values())) == (total, {1})
    assert len({r["name"] for r in results}) == total
    assert (status.length, status.pending) == (0, 0)
