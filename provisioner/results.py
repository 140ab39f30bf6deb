"""The result log: one JSON line per spec, appended, flushed, fsynced at a cadence.

A record is on disk (flushed to the OS) before the next spec is reported, so a
killed run loses at most a torn last line, which the next open drops. The same
file is read back to resume a run.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from provisioner.errors import ResultLogError

Status = Literal[
    "created", "updated", "exists", "failed", "invalid", "archived", "deleted"
]
SUCCESS: frozenset[str] = frozenset({"created", "updated", "exists"})
#: ``archived`` and ``deleted`` are written by ``provisioner archive``/``delete`` only.
STATUSES: tuple[Status, ...] = (
    "created",
    "updated",
    "exists",
    "failed",
    "invalid",
    "archived",
    "deleted",
)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a spec did not succeed: a machine-readable type and a sentence.

    ``lookup`` is set when the failure of a follow-up name lookup (after a lost
    or conflicting create) sits beside the create's own error.
    """

    type: str
    message: str
    lookup: ErrorInfo | None = None

    def to_dict(self, scrub: Callable[[str], str]) -> dict[str, Any]:
        """The error as written to the log, its messages scrubbed."""
        data: dict[str, Any] = {"type": self.type, "message": scrub(self.message)}
        if self.lookup is not None:
            data["lookup"] = self.lookup.to_dict(scrub)
        return data


@dataclass(frozen=True, slots=True)
class Result:
    """The final record of one spec.

    ``target`` is the API the record was made against (its base URL, or
    ``sandbox``): resume trusts a record only for the same target. ``drift``
    names the fields (dotted paths) where an environment that exists differed
    from its spec (``exists``: left as it was; ``updated``: changed to match);
    ``archived`` says the environment with the spec's name is archived.
    ``created_earlier`` says an earlier run of this log created the environment
    (an ``exists`` or ``updated`` record that replaced its ``created`` one when the
    spec was edited): teardown acts on it as on a ``created`` one. All three are
    written only when set, so records without them read as before.
    """

    name: str | None
    status: Status
    id: str | None
    attempts: int
    http_status: int | None
    error: ErrorInfo | None
    source: str
    started_at: datetime
    finished_at: datetime
    spec_key: str | None = None
    request_id: str | None = None
    target: str | None = None
    drift: tuple[str, ...] = ()
    archived: bool = False
    created_earlier: bool = False

    @property
    def duration_ms(self) -> float:
        """Milliseconds from the first attempt to the final answer."""
        return round((self.finished_at - self.started_at).total_seconds() * 1000, 3)

    def to_dict(self, scrub: Callable[[str], str] = str) -> dict[str, Any]:
        """The record as written to the log (field order is part of the format)."""
        record: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "id": self.id,
            "attempts": self.attempts,
            "http_status": self.http_status,
            "error": None if self.error is None else self.error.to_dict(scrub),
            "source": self.source,
            "started_at": _rfc3339(self.started_at),
            "finished_at": _rfc3339(self.finished_at),
            "duration_ms": self.duration_ms,
            "spec_key": self.spec_key,
            "request_id": self.request_id,
            "target": self.target,
        }
        if self.drift:
            record["drift"] = list(self.drift)
        if self.archived:
            record["archived"] = True
        if self.created_earlier:
            record["created_earlier"] = True
        return record


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class ResultSink:
    """Appends records to a JSON Lines file (or stdout) as they finish.

    Every record is written with one ``write`` call (repeated only for a short
    write) and reaches the operating system at once; ``fsync`` runs every
    ``fsync_interval_s`` seconds (and every ``fsync_every`` records, if set), and
    on close. (At 10,000 records a second, an fsync per 100 records cost more CPU
    than the records themselves; a second is the cadence of Redis's everysec.) After
    a failed write the sink is broken: it writes nothing more, so a torn line
    can only be the last one (the next open cuts it).

    Args:
        stream: an unbuffered file, or a buffered stream that is flushed per record.
        scrub: applied to every error message before it is stored.
    """

    def __init__(
        self,
        stream: IO[bytes],
        *,
        scrub: Callable[[str], str] = str,
        fsync_every: int | None = None,
        fsync_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._scrub = scrub
        self._fsync_every = fsync_every or sys.maxsize
        self._fsync_interval_s = fsync_interval_s
        self._clock = clock
        self._unsynced = 0
        self._last_sync = clock()
        self._can_sync = _has_fileno(stream)
        self.is_broken = False

    @classmethod
    def open(cls, path: str, **options: Any) -> ResultSink:
        """Open ``path`` for appending (``-`` is stdout), dropping a torn last line."""
        if path == "-":
            return cls(sys.stdout.buffer, **options)
        try:
            drop_torn_tail(path)
            stream = Path(path).open("ab", buffering=0)  # noqa: SIM115 - closed by ResultSink.close
        except OSError as exc:
            raise ResultLogError(
                f"cannot open result log {path}: {exc.strerror}"
            ) from exc
        return cls(stream, **options)

    def write(self, result: Result) -> None:
        """Append one record and hand it to the operating system.

        Raises:
            ResultLogError: the write failed (disk full, file too large, I/O
                error, closed pipe: the ``OSError`` is its ``__cause__``), or an
                earlier one did.
        """
        self.write_json(orjson.dumps(result.to_dict(self._scrub)))

    def write_json(self, record: bytes) -> None:
        """Append one record already serialised as a JSON object (no newline).

        Raises:
            ResultLogError: as :meth:`write`.
        """
        if self.is_broken:
            raise ResultLogError("the result log could not be written earlier")
        try:
            _write_all(self._stream, record + b"\n")
        except OSError as exc:
            self.is_broken = True
            raise ResultLogError(
                f"cannot write the result log: {exc.strerror or exc}"
            ) from exc
        self._unsynced += 1
        now = self._clock()
        if (
            self._unsynced >= self._fsync_every
            or now - self._last_sync >= self._fsync_interval_s
        ):
            self.sync()

    def sync(self) -> None:
        """Force written records to the disk."""
        if self._can_sync and self._unsynced and not self.is_broken:
            with contextlib.suppress(OSError):  # a pipe or tty cannot fsync
                os.fsync(self._stream.fileno())
        self._unsynced = 0
        self._last_sync = self._clock()

    def close(self) -> None:
        """Sync and close (stdout is left open)."""
        self.sync()
        if self._stream is not sys.stdout.buffer:
            with contextlib.suppress(OSError):
                self._stream.close()


def _write_all(stream: IO[bytes], data: bytes) -> None:
    """Write ``data`` whole: an unbuffered file may take it in parts (rarely: the
    common case is one ``write`` and no copy)."""
    written = stream.write(data)
    rest = memoryview(data)
    while written != len(rest):
        if written is None:  # pragma: no cover - only non-blocking streams do this
            raise BlockingIOError("the result log would block")
        rest = rest[written:]
        written = stream.write(rest)
    stream.flush()


def _has_fileno(stream: IO[bytes]) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    return True


def is_regular_log(path: str) -> bool:
    """Whether ``path`` is a regular file that a run can read back and rewrite.

    A result log may also be a pipe or a device (``/dev/stderr``): it is then
    only written, never read, cut or compacted.
    """
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def drop_torn_tail(path: str) -> bool:
    """Cut a last line that a kill left without its newline; ``True`` if one was cut."""
    if not is_regular_log(path):
        return False
    try:
        with Path(path).open("r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return False
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return False
            keep = _last_newline_end(fh, size)
            fh.truncate(keep)
            return True
    except FileNotFoundError:
        return False


def _last_newline_end(fh: IO[bytes], size: int) -> int:
    block = 64 * 1024
    end = size
    while end > 0:
        start = max(0, end - block)
        fh.seek(start)
        chunk = fh.read(end - start)
        pos = chunk.rfind(b"\n")
        if pos >= 0:
            return start + pos + 1
        end = start
    return 0


def iter_records(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, record)`` for every record of a result log; a torn last line is skipped.

    Raises:
        ResultLogError: a line other than the last is not a JSON object.
    """
    try:
        fh = Path(path).open("rb")  # noqa: SIM115 - closed below, generator-safe
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ResultLogError(f"cannot read result log {path}: {exc.strerror}") from exc
    with fh:
        pending: tuple[int, bytes] | None = None
        for number, raw in enumerate(fh, start=1):
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
