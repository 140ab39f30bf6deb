"""Job files → located records → :class:`Spec` (ready to send) or :class:`InvalidSpec`.

Formats, chosen by extension:

* ``.jsonl`` / ``.ndjson`` and ``-`` (stdin): one JSON object per line; blank
  lines and lines starting with ``#`` are skipped. A line that is not JSON is
  an :class:`InvalidSpec` at that line, and reading goes on.
* ``.json``: one JSON array of bodies, streamed element by element.
* ``.yaml`` / ``.yml``: a list of bodies, or ``{defaults: {...}, environments:
  [...]}`` where each entry is deep-merged over ``defaults``: mappings merge
  key by key, anything else in the entry (a list, a scalar, null) replaces the
  default. YAML is loaded whole (PyYAML's safe loader): keep huge inputs in JSONL.

JSONL and JSON are read in chunks: memory stays flat however long the file,
apart from the duplicate-name check, which keeps each distinct name once. Stdin
is spooled (in memory, then on disk past a few MB) so it can be read twice.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from tempfile import SpooledTemporaryFile
from typing import IO, Any, BinaryIO, cast

import orjson
import yaml

from provisioner.errors import SourceError, SpecError
from provisioner.jsonarray import ArrayReader
from provisioner.spec import spec_key, validate_body

STDIN = "-"
SPOOL_MAX_MEMORY_BYTES = 4 * 1024 * 1024
YAML_KEYS = ("defaults", "environments")
_BOM = b"\xef\xbb\xbf"
_LINE_BITS = 40
_LINE_MASK = (1 << _LINE_BITS) - 1


def _location(source: str, line: int | None, index: int) -> str:
    return f"{source}#{index}" if line is None else f"{source}:{line}"


@dataclass(frozen=True, slots=True)
class Spec:
    """A valid spec, ready to send.

    ``body`` is exactly as written in the file (after the YAML defaults merge):
    never re-serialised from the model, never with defaults added.
    """

    name: str
    body: dict[str, Any]
    key: str
    source: str
    line: int | None
    index: int

    @property
    def location(self) -> str:
        """``file:line``, or ``file#index`` when the line is unknown."""
        return _location(self.source, self.line, self.index)


@dataclass(frozen=True, slots=True)
class InvalidSpec:
    """A spec that breaks at least one rule; ``errors`` are located."""

    name: str | None
    source: str
    line: int | None
    index: int
    errors: tuple[SpecError, ...]

    @property
    def location(self) -> str:
        """``file:line``, or ``file#index`` when the line is unknown."""
        return _location(self.source, self.line, self.index)


@dataclass(frozen=True, slots=True)
class _Record:
    """One entry of a job file: a body, or why it could not be parsed."""

    line: int
    index: int
    body: object
    error: str | None = None


Reader = Callable[[IO[bytes], str], Iterator[_Record]]


class JobFiles:
    """The specs of one or more job files, readable more than once (validate pass, then run pass).

    Args:
        paths: job files in order; ``-`` means stdin (JSONL).
        stdin: the stream ``-`` reads; spooled on first use so a second pass
            sees the same bytes.
    """

    def __init__(self, paths: Sequence[str], *, stdin: BinaryIO | None = None) -> None:
        self._paths = tuple(paths)
        self._stdin = stdin
        self._spool: SpooledTemporaryFile[bytes] | None = None

    def __iter__(self) -> Iterator[Spec | InvalidSpec]:
        """Every spec of every file, in order; later uses of a name are invalid.

        Raises:
            SourceError: a file cannot be read at all (missing, unreadable,
                unknown extension, broken YAML, a JSON file that is not an array).
        """
        seen: dict[str, int] = {}
        for number, path in enumerate(self._paths):
            for record in self._records(path):
                name = _name_of(record.body)
                first_at = None
                if name is not None:
                    first_at = _first_at(seen, name, number, record.line, self._paths)
                yield _judge(record, path, name, first_at)

    def close(self) -> None:
        """Drop the stdin spool."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> JobFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _records(self, path: str) -> Iterator[_Record]:
        reader = _reader_for(path)
        try:
            with self._open(path) as stream:
                yield from reader(stream, path)
        except OSError as exc:
            raise SourceError(
                f"cannot read: {exc.strerror or exc}", source=path
            ) from exc
        except UnicodeDecodeError as exc:
            raise SourceError(f"not valid UTF-8: {exc.reason}", source=path) from exc

    def _open(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        if path != STDIN:
            return open(path, "rb")
        if self._spool is None:
            if self._stdin is None:
                raise SourceError("stdin is not available", source=STDIN)
            # Kept open across passes; close() closes it.
            self._spool = SpooledTemporaryFile(max_size=SPOOL_MAX_MEMORY_BYTES)  # noqa: SIM115
            shutil.copyfileobj(self._stdin, self._spool)
        self._spool.seek(0)
        return contextlib.nullcontext(cast(IO[bytes], self._spool))


def _name_of(body: object) -> str | None:
    name = body.get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) else None


def _first_at(
    seen: dict[str, int], name: str, number: int, line: int, paths: Sequence[str]
) -> str | None:
    """Note where ``name`` is; return where it was first seen, if that was earlier."""
    # (file number, line) packed into one int: ~130 bytes a distinct name in all.
    here = (number << _LINE_BITS) | line
    first = seen.setdefault(name, here)
    if first == here:
        return None
    return f"{paths[first >> _LINE_BITS]}:{first & _LINE_MASK}"


def _judge(
    record: _Record, source: str, name: str | None, first_at: str | None
) -> Spec | InvalidSpec:
    """Validate one record and locate its errors."""
    if record.error is not None:
        errors = [SpecError(record.error)]
    else:
        errors = validate_body(record.body)
    if first_at is not None:
        errors.append(SpecError(f"duplicate name, first at {first_at}", field="name"))
    if errors or name is None:
        return InvalidSpec(
            name=name,
            source=source,
            line=record.line,
            index=record.index,
            errors=tuple(e.located(source, record.line) for e in errors),
        )
    body = cast(dict[str, Any], record.body)
    return Spec(name, body, spec_key(body), source, record.line, record.index)


def _reader_for(path: str) -> Reader:
    if path == STDIN:
        return _jsonl_records
    suffix = PurePath(path).suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise SourceError(
            f"unknown file type {suffix or '(no extension)'}: "
            "expected .jsonl, .ndjson, .json, .yaml or .yml",
            source=path,
        )
    return reader


# --- JSONL ------------------------------------------------------------------


def _jsonl_records(stream: IO[bytes], source: str) -> Iterator[_Record]:
    """One record per non-blank, non-comment line."""
    index = 0
    for number, raw in enumerate(stream, start=1):
        text = (raw.removeprefix(_BOM) if number == 1 else raw).strip()
        if not text or text.startswith(b"#"):
            continue
        try:
            record = _Record(number, index, orjson.loads(text))
        except orjson.JSONDecodeError as exc:
            record = _Record(number, index, None, _json_line_error(text, exc))
        yield record
        index += 1


def _json_line_error(text: bytes, exc: orjson.JSONDecodeError) -> str:
    """The clearest message for a bad line: the json module's, else orjson's."""
    try:
        json.loads(text.decode("utf-8"))
    except UnicodeDecodeError as decode_error:
        return f"invalid JSON: not valid UTF-8 ({decode_error.reason})"
    except json.JSONDecodeError as json_error:
        return f"invalid JSON: {json_error.msg} at column {json_error.colno}"
    # Only orjson refuses it (NaN, a number beyond 64 bits, a lone surrogate).
    return f"invalid JSON: {exc.msg}"


# --- JSON array, streamed ---------------------------------------------------


def _json_records(stream: IO[bytes], source: str) -> Iterator[_Record]:
    """One record per element of the top-level array."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig")
    try:
        for index, (line, body) in enumerate(ArrayReader(text, source)):
            yield _Record(line, index, body)
    finally:
        text.detach()


# --- YAML -------------------------------------------------------------------

_YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_records(stream: IO[bytes], source: str) -> Iterator[_Record]:
    """One record per list entry, merged over ``defaults`` in the mapping form."""
    loader = _YamlLoader(stream)
    try:
        root = loader.get_single_node()
        if root is None:
            raise SourceError(
                "empty YAML file: expected a list of specs", source=source
            )
        document = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from exc
    finally:
        loader.dispose()
    entries, defaults = _yaml_layout(root, document, source)
    for index, (node, entry) in enumerate(entries):
        body = (
            _merge(defaults, entry) if defaults and isinstance(entry, dict) else entry
        )
        yield _Record(node.start_mark.line + 1, index, body)


def _yaml_error(exc: yaml.YAMLError, source: str) -> SourceError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    line = mark.line + 1 if mark is not None else None
    return SourceError(f"invalid YAML: {problem}", source=source, line=line)


def _yaml_layout(
    root: yaml.Node, document: object, source: str
) -> tuple[list[tuple[yaml.Node, object]], dict[str, Any]]:
    """The entries (node and value) and the defaults of a YAML job file."""
    line = root.start_mark.line + 1
    if isinstance(root, yaml.SequenceNode) and isinstance(document, list):
        return list(zip(root.value, document, strict=True)), {}
    if not isinstance(root, yaml.MappingNode) or not isinstance(document, dict):
        raise SourceError(
            "expected a list of specs or a mapping with 'defaults' and 'environments'",
            source=source,
            line=line,
        )
    unknown = sorted(str(k) for k in document if k not in YAML_KEYS)
    if unknown:
        raise SourceError(
            f"unknown top-level keys: {', '.join(unknown)} (expected 'defaults' and 'environments')",
            source=source,
            line=line,
        )
    defaults = document.get("defaults")
    if defaults is None:
        defaults = {}
    if not isinstance(defaults, dict):
        raise SourceError("'defaults' must be a mapping", source=source, line=line)
    nodes = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    entries = document.get("environments")
    node = nodes.get("environments")
    if not isinstance(entries, list) or not isinstance(node, yaml.SequenceNode):
        raise SourceError(
            "'environments' must be a list of specs", source=source, line=line
        )
    return list(zip(node.value, entries, strict=True)), defaults


def _merge(defaults: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``entry`` over ``defaults``: mappings merge, anything else replaces."""
    merged = copy.deepcopy(dict(defaults))
    for key, value in entry.items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = _merge(base, value)
        else:
            merged[key] = value
    return merged


_READERS: dict[str, Reader] = {
    ".jsonl": _jsonl_records,
    ".ndjson": _jsonl_records,
    ".json": _json_records,
    ".yaml": _yaml_records,
    ".yml": _yaml_records,
}


# --- scan -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What one pass over the job files found.

    Attributes:
        total: specs read, valid or not.
        valid: specs without errors.
        errors: every error of every spec, located, in input order.
        names: the names of all specs (valid or not) that had a string name.
        keys: name -> spec key of every valid spec (what resume compares).
    """

    total: int
    valid: int
    errors: list[SpecError]
    names: frozenset[str]
    keys: dict[str, str]


def scan(files: JobFiles) -> ScanReport:
    """Read every spec once and collect the counts, errors and names.

    Raises:
        SourceError: a file cannot be read at all.
    """
    total = valid = 0
    errors: list[SpecError] = []
    names: set[str] = set()
    keys: dict[str, str] = {}
    for item in files:
        total += 1
        if item.name is not None:
            names.add(item.name)
        if isinstance(item, Spec):
            valid += 1
            keys[item.name] = item.key
        else:
            errors.extend(item.errors)
    return ScanReport(
        total=total, valid=valid, errors=errors, names=frozenset(names), keys=keys
    )
