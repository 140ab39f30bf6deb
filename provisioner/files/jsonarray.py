"""Stream one top-level JSON array element by element, knowing each element's line.

Memory stays flat however long the array: bytes are read in chunks and decoded
as UTF-8 incrementally (a bad byte is reported at its line), each element is
decoded with ``json.JSONDecoder.raw_decode``, and consumed text is dropped.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import IO

from provisioner.errors import SourceError
from provisioner.files.jsonlimits import DEPTH_REASON

CHUNK_BYTES = 64 * 1024
# Twice the API's 32 MB body limit: a bigger element is a missing quote or bracket.
MAX_ELEMENT_CHARS = 64 * 1024 * 1024

_WHITESPACE = re.compile(r"[ \t\n\r]*")
# A decode this close to the end of the buffer may be cut short: read on first.
_LOOKAHEAD = 16


class ArrayReader:
    """Streams one top-level JSON array: ``(line, element, text)`` per element.

    ``text`` is the element as written. Bytes are read in chunks and decoded
    (UTF-8, with or without a byte order mark); each element is decoded with
    ``raw_decode``; ``_line`` is the line number at ``_pos``, kept by counting
    newlines.

    Raises:
        SourceError: the file is not UTF-8, not an array, or not JSON, or an
            element nests so deep that the decoder gives up.
    """

    def __init__(self, stream: IO[bytes], source: str) -> None:
        self._stream = stream
        self._source = source
        self._buf = ""
        self._pos = 0
        self._line = 1
        self._is_eof = False
        self._utf8 = codecs.getincrementaldecoder("utf-8-sig")()
        self._decoder = json.JSONDecoder()

    def __iter__(self) -> Iterator[tuple[int, object, str]]:
        if self._peek() != "[":
            raise self._error("expected a JSON array of specs at the top level")
        self._pos += 1
        if self._peek() == "]":
            self._pos += 1
        else:
            while True:
                self._peek()
                line = self._line
                value, text = self._value()
                yield line, value, text
                if self._take(",]") == "]":
                    break
        if self._peek():
            raise self._error("unexpected data after the top-level array")

    def _error(self, reason: str, pos: int | None = None) -> SourceError:
        line = self._line
        if pos is not None:
            line += self._buf.count("\n", self._pos, pos)
        return SourceError(reason, source=self._source, line=line)

    def _fill(self) -> bool:
        """Read more text, dropping what was consumed; ``False`` at end of file."""
        if self._is_eof:
            return False
        pending = len(self._buf) - self._pos
        if pending > MAX_ELEMENT_CHARS:
            raise self._error(
                f"an element over {MAX_ELEMENT_CHARS:,} characters: a missing quote or bracket?"
            )
        # Read at least as much as is pending, so re-decoding a long element is amortised.
        chunk = self._stream.read(max(CHUNK_BYTES, pending))
        try:
            text = self._utf8.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            # The decoder holds back no newline: count those before the bad byte.
            line = self._line + self._buf.count("\n", self._pos)
            line += exc.object[: exc.start].count(b"\n")
            reason = f"not valid UTF-8: {exc.reason}"
            raise SourceError(reason, source=self._source, line=line) from exc
        if not chunk:
            self._is_eof = True
            return False
        self._buf = self._buf[self._pos :] + text
        self._pos = 0
        return True

    def _peek(self) -> str:
        """Skip whitespace; return the next character, or ``""`` at end of file."""
        while True:
            end = _WHITESPACE.match(self._buf, self._pos).end()  # type: ignore[union-attr]
            self._line += self._buf.count("\n", self._pos, end)
            self._pos = end
            if end < len(self._buf):
                return self._buf[end]
            if not self._fill():
                return ""

    def _take(self, expected: str) -> str:
        char = self._peek()
        if not char or char not in expected:
            found = repr(char) if char else "end of file"
            wanted = " or ".join(repr(c) for c in expected)
            raise self._error(f"invalid JSON: expected {wanted}, found {found}")
        self._pos += 1
        return char

    def _value(self) -> tuple[object, str]:
        """Decode the element at ``_pos``, reading on while it may be cut short."""
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if _may_be_cut(exc, len(self._buf)) and self._fill():
                    continue
                raise self._error(f"invalid JSON: {exc.msg}", exc.pos) from exc
            except ValueError as exc:  # an integer too long for int()
                reason = str(exc).split(":", 1)[0]
                raise self._error(f"invalid JSON: {reason}") from exc
            except RecursionError as exc:
                raise self._error(DEPTH_REASON) from exc
            if len(self._buf) - end < _LOOKAHEAD and self._fill():
                continue
            text = self._buf[self._pos : end]
            self._line += text.count("\n")
            self._pos = end
            return value, text


def _may_be_cut(exc: json.JSONDecodeError, size: int) -> bool:
    """Whether more text could turn this decode error into a value."""
    return exc.msg.startswith("Unterminated string") or size - exc.pos < _LOOKAHEAD
