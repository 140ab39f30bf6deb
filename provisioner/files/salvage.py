"""The salvage file: a JSONL job file of the specs a run did not finish.

Each spec is one line, exactly the body that was (or would have been) sent, a
YAML file's defaults merged in, so its idempotency key is the same as in the
run that salvaged it. Above each spec, a comment line says where it came from
and why it is there::

    # {"source":"jobs/teams.yaml:12","error_type":"http_503"}
    {"name":"team-payments","config":{"type":"cloud"}}

The JSONL reader skips lines starting with ``#``, so ``provisioner run FILE``
retries exactly those specs. No field is added to the body: the API refuses
unknown top-level fields, and every line stays a body any other tool can send.
The file begins with a comment naming the run; a run that salvaged nothing
leaves it empty (zero bytes).

The file is written to a temporary file beside it and renamed over it when the
run ends (:meth:`SalvageFile.commit`), so a reader sees the old file or the
complete new one, never a part; ``-`` writes it to stdout at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import IO, BinaryIO

import orjson

from provisioner.spec import Spec

STDOUT = "-"
#: How the first line of a salvage file begins.
HEADER_PREFIX = b"# provisioner salvage"


class SalvageFile:
    """Specs that did not finish, collected into a temporary file, then published.

    Args:
        path: where the salvage goes; ``-`` for stdout.
        run_id: the run that salvages, named in the file's first line.
    """

    def __init__(self, path: str, *, run_id: str | None = None) -> None:
        self.path = path
        self.count = 0
        self._run_id = run_id
        self._tmp: Path | None = None
        self._out: IO[bytes] = self._open()

    def _open(self) -> IO[bytes]:
        if self.path == STDOUT:
            return tempfile.TemporaryFile()
        target = Path(self.path)
        self._tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        return self._tmp.open("wb")

    def write(self, spec: Spec, *, error_type: str) -> None:
        """Add ``spec``, after a comment with its source and ``error_type``."""
        if self.count == 0:
            self._out.write(self._header())
        note = orjson.dumps({"source": spec.location, "error_type": error_type})
        self._out.write(b"# " + note + b"\n" + orjson.dumps(spec.body) + b"\n")
        self.count += 1

    def _header(self) -> bytes:
        run = f" of run {self._run_id}" if self._run_id else ""
        retry = "-" if self.path == STDOUT else self.path
        return (
            HEADER_PREFIX
            + f"{run}: the specs that did not finish, each after its source and "
            f"error type; retry them with: provisioner run {retry}\n".encode()
        )

    def commit(self) -> None:
        """Publish what was written: rename it over ``path``, or copy it to stdout.

        Raises:
            OSError: the file could not be written or renamed (the old one stays).
        """
        out = self._out
        try:
            out.flush()
            if self._tmp is None:
                out.seek(0)
                _copy_to_stdout(out)
                return
            os.fsync(out.fileno())
            out.close()
            self._tmp.replace(self.path)
            self._tmp = None
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop what was written; ``path`` is left as it was."""
        self._out.close()
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            self._tmp = None


def _copy_to_stdout(source: IO[bytes]) -> None:
    stdout: BinaryIO = sys.stdout.buffer
    shutil.copyfileobj(source, stdout)
    stdout.flush()


def is_salvage(path: str) -> bool:
    """Whether ``path`` is a salvage file (or empty), so a run may replace it.

    ``provisioner run retry.jsonl --salvage retry.jsonl`` salvages in place; any
    other job file is never overwritten. Only a regular file is read (a pipe
    would lose what is read from it).
    """
    try:
        with Path(path).open("rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                return False
            head = stream.read(len(HEADER_PREFIX))
    except OSError:
        return False
    return head in (b"", HEADER_PREFIX)


__all__ = ["HEADER_PREFIX", "STDOUT", "SalvageFile", "is_salvage"]
