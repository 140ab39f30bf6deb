"""CSV job files: one spec per row, made by the template beside the file.

``teams.csv`` is read with ``teams.template.yaml`` (or ``.template.yml``) from
the same folder, so every command that takes job files reads a CSV the same
way, with no extra flag. The first non-empty row is the header; each later row
is rendered through the template (:mod:`provisioner.files.template`).

Rows are streamed (memory stays flat however many there are), parsed by the
standard ``csv`` module (RFC 4180: quoted fields may hold commas, quotes and
newlines; ``strict``, so a stray quote is an error, not a guess), from UTF-8
with or without a byte order mark and with LF or CRLF line ends. A row is at
its first physical line. Empty lines and rows of only empty cells are skipped;
columns the template does not name are ignored, whatever they hold.

Errors that belong to the whole file stop reading: no template, a template
naming a column the header lacks (at the template's line), a column name
the template uses given twice in the header, bytes that are not UTF-8. Errors
of one row are that spec's, named by column: a row with fewer cells than the
header, a value past the last column, malformed quoting, a failed conversion.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from provisioner.errors import SourceError, SpecError
from provisioner.files.template import Template, read_template

TEMPLATE_SUFFIXES = (".template.yaml", ".template.yml")
# A row line longer than this is no spreadsheet export (a field is at most 128 KiB to csv).
MAX_LINE_BYTES = 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_LETTERS = 26


@dataclass(frozen=True, slots=True)
class CsvEntry:
    """One row's spec: its first line, body, errors, and the column of each templated field.

    ``columns`` maps a dotted field to its columns, e.g. ``{"name": "B (team)"}``
    (one mapping, shared by every row of a file: read it, do not change it).
    """

    line: int
    index: int
    body: object
    errors: tuple[SpecError, ...]
    columns: dict[str, str]


def template_path(source: str) -> str:
    """The template of the CSV file ``source``: the first of its ``.template.*`` that exists.

    Raises:
        SourceError: neither exists.
    """
    stem = source[: -len(".csv")] if source.lower().endswith(".csv") else source
    candidates = [stem + suffix for suffix in TEMPLATE_SUFFIXES]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    reason = f"no template: a CSV job file is read with {candidates[0]} beside it"
    raise SourceError(reason, source=source)


def read_csv(stream: IO[bytes], source: str) -> Iterator[CsvEntry]:
    """Every row of a CSV job file as a spec body, streamed.

    Raises:
        SourceError: see the module's docstring.
    """
    template = read_template(template_path(source))
    rows = _rows(stream, source)
    header_line, header = next(rows, (None, None))
    if header_line is None or not isinstance(header, list):
        reason = "expected a header row of column names"
        if isinstance(header, SpecError):
            reason = f"{reason}: {header.reason}"
        raise SourceError(reason, source=source, line=header_line)
    names = [name.strip() for name in header]
    index_of = _header(names, template, source, header_line)
    labels = {name: column_label(i, name) for name, i in index_of.items()}
    # The same for every row: each templated field's columns, as labels.
    columns = {
        name: ", ".join(labels[c] for c in used)
        for name, used in template.fields.items()
    }
    for index, (line, cells) in enumerate(rows):
        if isinstance(cells, SpecError):
            yield CsvEntry(line, index, None, (cells,), {})
            continue
        error = _width_error(cells, names)
        if error is not None:
            yield CsvEntry(line, index, None, (error,), {})
            continue
        rendered = template.render({c: cells[index_of[c]] for c in template.columns})
        yield CsvEntry(line, index, rendered.body, rendered.errors, columns)


def column_label(index: int, name: str = "") -> str:
    """A column as a spreadsheet shows it: ``A``, ..., ``Z``, ``AA``; then its name."""
    letters = ""
    number = index + 1
    while number:
        number, rest = divmod(number - 1, _LETTERS)
        letters = chr(ord("A") + rest) + letters
    return f"{letters} ({name})" if name else letters


def _header(
    names: Sequence[str], template: Template, source: str, line: int
) -> dict[str, int]:
    """Column name -> index; stops if the template uses a missing or repeated name."""
    index_of: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in index_of and name in template.columns:
            first = column_label(index_of[name])
            reason = f"column {name!r} is in the header twice ({first} and {column_label(i)})"
            raise SourceError(reason, source=source, line=line)
        if name:
            index_of.setdefault(name, i)
    template.check_header(index_of, source)
    return index_of


def _width_error(cells: Sequence[str], names: Sequence[str]) -> SpecError | None:
    """A row with fewer cells than the header, or a value past its last column."""
    if len(cells) < len(names):
        missing = column_label(len(cells), names[len(cells)])
        reason = f"the row has {len(cells)} cells, the header {len(names)}: a missing comma or quote?"
        return SpecError(reason, column=missing)
    extra = next((i for i in range(len(names), len(cells)) if cells[i]), None)
    if extra is not None:
        reason = f"a value past the header's last column ({column_label(len(names) - 1)}): a missing quote?"
        return SpecError(reason, column=column_label(extra))
    return None


def _rows(
    stream: IO[bytes], source: str
) -> Iterator[tuple[int, list[str] | SpecError]]:
    """Each non-empty row (or why it cannot be parsed) at its first physical line."""
    reader = csv.reader(_lines(stream, source), strict=True)
    end = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield end + 1, SpecError(f"invalid CSV: {exc}")
            end = reader.line_num
            continue
        start, end = end + 1, reader.line_num
        if any(cells):
            yield start, cells


def _lines(stream: IO[bytes], source: str) -> Iterator[str]:
    """The file's lines as text (ends kept, for the csv module), BOM dropped.

    Raises:
        SourceError: at a line that is not UTF-8 or is over MAX_LINE_BYTES.
    """
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES):
        number += 1
        if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
            reason = f"a line over {MAX_LINE_BYTES:,} bytes: not a CSV row"
            raise SourceError(reason, source=source, line=number)
        try:
            yield (raw.removeprefix(_BOM) if number == 1 else raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"not valid UTF-8: {exc.reason}"
            raise SourceError(reason, source=source, line=number) from exc


__all__ = ["TEMPLATE_SUFFIXES", "CsvEntry", "column_label", "read_csv", "template_path"]
