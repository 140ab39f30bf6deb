"""The result log's writer: one JSON line per spec, appended, flushed, fsynced at a cadence.

A record is on disk (flushed to the OS) before the next spec is reported, so a
killed run loses at most a torn last line, which the next open drops
(:func:`drop_torn_tail`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import orjson

from provisioner.errors import ResultLogError
from provisioner.results.record import Result


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
        run_id: the run's id, written in every record that has none.
    """

    def __init__(
        self,
        stream: IO[bytes],
        *,
        scrub: Callable[[str], str] = str,
        fsync_every: int | None = None,
        fsync_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        run_id: str | None = None,
    ) -> None:
        self._stream = stream
        self._scrub = scrub
        self._run_id = run_id
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
        if self._run_id is not None and result.run_id is None:
            result = replace(result, run_id=self._run_id)
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


__all__ = ["ResultSink", "drop_torn_tail", "is_regular_log"]
