"""``provisioner dead-letters list|show|replay|purge``: a queue's dead letters as commands.

``list`` and ``show`` read the dead-letter stream; ``replay`` checks each spec again
as a worker would and queues it again with its original fields (its key too, so
the API replays instead of creating twice), in one atomic step per letter: an
invalid one stays dead and is reported. ``purge`` deletes them. Without IDs,
``replay`` and ``purge`` act on every letter ``--reason`` and ``--limit`` select,
after ``Proceed? [y/N]`` on a terminal (``--yes`` skips it and is required without
one). Results go to stdout (text, or one JSON document with ``--format json``),
messages to stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from provisioner.cli import eventloop
from provisioner.cli.common import ExitCode, confirm, print_json, say
from provisioner.cli.flags import UsageError
from provisioner.cli.queue import ONE_SHOT_RETRIES, redis_settings
from provisioner.queue.message import read_message
from provisioner.queue.streams import DeadLetter, JobQueue, Message
from provisioner.redact import printable
from provisioner.settings import RedisSettings

_ENTRY_ID = re.compile(r"^\d+-\d+$")


@dataclass(frozen=True, slots=True)
class _Selection:
    """The dead letters a command acts on, and the IDs it was given that are not there."""

    letters: list[DeadLetter]
    missing: list[str]


@dataclass(slots=True)
class _Replayed:
    """What a replay did, letter by letter."""

    queued: list[tuple[DeadLetter, str]] = field(default_factory=list)
    invalid: list[tuple[DeadLetter, str]] = field(default_factory=list)
    gone: list[DeadLetter] = field(default_factory=list)


Action = Callable[[argparse.Namespace, RedisSettings], int]


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """Run ``dead-letters ACTION``; returns the exit code.

    Raises:
        UsageError: an ID that is not an entry id, or the wrong number of IDs.
    """
    for entry_id in args.ids:
        if not _ENTRY_ID.match(entry_id):
            raise UsageError(
                f"{entry_id!r} is not a dead-letter id (<ms>-<seq>, as list shows them)"
            )
    if args.action == "list" and args.ids:
        raise UsageError("list takes no ID (show ID shows one)")
    if args.action == "show" and len(args.ids) != 1:
        raise UsageError("show takes exactly one ID")
    return _ACTIONS[args.action](args, redis_settings(args))


# --- list and show -----------------------------------------------------------------


def _list(args: argparse.Namespace, settings: RedisSettings) -> int:
    found = eventloop.run(_select(settings, args))
    if args.format == "json":
        print_json(_listing(settings, found.letters))
    else:
        sys.stdout.write(render_list(found.letters, settings))
    return ExitCode.OK


def _show(args: argparse.Namespace, settings: RedisSettings) -> int:
    found = eventloop.run(_select(settings, args, use_filters=False))
    if not found.letters:
        say(f"no dead letter {args.ids[0]} on stream {settings.stream}")
        return ExitCode.FAILED
    (letter,) = found.letters
    if args.format == "json":
        print_json(letter.to_dict())
    else:
        sys.stdout.write(render_letter(letter, settings))
    return ExitCode.OK


def _listing(settings: RedisSettings, letters: Sequence[DeadLetter]) -> dict[str, Any]:
    return {
        "stream": settings.stream,
        "count": len(letters),
        "dead_letters": [letter.to_dict() for letter in letters],
    }


def render_list(letters: Sequence[DeadLetter], settings: RedisSettings) -> str:
    """One line per dead letter: id, name, deliveries, when and why."""
    lines = [
        f"{len(letters)} dead letters on stream {settings.stream} ({settings.shown_url})"
    ]
    lines += [
        printable(
            f"  {d.id}  {d.fields.get('name') or '-'}  deliveries {d.deliveries}  "
            f"dead {d.dead_at or '-'}  {d.reason}"
        )
        for d in letters
    ]
    return "\n".join(lines) + "\n"


def render_letter(letter: DeadLetter, settings: RedisSettings) -> str:
    """A dead letter's reason, history and every field of its message."""
    rows = [
        ("reason", letter.reason),
        ("deliveries", str(letter.deliveries)),
        ("dead at", letter.dead_at),
        ("message id", letter.message_id),
        *((f"field {name}", value) for name, value in letter.fields.items()),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"dead letter {letter.id} on stream {settings.stream}"]
    lines += [f"  {name.ljust(width)}  {printable(value)}" for name, value in rows]
    return "\n".join(lines) + "\n"


# --- replay and purge ----------------------------------------------------------------


def _replay(args: argparse.Namespace, settings: RedisSettings) -> int:
    found = _selected(args, settings)
    done = _Replayed()
    if found.letters:
        what = f"replay {len(found.letters)} dead letters onto stream {settings.stream}"
        refused = confirm(
            what,
            yes=bool(args.yes),
            cancelled="cancelled; nothing was changed",
            announce=what,
        )
        if refused is not None:
            return refused
        done = eventloop.run(_replay_all(settings, found.letters))
    if args.format == "json":
        print_json(_replay_report(settings, done, found.missing))
    else:
        _print_replayed(settings, done)
    failed = done.invalid or done.gone or found.missing
    return ExitCode.FAILED if failed else ExitCode.OK


def _purge(args: argparse.Namespace, settings: RedisSettings) -> int:
    found = _selected(args, settings)
    purged = 0
    if found.letters:
        what = f"delete {len(found.letters)} dead letters of stream {settings.stream}"
        refused = confirm(
            what,
            yes=bool(args.yes),
            cancelled="cancelled; nothing was changed",
            announce=what,
        )
        if refused is not None:
            return refused
        ids = [letter.id for letter in found.letters]
        purged = eventloop.run(_purge_all(settings, ids))
    if args.format == "json":
        report = {"stream": settings.stream, "purged": purged, "missing": found.missing}
        print_json(report)
    else:
        print(f"purged {purged} dead letters of stream {settings.stream}")
    return ExitCode.FAILED if found.missing else ExitCode.OK


def _selected(args: argparse.Namespace, settings: RedisSettings) -> _Selection:
    """The letters to act on; names the IDs not found."""
    found = eventloop.run(_select(settings, args))
    for entry_id in found.missing:
        say(f"no dead letter {entry_id} on stream {settings.stream}")
    return found


def _replay_report(
    settings: RedisSettings, done: _Replayed, missing: list[str]
) -> dict[str, Any]:
    return {
        "stream": settings.stream,
        "replayed": [
            {
                "id": d.id,
                "new_id": new,
                "name": d.fields.get("name"),
                "key": d.fields.get("key"),
            }
            for d, new in done.queued
        ],
        "invalid": [{"id": d.id, "reason": why} for d, why in done.invalid],
        "gone": [d.id for d in done.gone],
        "missing": missing,
    }


def _print_replayed(settings: RedisSettings, done: _Replayed) -> None:
    for letter, new_id in done.queued:
        name = letter.fields.get("name") or "-"
        print(printable(f"replayed {letter.id} as {new_id}  {name}"))
    for letter, why in done.invalid:
        print(printable(f"kept {letter.id} (still invalid: {why})"))
    for letter in done.gone:
        print(f"gone {letter.id} (replayed or purged meanwhile)")
    print(
        f"replayed {len(done.queued)} dead letters onto stream {settings.stream}; "
        f"{len(done.invalid)} invalid, kept"
    )


# --- Redis -----------------------------------------------------------------------------


async def _select(
    settings: RedisSettings, args: argparse.Namespace, *, use_filters: bool = True
) -> _Selection:
    """The IDs' letters (or all), then those --reason and --limit keep."""
    reason = args.reason if use_filters else None
    limit = args.limit if use_filters else None
    queue = await JobQueue.open(settings, retries=ONE_SHOT_RETRIES)
    try:
        if not args.ids:
            return _Selection(
                await queue.find_dead_letters(reason=reason, limit=limit), []
            )
        letters, missing = [], []
        for entry_id in dict.fromkeys(args.ids):
            letter = await queue.find_dead_letter(entry_id)
            if letter is None:
                missing.append(entry_id)
            elif letter.matches(reason):
                letters.append(letter)
        return _Selection(letters[:limit], missing)
    finally:
        await queue.close()


async def _replay_all(
    settings: RedisSettings, letters: Sequence[DeadLetter]
) -> _Replayed:
    """Check each letter's spec as a worker would; queue the valid ones again."""
    done = _Replayed()
    queue = await JobQueue.open(settings, retries=ONE_SHOT_RETRIES)
    try:
        for letter in letters:
            spec, problem = read_message(Message(letter.id, letter.fields, 1))
            if spec is None:
                done.invalid.append((letter, problem))
                continue
            new_id = await queue.replay_dead_letter(letter)
            if new_id is None:
                done.gone.append(letter)
            else:
                done.queued.append((letter, new_id))
    finally:
        await queue.close()
    return done


async def _purge_all(settings: RedisSettings, ids: Sequence[str]) -> int:
    queue = await JobQueue.open(settings, retries=ONE_SHOT_RETRIES)
    try:
        return await queue.purge_dead_letters(ids)
    finally:
        await queue.close()


_ACTIONS: dict[str, Action] = {
    "list": _list,
    "show": _show,
    "replay": _replay,
    "purge": _purge,
}

__all__ = ["cmd_dead_letters", "render_letter", "render_list"]
