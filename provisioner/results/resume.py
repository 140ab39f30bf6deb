"""Reading a result log back: its records, what an earlier run settled, resume and compaction."""

from __future__ import annotations

import os
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from provisioner.errors import ResultLogError
from provisioner.results.record import STATUSES, SUCCESS, Result
from provisioner.results.sink import is_regular_log


def iter_records(
    path: str, *, stream: BinaryIO | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, record)`` for every record of a result log; a torn last line is skipped.

    ``stream``, if given, is read instead of opening ``path`` (stdin, for ``-``), and
    left open; ``path`` then only names it in errors.

    Raises:
        ResultLogError: a line other than the last is not a JSON object.
    """
    if stream is not None:
        yield from _lines_to_records(path, stream)
        return
    try:
        fh = Path(path).open("rb")  # noqa: SIM115 - closed below, generator-safe
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ResultLogError(f"cannot read result log {path}: {exc.strerror}") from exc
    with fh:
        yield from _lines_to_records(path, fh)


def _lines_to_records(
    path: str, lines: Iterable[bytes]
) -> Iterator[tuple[int, dict[str, Any]]]:
    pending: tuple[int, bytes] | None = None
    for number, raw in enumerate(lines, start=1):
        if pending is not None:
            yield pending[0], _parse_record(path, *pending)
        pending = (number, raw) if raw.strip() else None
    if pending is not None and pending[1].endswith(b"\n"):
        yield pending[0], _parse_record(path, *pending)


def _parse_record(path: str, line: int, raw: bytes) -> dict[str, Any]:
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ResultLogError(f"{path}:{line}: not a JSON record ({exc})") from exc
    if not isinstance(record, dict) or record.get("status") not in STATUSES:
        raise ResultLogError(f"{path}:{line}: not a result record")
    return record


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What an earlier run against the same target already settled, by spec name.

    Attributes:
        done: name -> status of every spec whose last record (for this target and
            this exact spec key) needs no further request: ``created`` or
            ``exists``, and ``failed`` when failed specs are not retried.
        log_existed: an earlier run against this target used the log (or left it
            empty), so it may have sent requests whose answers it never recorded.
        foreign: target -> how many records of another API the log holds (ignored).
        created_ids: name -> id of the environments this log created, for the
            names that will be redone (an edited spec keeps that knowledge).
    """

    done: dict[str, str]
    log_existed: bool = False
    foreign: dict[str, int] = field(default_factory=dict)
    created_ids: dict[str, str] = field(default_factory=dict)

    def was_created_here(self, result: Result) -> bool:
        """Whether ``result``'s environment is one this log recorded as created."""
        return (
            result.status in ("exists", "updated")
            and result.name is not None
            and result.id is not None
            and self.created_ids.get(result.name) == result.id
        )

    def status_of(self, name: str) -> str | None:
        """The settled status of ``name``, or ``None`` when it must be (re)done."""
        return self.done.get(name)


#: How a record without a ``target`` (written before targets were recorded) is named.
NO_TARGET = "(no target recorded)"


@dataclass(slots=True)
class LogState:
    """What a result log says about one target, read before the input is scanned.

    Attributes:
        last: name -> (status, spec key) of the last record of each name.
        foreign: target -> how many records of another API the log holds.
        has_ours: the log holds records of this target.
        has_nameless: it holds records of invalid specs without a name.
        is_readable: the log is a regular file (a pipe or device is never read).
        drifted: the names whose last record is ``exists`` with a ``drift`` (and
            not ``archived``): ``run --update`` has something left to do there.
        created_ids: name -> id, for names whose last record says this log
            created its environment (``created``, or ``created_earlier``).
    """

    last: dict[str, tuple[str, object]] = field(default_factory=dict)
    drifted: set[str] = field(default_factory=set)
    created_ids: dict[str, str] = field(default_factory=dict)
    foreign: dict[str, int] = field(default_factory=dict)
    has_ours: bool = False
    has_nameless: bool = False
    is_readable: bool = False


def read_log(path: str, *, target: str) -> LogState:
    """Read the log's records of ``target`` (and count everyone else's).

    Raises:
        ResultLogError: a line other than the last is not a result record.
    """
    state = LogState(is_readable=is_regular_log(path))
    if not state.is_readable:
        return state
    for _, record in iter_records(path):
        record_target = record.get("target")
        if record_target != target:
            label = record_target if isinstance(record_target, str) else NO_TARGET
            state.foreign[label] = state.foreign.get(label, 0) + 1
            continue
        state.has_ours = True
        name = record.get("name")
        if isinstance(name, str):
            state.last[name] = (record["status"], record.get("spec_key"))
            _note_drift(state.drifted, name, record)
            _note_created(state.created_ids, name, record)
        else:
            state.has_nameless = True
    return state


def is_created_here(record: Mapping[str, Any]) -> bool:
    """Whether a record says its run, or an earlier run of its log, created the environment."""
    return record.get("status") == "created" or (
        record.get("status") in ("exists", "updated")
        and record.get("created_earlier") is True
    )


def _note_created(
    created: dict[str, str], name: str, record: Mapping[str, Any]
) -> None:
    """Keep ``name``'s id in ``created`` while its last record says this log created it."""
    env_id = record.get("id")
    if is_created_here(record) and isinstance(env_id, str):
        created[name] = env_id
    else:
        created.pop(name, None)


def _note_drift(drifted: set[str], name: str, record: Mapping[str, Any]) -> None:
    """Keep ``name`` in ``drifted`` while its last record is an updatable drift."""
    if (
        record["status"] == "exists"
        and record.get("drift")
        and not record.get("archived")
    ):
        drifted.add(name)
    else:
        drifted.discard(name)


def prepare_resume(
    path: str,
    state: LogState,
    *,
    target: str,
    input_names: Container[str],
    input_keys: Mapping[str, str],
    retry_failed: bool,
    redo_drifted: bool = False,
) -> ResumeState:
    """Decide what is settled, and compact what will be redone.

    Only records made against ``target`` count (``state`` is
    :func:`read_log`'s); a record is settled when it is the last one of its
    name, its ``spec_key`` equals the spec's key in ``input_keys`` (an edited
    spec is not done; only the names the log holds need a key there), and its
    status is ``created``, ``updated`` or ``exists`` (or ``failed`` when
    ``retry_failed`` is off), except, with ``redo_drifted`` (``run --update``),
    an ``exists`` that recorded a drift. This target's records of specs that will be attempted again are
    removed from the log (atomically), so after the run every spec has one
    record per target. Records of other targets are kept as they are.
    ``input_names`` says whether the job files have a name; it is asked only
    about the names the log holds.
    """
    if not state.is_readable:
        return ResumeState(done={})
    settled = set(SUCCESS) if retry_failed else {*SUCCESS, "failed"}
    done = {
        name: status
        for name, (status, key) in state.last.items()
        if status in settled
        and key == input_keys.get(name)
        and not (redo_drifted and name in state.drifted)
    }
    redo = {name for name in state.last if name in input_names and name not in done}
    if redo or state.has_nameless:
        # Nameless records are invalid specs; a run that still finds them invalid
        # writes them again.
        _rewrite(
            path,
            keep=lambda r: (
                r.get("target") != target
                or (isinstance(r.get("name"), str) and r["name"] not in redo)
            ),
        )
    log_existed = state.has_ours or not state.foreign
    created_ids = {n: i for n, i in state.created_ids.items() if n in redo}
    return ResumeState(
        done=done,
        log_existed=log_existed,
        foreign=state.foreign,
        created_ids=created_ids,
    )


def rewrite_log(path: str, *, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Keep only the records ``keep`` accepts, replacing the log atomically.

    Raises:
        ResultLogError: the log could not be rewritten.
    """
    _rewrite(path, keep=keep)


def _rewrite(path: str, *, keep: Callable[[dict[str, Any]], bool]) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            for _, record in iter_records(path):
                if keep(record):
                    out.write(orjson.dumps(record) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(target)
    except OSError as exc:
        raise ResultLogError(
            f"cannot compact result log {path}: {exc.strerror}"
        ) from exc


def set_aside(path: str, *, now: datetime) -> str | None:
    """Rename an existing log to ``<path>.<UTC time>`` (for ``--no-resume``)."""
    target = Path(path)
    if not target.exists() or target.stat().st_size == 0:
        return None
    aside = target.with_name(f"{target.name}.{now.strftime('%Y%m%dT%H%M%SZ')}")
    target.replace(aside)
    return str(aside)


__all__ = [
    "NO_TARGET",
    "LogState",
    "ResumeState",
    "is_created_here",
    "iter_records",
    "prepare_resume",
    "read_log",
    "rewrite_log",
    "set_aside",
]
