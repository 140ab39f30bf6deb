"""YAML job files: a list of specs, or ``defaults`` deep-merged into ``environments``.

A file is loaded whole with PyYAML's safe loader (libyaml when available) and
its composed node graph is checked before anything is constructed, so that a
hostile file gets a located error rather than a traceback, a hang or a spec
that silently differs from what it says:

* bytes that are not UTF-8 stop reading at their line (a file that starts
  with a UTF-16 byte order mark is left to libyaml, as YAML allows it);
* a spec nested deeper than :data:`~provisioner.files.jsonlimits.MAX_DEPTH` levels,
  following aliases (an alias to itself is endless), is an error at its line;
* a key given twice in one mapping is an error at the second key's line; a
  merge key (``<<: *base``) that a later key overrides is not a repeat;
* the values the specs hold once aliases and ``defaults`` are expanded are
  counted on the graph, without expanding them: past :data:`MAX_YAML_VALUES`
  in one file, the specs that do not fit are errors (a "billion laughs" file);
* a value the safe loader cannot construct (``!!int abc``, ``2026-02-30``)
  stops reading at its line.

``defaults`` that break a rule stop reading: they belong to every spec.
"""

from __future__ import annotations

import codecs
import contextlib
import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import yaml

from provisioner.errors import SourceError, SpecError
from provisioner.files.jsonlimits import DEPTH_REASON, MAX_DEPTH

YAML_KEYS = ("defaults", "environments")
# About 100,000 specs of 50 values each; far beyond a file anyone writes by hand.
MAX_YAML_VALUES = 5_000_000
VALUES_REASON = f"over {MAX_YAML_VALUES:,} values in this file once aliases and defaults are expanded"

_TAG = "tag:yaml.org,2002:"
_MAP, _SEQ, _NULL, _MERGE = (f"{_TAG}{t}" for t in ("map", "seq", "null", "merge"))
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# What PyYAML's constructors raise on values they cannot read (int("abc"), a 30th of February).
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, OverflowError)
_QUOTED_CHARS = 40

if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class YamlEntry:
    """One spec of a YAML file: its line, its body (merged over defaults), its errors."""

    line: int
    body: object
    errors: tuple[SpecError, ...] = ()


def read_yaml(stream: IO[bytes], source: str) -> list[YamlEntry]:
    """Every entry of a YAML job file, checked, constructed and merged over defaults.

    Raises:
        SourceError: the file is not UTF-8 or not YAML, has an unexpected layout,
            a value that cannot be constructed, or broken defaults.
    """
    empty = "empty YAML file: expected a list of specs"
    with yaml_document(stream.read(), source, empty=empty) as (loader, root):
        nodes, defaults_node = _layout(root, source)
        shapes = _Shapes()
        defaults, defaults_values = _defaults(loader, shapes, defaults_node, source)
        entries = _Entries(loader, shapes, defaults, defaults_values)
        return [entries.read(node) for node in nodes]


@contextlib.contextmanager
def yaml_document(
    data: bytes, source: str, *, empty: str
) -> Iterator[tuple[yaml.SafeLoader, yaml.Node]]:
    """The root node of a one-document YAML file, with the loader that constructs it.

    YAML errors raised in the ``with`` block (a value the loader cannot
    construct) become a located :class:`SourceError`, as do bytes that are
    not UTF-8; ``empty`` is the reason given for a file without a document.
    """
    _check_utf8(data, source)
    loader = _Loader(data)
    try:
        yield loader, _compose(loader, source, empty)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(data, exc, source) from exc
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from exc
    finally:
        loader.dispose()


def check_node(
    node: yaml.Node, source: str, label: str, *, max_values: int = MAX_YAML_VALUES
) -> None:
    """Stop reading if ``node`` (``label`` in messages) nests too deep, holds more
    than ``max_values`` values once aliases are followed, or repeats a key.

    Raises:
        SourceError: at the node's line, or the repeated key's.
    """
    shape, line = _Shapes().of(node), _line(node)
    if shape.depth > MAX_DEPTH:
        raise SourceError(f"{label}: {DEPTH_REASON}", source=source, line=line)
    if shape.values > max_values:
        reason = VALUES_REASON.replace(f"{MAX_YAML_VALUES:,}", f"{max_values:,}")
        raise SourceError(f"{label}: {reason}", source=source, line=line)
    if shape.repeat is not None:
        repeat = shape.repeat.under(label)
        reason = f"{repeat.field}: {repeat.reason}"
        raise SourceError(reason, source=source, line=repeat.line)


class _Loader(_SafeLoader):
    """The safe loader; a value its constructors cannot read is a located YAML error.

    Every value, also those a mapping or list fills in later, is made through
    ``construct_object``: the innermost node that fails is the one reported.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except _UNREADABLE as exc:
            raise _unreadable(node) from exc


def _unreadable(node: yaml.Node) -> yaml.constructor.ConstructorError:
    tag = str(node.tag).replace(_TAG, "!!")
    what = f"this {_kind(node)}"
    if isinstance(node, yaml.ScalarNode):
        text = node.value
        if len(text) > _QUOTED_CHARS:
            text = text[: _QUOTED_CHARS - 3] + "..."
        what = repr(text)
    problem = f"cannot read {what} as {tag}"
    return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


def _kind(node: yaml.Node) -> str:
    """``scalar``, ``sequence`` or ``mapping``."""
    return str(getattr(node, "id", "node"))


def _check_utf8(data: bytes, source: str) -> None:
    if data.startswith(_UTF16_BOMS):
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        reason = f"not valid UTF-8: {exc.reason}"
        raise SourceError(reason, source=source, line=line) from exc


def _reader_error(
    data: bytes, exc: yaml.reader.ReaderError, source: str
) -> SourceError:
    """A character YAML refuses (a control character), at the line it first appears on."""
    text = data.decode("utf-8", "replace")
    at = text.find(chr(exc.character)) if isinstance(exc.character, int) else -1
    line = text.count("\n", 0, at) + 1 if at >= 0 else None
    problem = str(exc).splitlines()[0]
    return SourceError(f"invalid YAML: {problem}", source=source, line=line)


def _yaml_error(exc: yaml.YAMLError, source: str) -> SourceError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    line = mark.line + 1 if mark is not None else None
    return SourceError(f"invalid YAML: {problem}", source=source, line=line)


def _compose(loader: _Loader, source: str, empty: str) -> yaml.Node:
    try:
        root = loader.get_single_node()
    except RecursionError as exc:  # pragma: no cover - only the pure-Python composer recurses; libyaml stops at 1,000 levels
        raise SourceError(DEPTH_REASON, source=source) from exc
    if root is None:
        raise SourceError(empty, source=source)
    return root


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _layout(root: yaml.Node, source: str) -> tuple[list[yaml.Node], yaml.Node | None]:
    """The entry nodes and the defaults node (if any) of a YAML job file."""
    line = _line(root)
    if isinstance(root, yaml.SequenceNode) and root.tag == _SEQ:
        return list(root.value), None
    if not isinstance(root, yaml.MappingNode) or root.tag != _MAP:
        raise SourceError(
            "expected a list of specs or a mapping with 'defaults' and 'environments'",
            source=source,
            line=line,
        )
    nodes = _top_level(root, source)
    defaults = nodes.get("defaults")
    if defaults is not None and defaults.tag == _NULL:
        defaults = None
    if defaults is not None and (
        not isinstance(defaults, yaml.MappingNode) or defaults.tag != _MAP
    ):
        raise SourceError("'defaults' must be a mapping", source=source, line=line)
    entries = nodes.get("environments")
    if not isinstance(entries, yaml.SequenceNode) or entries.tag != _SEQ:
        raise SourceError(
            "'environments' must be a list of specs", source=source, line=line
        )
    return list(entries.value), defaults


def _top_level(root: yaml.MappingNode, source: str) -> dict[str, yaml.Node]:
    """The top-level keys' values, by key; a repeated or unknown key stops reading."""
    nodes: dict[str, yaml.Node] = {}
    lines: dict[str, int] = {}
    for key, value in root.value:
        name = str(key.value) if isinstance(key, yaml.ScalarNode) else f"({_kind(key)})"
        if name in nodes:
            reason = f"{name}: duplicate key, first at line {lines[name]}"
            raise SourceError(reason, source=source, line=_line(key))
        nodes[name], lines[name] = value, _line(key)
    unknown = sorted(k for k in nodes if k not in YAML_KEYS)
    if unknown:
        raise SourceError(
            f"unknown top-level keys: {', '.join(unknown)} (expected 'defaults' and 'environments')",
            source=source,
            line=_line(root),
        )
    return nodes


def _defaults(
    loader: yaml.SafeLoader, shapes: _Shapes, node: yaml.Node | None, source: str
) -> tuple[dict[str, Any], int]:
    """The constructed defaults and how many values they add to each spec."""
    if node is None:
        return {}, 0
    check_node(node, source, "defaults")
    values = shapes.of(node).values
    # A plain mapping node: the safe loader makes a dict of it.
    defaults: dict[str, Any] = loader.construct_document(node)
    return defaults, values


class _Entries:
    """Checks, constructs and merges entries, keeping the file's count of values."""

    def __init__(
        self,
        loader: yaml.SafeLoader,
        shapes: _Shapes,
        defaults: dict[str, Any],
        defaults_values: int,
    ) -> None:
        self._loader = loader
        self._shapes = shapes
        self._defaults = defaults
        self._defaults_values = defaults_values
        self._values = 0

    def read(self, node: yaml.Node) -> YamlEntry:
        line = _line(node)
        shape = self._shapes.of(node)
        if shape.depth > MAX_DEPTH:
            return YamlEntry(line, None, (SpecError(DEPTH_REASON),))
        is_merged = bool(self._defaults) and isinstance(node, yaml.MappingNode)
        values = shape.values + (self._defaults_values if is_merged else 0)
        if self._values + values > MAX_YAML_VALUES:
            return YamlEntry(line, None, (SpecError(VALUES_REASON),))
        self._values += values
        entry = self._loader.construct_document(node)
        body = (
            _merge(self._defaults, entry)
            if is_merged and isinstance(entry, dict)
            else entry
        )
        if shape.repeat is None:
            return YamlEntry(line, body)
        repeat = shape.repeat
        error = SpecError(repeat.reason, field=repeat.field, line=repeat.line)
        return YamlEntry(line, body, (error,))


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


# --- the node graph's shape -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Repeat:
    """A key given twice in one mapping: its path from the entry, and both lines."""

    path: tuple[str, ...]
    line: int
    first_line: int

    @property
    def field(self) -> str:
        return ".".join(self.path)

    @property
    def reason(self) -> str:
        return f"duplicate key, first at line {self.first_line}"

    def under(self, key: str) -> _Repeat:
        """The same repeat, seen from the mapping or list that holds it under ``key``."""
        return _Repeat((key, *self.path), self.line, self.first_line)


@dataclass(frozen=True, slots=True)
class _Shape:
    """A node's nesting depth and value count (aliases followed), capped; its first repeat."""

    depth: int
    values: int
    repeat: _Repeat | None = None


_SCALAR = _Shape(0, 1)
# A node met again while its own children are walked: an alias to itself.
_ENDLESS = _Shape(MAX_DEPTH + 1, MAX_YAML_VALUES + 1)


class _Shapes:
    """Shapes of a node graph, each node's computed once: linear however aliases nest."""

    def __init__(self) -> None:
        self._done: dict[int, _Shape] = {}

    def of(self, root: yaml.Node) -> _Shape:
        """The shape of ``root``, walking (iteratively) what is not known yet."""
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        walking: set[int] = set()
        while stack:
            node, is_walked = stack.pop()
            if isinstance(node, yaml.ScalarNode) or id(node) in self._done:
                continue
            if is_walked:
                walking.discard(id(node))
                self._done[id(node)] = self._combine(node)
            elif id(node) not in walking:
                walking.add(id(node))
                stack.append((node, True))
                stack.extend((child, False) for child in _children(node))
        return self._get(root)

    def _get(self, node: yaml.Node) -> _Shape:
        if isinstance(node, yaml.ScalarNode):
            return _SCALAR
        return self._done.get(id(node), _ENDLESS)

    def _combine(self, node: yaml.Node) -> _Shape:
        shapes = [self._get(child) for child in _children(node)]
        depth = 1 + max((s.depth for s in shapes), default=0)
        values = 1 + sum(s.values for s in shapes)
        if isinstance(node, yaml.MappingNode):
            repeat = _mapping_repeat(node.value, shapes[1::2])
        else:
            repeat = next(
                (s.repeat.under(str(i)) for i, s in enumerate(shapes) if s.repeat),
                None,
            )
        return _Shape(
            min(depth, MAX_DEPTH + 1), min(values, MAX_YAML_VALUES + 1), repeat
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    """The nodes in a mapping (keys and values) or a sequence."""
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value)


def _mapping_repeat(
    pairs: list[tuple[yaml.Node, yaml.Node]], value_shapes: list[_Shape]
) -> _Repeat | None:
    """The first repeated key of a mapping, or the first one within its values."""
    seen: dict[tuple[str, str], int] = {}
    for (key, _), shape in zip(pairs, value_shapes, strict=True):
        text = str(key.value) if isinstance(key, yaml.ScalarNode) else f"({_kind(key)})"
        if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE:
            ident = (str(key.tag), text)
            if ident in seen:
                return _Repeat((text,), _line(key), seen[ident])
            seen[ident] = _line(key)
        if shape.repeat is not None:
            return shape.repeat.under(text)
    return None
