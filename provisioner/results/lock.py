"""One run per result log: an exclusive OS lock held for the run's whole life.

The lock is ``flock`` on ``<log>.lock`` beside the result log (the log itself is
replaced when it is compacted, so it cannot carry the lock). The kernel drops the
lock when the process dies, however it dies: a ``kill -9`` never leaves a stale
lock behind. The holder writes who it is (PID, host, start time, command) into
the lock file, so a second run can say whom it is waiting for, as Terraform's
state lock does. The file stays after the run (removing it would race with a
run that has just opened it); an unlocked lock file means nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson

from provisioner.errors import LockedError, ResultLogError

LOCK_SUFFIX = ".lock"
_HOLDER_MAX_BYTES = 4096


def lock_path(results_path: str) -> str:
    """The lock file that guards ``results_path``."""
    return results_path + LOCK_SUFFIX


class LogLock:
    """An exclusive, non-blocking lock on a result log.

    Args:
        results_path: the result log to guard.
        command: what this process is doing, shown to a second run (no secrets).
        clock: the current UTC time (tests inject one).
    """

    def __init__(
        self,
        results_path: str,
        *,
        command: str = "provisioner run",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = lock_path(results_path)
        self._results_path = results_path
        self._command = command
        self._clock = clock
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once or fail.

        Raises:
            LockedError: another live process holds it (the message names it).
            ResultLogError: the lock file cannot be created.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ResultLogError(
                f"cannot create lock file {self.path}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(self._results_path, holder) from None
        self._fd = fd
        self._write_holder(fd)

    def release(self) -> None:
        """Drop the lock (the kernel does the same if the process dies first)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    def __enter__(self) -> LogLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _write_holder(self, fd: int) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self._clock().isoformat(timespec="seconds"),
            "command": self._command,
        }
        # Best effort: the lock is held whether or not the note is written.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, orjson.dumps(holder) + b"\n", 0)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, _HOLDER_MAX_BYTES, 0)
        holder = orjson.loads(raw) if raw.strip() else {}
    except (OSError, orjson.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


__all__ = ["LOCK_SUFFIX", "LogLock", "lock_path"]
