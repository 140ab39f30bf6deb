"""`provisioner dead-letters list|show|replay|purge` on a real Redis, with real workers and the emulator."""

from __future__ import annotations

import os
import pty
import subprocess
from collections import Counter
from typing import Any

import orjson

from provisioner.emulator import Emulator
from provisioner.queue.streams import JobQueue
from tests.helpers import finish, make_specs, redis_args, run_cli, start_worker

BROKEN = {"spec": '{"name": "broken", "config": "cloud"}', "key": "k", "name": "broken"}


def dead_letters(
    queue: JobQueue, *args: str, **options: Any
) -> subprocess.CompletedProcess[str]:
    """``provisioner dead-letters ARGS`` on ``queue``'s stream, stdin not a terminal."""
    options.setdefault("stdin", subprocess.DEVNULL)
    return run_cli("dead-letters", *args, *redis_args(queue), **options)


async def kill_off(
    queue: JobQueue, emulator: Emulator, write_jobs, count: int = 1
) -> None:
    """Queue ``count`` valid specs and let a worker dead-letter them (delivered too often)."""
    assert (
        run_cli("enqueue", write_jobs(make_specs(count)), *redis_args(queue)).returncode
        == 0
    )
    await queue.ensure_group("provisioner")
    await queue.read("provisioner", "ghost-1", count=count, block_ms=100)
    await queue.claim("provisioner", "ghost-2", min_idle_ms=0, count=count)
    code, err = finish(
        start_worker(queue, emulator, "--exit-when-empty", "--max-deliveries", "2")
    )
    assert code == 1, err


async def add_broken(queue: JobQueue, emulator: Emulator) -> None:
    """A message with an invalid spec, dead-lettered by a worker."""
    await queue.add([BROKEN])
    code, err = finish(start_worker(queue, emulator, "--exit-when-empty"))
    assert code == 1, err


async def test_list_and_show_print_text_and_json_and_filter_by_reason(
    redis: JobQueue, live_emulator: Emulator, write_jobs
):
    """list shows every letter (text and one JSON document), --reason keeps the matching ones, show prints one."""
    await kill_off(redis, live_emulator, write_jobs, count=2)
    await add_broken(redis, live_emulator)

    text = dead_letters(redis, "list")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"3 dead letters on stream {redis.stream}")
    assert "delivered 3 times" in text.stdout
    assert "invalid spec" in text.stdout

    data = orjson.loads(dead_letters(redis, "list", "--format", "json").stdout)
    assert data["count"] == 3
    assert Counter(d["deliveries"] for d in data["dead_letters"]) == {3: 2, 1: 1}
    assert all(
        {"id", "fields", "message_id", "reason", "dead_at"} <= d.keys()
        for d in data["dead_letters"]
    )

    only = orjson.loads(
        dead_letters(
            redis, "list", "--reason", "INVALID SPEC", "--format", "json"
        ).stdout
    )
    assert [d["fields"]["name"] for d in only["dead_letters"]] == ["broken"]
    limited = orjson.loads(
        dead_letters(redis, "list", "--limit", "1", "--format", "json").stdout
    )
    assert limited["count"] == 1

    letter_id = only["dead_letters"][0]["id"]
    shown = dead_letters(redis, "show", letter_id)
    assert shown.returncode == 0, shown.stderr
    assert f"dead letter {letter_id}" in shown.stdout
    assert '"config": "cloud"' in shown.stdout
    as_json = orjson.loads(
        dead_letters(redis, "show", letter_id, "--format", "json").stdout
    )
    assert as_json["fields"] == BROKEN
    assert as_json["id"] == letter_id

    missing = dead_letters(redis, "show", "1-1")
    assert missing.returncode == 1
    assert "no dead letter 1-1" in missing.stderr
    assert dead_letters(redis, "show", "nonsense").returncode == 2


async def test_replay_queues_the_original_message_and_a_worker_creates_it_once(
    redis: JobQueue, live_emulator: Emulator, write_jobs
):
    """replay --yes re-adds the fields with the same key; a worker then creates the environment exactly once."""
    await kill_off(redis, live_emulator, write_jobs)
    (letter,) = await redis.find_dead_letters()
    assert live_emulator.creation_counts() == {}

    replayed = dead_letters(redis, "replay", "--yes", "--format", "json")

    assert replayed.returncode == 0, replayed.stderr
    report = orjson.loads(replayed.stdout)
    assert [r["id"] for r in report["replayed"]] == [letter.id]
    assert report["replayed"][0]["key"] == letter.fields["key"]
    assert report["invalid"] == []
    assert await redis.find_dead_letters() == []
    code, err = finish(start_worker(redis, live_emulator, "--exit-when-empty"))
    assert code == 0, err
    assert live_emulator.creation_counts() == {letter.fields["name"]: 1}
    (record,) = await redis.results()
    assert (record["status"], record["spec_key"]) == ("created", letter.fields["key"])

    again = dead_letters(redis, "replay", letter.id, "--yes")
    assert again.returncode == 1
    assert f"no dead letter {letter.id}" in again.stderr


async def test_replaying_a_spec_created_meanwhile_creates_nothing_twice(
    redis: JobQueue, live_emulator: Emulator, write_jobs
):
    """A dead letter whose spec was queued again and created is recorded `exists`, same id, one create."""
    await kill_off(redis, live_emulator, write_jobs)
    jobs = write_jobs(make_specs(1))
    assert run_cli("enqueue", jobs, *redis_args(redis)).returncode == 0
    assert finish(start_worker(redis, live_emulator, "--exit-when-empty"))[0] == 0

    assert dead_letters(redis, "replay", "--yes").returncode == 0
    assert finish(start_worker(redis, live_emulator, "--exit-when-empty"))[0] == 0

    assert set(live_emulator.creation_counts().values()) == {1}
    records = await redis.results()
    assert [r["status"] for r in records] == ["created", "exists"]
    assert len({r["id"] for r in records}) == 1


async def test_an_invalid_letter_stays_dead_when_replayed(
    redis: JobQueue, live_emulator: Emulator, write_jobs
):
    """replay checks each spec again: the broken one is reported and kept, the valid one is queued; exit 1."""
    await kill_off(redis, live_emulator, write_jobs)
    await add_broken(redis, live_emulator)

    replayed = dead_letters(redis, "replay", "--yes")

    assert replayed.returncode == 1
    assert "kept" in replayed.stdout
    assert "invalid spec: config" in replayed.stdout
    assert "replayed 1 dead letters" in replayed.stdout
    (kept,) = await redis.find_dead_letters()
    assert kept.fields == BROKEN
    assert (await redis.status("provisioner")).length == 1


async def test_purge_needs_yes_without_a_terminal_then_empties(
    redis: JobQueue, live_emulator: Emulator, write_jobs
):
    """Without --yes and no terminal: exit 2, one error line, nothing changed; with --yes all are gone."""
    await kill_off(redis, live_emulator, write_jobs)
    await add_broken(redis, live_emulator)

    for action in ("purge", "replay"):
        refused = dead_letters(redis, action)
        assert refused.returncode == 2
        assert "pass --yes" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert len(await redis.find_dead_letters()) == 2
    assert (await redis.status("provisioner")).length == 0

    only = dead_letters(redis, "purge", "--reason", "invalid", "--yes")
    assert only.returncode == 0, only.stderr
    (left,) = await redis.find_dead_letters()
    assert left.reason.startswith("delivered 3 times")

    purged = dead_letters(redis, "purge", "--yes", "--format", "json")
    assert purged.returncode == 0, purged.stderr
    assert orjson.loads(purged.stdout)["purged"] == 1
    assert await redis.find_dead_letters() == []
    assert (await redis.status("provisioner")).dead_letters == 0


def on_a_terminal(
    queue: JobQueue, answer: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``dead-letters ARGS`` with a pseudo-terminal as stdin that answers ``answer``."""
    main, child = pty.openpty()
    try:
        os.write(main, answer.encode() + b"\n")
        return dead_letters(queue, *args, stdin=child)
    finally:
        os.close(child)
        os.close(main)


async def test_on_a_terminal_purge_asks_and_a_no_changes_nothing(
    redis: JobQueue, live_emulator: Emulator, write_jobs
):
    """On a terminal: Proceed? [y/N]; `n` exits 1 with everything kept, `y` purges."""
    await add_broken(redis, live_emulator)

    declined = on_a_terminal(redis, "n", "purge")
    assert declined.returncode == 1
    assert "Proceed? [y/N]" in declined.stderr
    assert len(await redis.find_dead_letters()) == 1

    accepted = on_a_terminal(redis, "y", "purge")
    assert accepted.returncode == 0, accepted.stderr
    assert await redis.find_dead_letters() == []
