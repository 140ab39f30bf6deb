"""The result log: one JSON line per spec, appended, flushed, fsynced at a cadence.

A record is on disk (flushed to the OS) before the next spec is reported, so a
killed run loses at most a torn last line, which the next open drops. The same
file is read back to resume a run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from provisioner.errors import ResultLogError

Status = Literal["created", "exists", "failed", "invalid"]
SUCCESS: frozenset[str] = frozenset({"created", "exists"})
STATUSES: tuple[Status, ...] = ("created", "exists", "failed", "invalid")


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a spec did not succeed: a machine-readable type and a sentence."""

    type: str
    message: str


@dataclass(frozen=True, slots=True)
class Result:
    """The final record of one spec."""

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

    @property
    def duration_ms(self) -> float:
        """Milliseconds from the first attempt to the final answer."""
        return round((self.finished_at - self.started_at).total_seconds() * 1000, 3)

    def to_dict(self) -> dict[str, Any]:
        """The record as written to the log (field order is part of the format)."""
        return {
            "name": self.name,
            "status": self.status,
            "id": self.id,
            "attempts": self.attempts,
            "http_status": self.http_status,
            "error": None
            if self.error is None
            else {"type": self.error.type, "message": self.error.message},
            "source": self.source,
            "started_at": _rfc3339(self.started_at),
            "finished_at": _rfc3339(self.finished_at),
            "duration_ms": self.duration_ms,
            "spec_key": self.spec_key,
            "request_id": self.request_id,
        }


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class ResultSink:
    """Appends records to a JSON Lines file (or stdout) as they finish.

    Every record is written with one ``write`` and flushed at once; ``fsync``
    runs every ``fsync_every`` records or ``fsync_interval_s`` seconds, and on
    close.
    """

    def __init__(
        self,
        stream: IO[bytes],
        *,
        fsync_every: int = 100,
        fsync_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._fsync_every = fsync_every
        self._fsync_interval_s = fsync_interval_s
        self._clock = clock
        self._unsynced = 0
        self._last_sync = clock()
        self._can_sync = _has_fileno(stream)

    @classmethod
    def open(cls, path: str, **options: Any) -> ResultSink:
        """Open ``path`` for appending (``-`` is stdout), dropping a torn last line."""
        if path == "-":
            return cls(sys.stdout.buffer, **options)
        try:
            drop_torn_tail(path)
            stream = Path(path).open("ab")  # noqa: SIM115 - closed by ResultSink.close
        except OSError as exc:
            raise ResultLogError(
                f"cannot open result log {path}: {exc.strerror}"
            ) from exc
        return cls(stream, **options)

    def write(self, result: Result) -> None:
        """Append one record and flush it to the operating system."""
        try:
            self._stream.write(orjson.dumps(result.to_dict()) + b"\n")
            self._stream.flush()
        except OSError as exc:
            raise ResultLogError(
                f"cannot write the result log: {exc.strerror}"
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
        if self._can_sync and self._unsynced:
            with contextlib.suppress(OSError):  # a pipe or tty cannot fsync
                os.fsync(self._stream.fileno())
        self._unsynced = 0
        self._last_sync = self._clock()

    def close(self) -> None:
        """Sync and close (stdout is flushed, not closed)."""
        self.sync()
        if self._stream is not sys.stdout.buffer:
            self._stream.close()


def _has_fileno(stream: IO[bytes]) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):
        return False
    return True


def drop_torn_tail(path: str) -> bool:
    """Cut a last line that a kill left without its newline; ``True`` if one was cut."""
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
    """What an earlier run already settled, by spec name.

    Attributes:
        done: name -> status of every settled spec.
        log_existed: the log was there before this run, so an earlier run of
            this job may have sent requests whose answers it never recorded.
    """

    done: dict[str, str]
    log_existed: bool = False

    def is_done(self, name: str) -> bool:
        """Whether the spec named ``name`` needs no further request."""
        return name in self.done


def prepare_resume(
    path: str, *, input_names: frozenset[str], retry_failed: bool
) -> ResumeState:
    """Read the log, decide what is settled, and compact what will be redone.

    Settled: the last record of a name is ``created`` or ``exists`` (or
    ``failed`` when ``retry_failed`` is off). Records of names in this input that
    will be attempted again are removed from the log (atomically), so that after
    the run every spec has exactly one record.
    """
    settled = set(SUCCESS) if retry_failed else {*SUCCESS, "failed"}
    existed = Path(path).exists()
    last: dict[str, str] = {}
    has_nameless = False
    for _, record in iter_records(path):
        name = record.get("name")
        if isinstance(name, str):
            last[name] = record["status"]
        else:
            has_nameless = True
    done = {n: s for n, s in last.items() if s in settled}
    redo = {n for n in last if n in input_names and n not in done}
    if redo or has_nameless:
        # Nameless records are invalid specs; a run that still finds them invalid
        # writes them again.
        _rewrite(
            path,
            keep=lambda r: isinstance(r.get("name"), str) and r["name"] not in redo,
        )
    return ResumeState(done=done, log_existed=existed)


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
