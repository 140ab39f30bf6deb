"""Job files → located records → :class:`Spec` (ready to send) or :class:`InvalidSpec`.

Formats, chosen by extension:

* ``.jsonl`` / ``.ndjson`` and ``-`` (stdin): one JSON object per line; blank
  lines and lines starting with ``#`` are skipped. A line that is not JSON, or
  is longer than :data:`MAX_LINE_BYTES` (skipped unread), is an
  :class:`InvalidSpec` at that line, and reading goes on.
* ``.json``: one JSON array of bodies, streamed element by element.
* ``.yaml`` / ``.yml``: a list of bodies, or ``{defaults: {...}, environments:
  [...]}``, each entry deep-merged over ``defaults`` (:mod:`provisioner.files.yamlfile`).
* ``.csv``: a header row, then one spec per row, made by the template beside
  the file (``teams.csv`` + ``teams.template.yaml``, :mod:`provisioner.files.csvfile`);
  an error in a templated field names the CSV column its value came from.
* no known extension, on a path that is not a regular file (a FIFO, or the
  ``/dev/fd/63`` of ``provisioner run <(gen-specs)``): JSONL. A regular file
  with another extension is an error.

Stdin and paths that are not regular files are read once and spooled (in
memory, then on disk past a few MB): the run pass replays what the validate
pass read. JSONL, JSON and CSV are read in chunks: memory stays flat however long
the file, apart from the duplicate-name check, which keeps 24 to 32 bytes a
distinct name (:class:`~provisioner.files.names.NameIndex`).

Hostile input is read or reported at its line, never misread: JSON nested too
deep or repeating a key in an object (:mod:`provisioner.files.jsonlimits`) and specs
over the API's body limit are errors at that spec; bytes that are not UTF-8 are
reported at their line in every format.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePath
from tempfile import SpooledTemporaryFile
from typing import IO, BinaryIO, cast

import orjson

from provisioner.errors import SourceError, SpecError
from provisioner.files.csvfile import TEMPLATE_SUFFIXES, read_csv
from provisioner.files.jsonarray import ArrayReader
from provisioner.files.jsonlimits import DEPTH_REASON, check_value, too_deep
from provisioner.files.names import NameIndex
from provisioner.files.yamlfile import read_yaml
from provisioner.spec import MAX_BODY_BYTES, InvalidSpec, Spec, build_spec

STDIN = "-"
SPOOL_MAX_MEMORY_BYTES = 4 * 1024 * 1024
# A JSONL line may hold one body of the API's largest size, with room to spare.
MAX_LINE_BYTES = MAX_BODY_BYTES + 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_LINE_BITS = 40
_LINE_MASK = (1 << _LINE_BITS) - 1


# Not frozen: one is made per line, and a frozen __init__ costs about three times as much.
@dataclass(slots=True)
class _Record:
    """One entry of a job file: a body, and why it could not be read as written.

    ``errors`` without a line are at the record's line. ``canonical`` is the
    body's canonical JSON when the reader already made it. ``columns`` maps
    the fields a CSV row filled in to their columns.
    """

    line: int
    index: int
    body: object
    errors: tuple[SpecError, ...] = ()
    canonical: bytes | None = None
    columns: Mapping[str, str] | None = None


Reader = Callable[[IO[bytes], str], Iterator[_Record]]


class JobFiles:
    """The specs of one or more job files, readable more than once (validate pass, then run pass).

    Args:
        paths: job files in order; ``-`` means stdin (JSONL). A CSV template
            given beside its CSV (``jobs/*``) is left out: it is read with the CSV.
        stdin: the stream ``-`` reads; spooled on first use so a second pass
            sees the same bytes, as are paths that are not regular files.
    """

    def __init__(self, paths: Sequence[str], *, stdin: BinaryIO | None = None) -> None:
        self._paths = tuple(p for p in paths if _csv_of(p) not in paths)
        self._stdin = stdin
        self._spools: dict[str, tuple[SpooledTemporaryFile[bytes], Reader]] = {}

    def __iter__(self) -> Iterator[Spec | InvalidSpec]:
        """Every spec of every file, in order; later uses of a name are invalid.

        Raises:
            SourceError: a file cannot be read at all (missing, unreadable,
                unknown extension, broken YAML, a JSON file that is not an array).
        """
        with NameIndex() as seen:
            for number, path in enumerate(self._paths):
                for record in self._records(path):
                    name = _name_of(record.body)
                    first_at = None
                    if name is not None:
                        here = (number << _LINE_BITS) | record.line
                        first_at = _located(seen.add(name, here), self._paths)
                    yield _judge(record, path, name, first_at)

    def close(self) -> None:
        """Drop the spools of stdin and of pipes."""
        for spool, _ in self._spools.values():
            spool.close()
        self._spools.clear()

    def __enter__(self) -> JobFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _records(self, path: str) -> Iterator[_Record]:
        try:
            opened, reader = self._open(path)
            with opened as stream:
                yield from reader(stream, path)
        except OSError as exc:
            raise SourceError(
                f"cannot read: {exc.strerror or exc}", source=path
            ) from exc

    def _open(
        self, path: str
    ) -> tuple[contextlib.AbstractContextManager[IO[bytes]], Reader]:
        """The path's bytes and reader: a regular file is opened on every pass;
        stdin, a pipe or a FIFO is read once, into a spool each pass replays."""
        if path not in self._spools:
            if path == STDIN:
                if self._stdin is None:
                    raise SourceError("stdin is not available", source=STDIN)
                self._spool(path, self._stdin, _jsonl_records)
            else:
                reader = _reader_for(path)
                stream = open(path, "rb")  # noqa: SIM115 - returned to a with, or closed below
                if stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                    return stream, reader
                with stream:
                    self._spool(path, stream, reader)
        spool, reader = self._spools[path]
        spool.seek(0)
        return contextlib.nullcontext(cast(IO[bytes], spool)), reader

    def _spool(self, path: str, stream: IO[bytes], reader: Reader) -> None:
        with contextlib.ExitStack() as on_error:
            # Kept open across passes (unless the copy fails); close() closes it.
            spool = on_error.enter_context(
                SpooledTemporaryFile(max_size=SPOOL_MAX_MEMORY_BYTES)
            )
            shutil.copyfileobj(stream, spool)
            on_error.pop_all()
        self._spools[path] = (spool, reader)


def _name_of(body: object) -> str | None:
    name = body.get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


def _located(first: int | None, paths: Sequence[str]) -> str | None:
    """``file:line`` of a (file number, line) packed as the duplicate check keeps it."""
    if first is None:
        return None
    return f"{paths[first >> _LINE_BITS]}:{first & _LINE_MASK}"


def _judge(
    record: _Record, source: str, name: str | None, first_at: str | None
) -> Spec | InvalidSpec:
    """Validate one record (its size too, from the bytes its key is made of)."""
    judged = build_spec(
        record.body,
        source=source,
        line=record.line,
        index=record.index,
        canonical=record.canonical or None,
        read_errors=record.errors,
        duplicate_of=first_at if name is not None else None,
    )
    if isinstance(judged, Spec) or not record.columns:
        return judged
    errors = tuple(_in_column(e, record.columns) for e in judged.errors)
    return replace(judged, errors=errors)


def _in_column(error: SpecError, columns: Mapping[str, str]) -> SpecError:
    """The error, naming the column of its field (or of the nearest field above it)."""
    if error.column:
        return error
    path = error.field
    while path:
        if path in columns:
            return error.in_column(columns[path])
        path = path.rpartition(".")[0]
    return error


def _csv_of(path: str) -> str | None:
    """The CSV file whose template ``path`` is, if it is named as a template."""
    if not path.lower().endswith(TEMPLATE_SUFFIXES):
        return None
    return path[: path.lower().rfind(".template.")] + ".csv"


def _reader_for(path: str) -> Reader:
    """The reader for the path's extension; JSONL for a pipe without one."""
    csv_path = _csv_of(path)
    if csv_path is not None:
        reason = f"a CSV file's template, not a job file: give its CSV ({csv_path})"
        raise SourceError(reason, source=path)
    suffix = PurePath(path).suffix.lower()
    reader = _READERS.get(suffix)
    if reader is not None:
        return reader
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            return _jsonl_records  # a pipe, a FIFO: /dev/fd/63 has no extension
    raise SourceError(
        f"unknown file type {suffix or '(no extension)'}: "
        "expected .jsonl, .ndjson, .json, .yaml, .yml or .csv",
        source=path,
    )


# --- JSONL ------------------------------------------------------------------


def _jsonl_records(stream: IO[bytes], source: str) -> Iterator[_Record]:
    """One record per non-blank, non-comment line."""
    index = 0
    for number, raw in _lines(stream):
        if raw is None:
            reason = f"a line over {MAX_LINE_BYTES:,} bytes: skipped (larger than any body the API takes)"
            yield _Record(number, index, None, (SpecError(reason),))
        else:
            text = (raw.removeprefix(_BOM) if number == 1 else raw).strip()
            if not text or text.startswith(b"#"):
                continue
            yield _jsonl_record(number, index, text)
        index += 1


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Each line and its number; ``None`` for a line over MAX_LINE_BYTES, skipped to its end."""
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES):
        number += 1
        if len(raw) < MAX_LINE_BYTES or raw.endswith(b"\n"):
            yield number, raw
            continue
        while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
            pass
        yield number, None


def _jsonl_record(number: int, index: int, text: bytes) -> _Record:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return _Record(number, index, None, (SpecError(_json_line_error(text, exc)),))
    return _checked(number, index, text, value)


def _json_line_error(text: bytes, exc: orjson.JSONDecodeError) -> str:
    """The clearest message for a bad line: the json module's, else orjson's."""
    try:
        value = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError as decode_error:
        return f"invalid JSON: not valid UTF-8 ({decode_error.reason})"
    except json.JSONDecodeError as json_error:
        return f"invalid JSON: {json_error.msg} at column {json_error.colno}"
    except ValueError as int_error:  # an integer too long for int()
        return f"invalid JSON: {str(int_error).split(':', 1)[0]}"
    except RecursionError:
        return DEPTH_REASON
    if too_deep(value):
        return DEPTH_REASON
    # Only orjson refuses it (NaN, a number beyond 64 bits, a lone surrogate).
    return f"invalid JSON: {exc.msg}"


def _checked(line: int, index: int, text: str | bytes, value: object) -> _Record:
    """A decoded entry, with the error if it nests too deep or repeats a key."""
    error, canonical = check_value(text, value)
    return _Record(line, index, value, () if error is None else (error,), canonical)


# --- JSON array, streamed ---------------------------------------------------


def _json_records(stream: IO[bytes], source: str) -> Iterator[_Record]:
    """One record per element of the top-level array."""
    for index, (line, body, text) in enumerate(ArrayReader(stream, source)):
        yield _checked(line, index, text, body)


# --- YAML -------------------------------------------------------------------


def _yaml_records(stream: IO[bytes], source: str) -> Iterator[_Record]:
    """One record per list entry, merged over ``defaults`` in the mapping form."""
    for index, entry in enumerate(read_yaml(stream, source)):
        yield _Record(entry.line, index, entry.body, entry.errors)


# --- CSV ----------------------------------------------------------------------


def _csv_records(stream: IO[bytes], source: str) -> Iterator[_Record]:
    """One record per row, rendered through the file's template."""
    for row in read_csv(stream, source):
        yield _Record(row.line, row.index, row.body, row.errors, columns=row.columns)


_READERS: dict[str, Reader] = {
    ".jsonl": _jsonl_records,
    ".ndjson": _jsonl_records,
    ".json": _json_records,
    ".yaml": _yaml_records,
    ".yml": _yaml_records,
    ".csv": _csv_records,
}


# --- scan -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What one pass over the job files found.

    Attributes:
        total: specs read, valid or not.
        valid: specs without errors.
        errors: every error of every spec, located, in input order.
        found: the names in ``keys_for`` that some spec (valid or not) has;
            only those: a set of every name would cost ~100 bytes a spec.
        keys: name -> spec key of the valid specs named in ``keys_for`` (what
            resume compares).
    """

    total: int
    valid: int
    errors: list[SpecError]
    found: frozenset[str]
    keys: dict[str, str]


def scan(files: JobFiles, *, keys_for: Container[str] = ()) -> ScanReport:
    """Read every spec once and collect the counts and errors.

    ``keys_for``: the names to look for, and whose spec keys to keep (those a
    result log holds; keeping every name or key would cost memory for nothing).

    Raises:
        SourceError: a file cannot be read at all.
    """
    total = valid = 0
    errors: list[SpecError] = []
    found: set[str] = set()
    keys: dict[str, str] = {}
    for item in files:
        total += 1
        if item.name is not None and item.name in keys_for:
            found.add(item.name)
            if isinstance(item, Spec):
                keys[item.name] = item.key
        if isinstance(item, Spec):
            valid += 1
        else:
            errors.extend(item.errors)
    return ScanReport(
        total=total, valid=valid, errors=errors, found=frozenset(found), keys=keys
    )
