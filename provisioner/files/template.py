"""Spec templates for CSV job files: one spec in YAML, with ``{{ column }}`` placeholders.

A template is read with the YAML job files' safe loader and checks (depth,
repeated keys, alias expansion), then compiled once. Per row, placeholders in
string *values* are replaced by that row's cell of the column they name.
Substitution works on the parsed template, never on its text: a cell becomes
(part of) a string as it is, so quotes, colons, ``#``, newlines and ``{{`` in a
cell need no escaping and are never read as YAML or as another placeholder.
Nothing is evaluated: a placeholder is a column name and at most one
conversion from :data:`CONVERSIONS`:

* none: the cell, as a string (also ``123`` or ``true``: the spec's types are strict);
* ``bool``: ``true``/``false``, ``yes``/``no``, ``1``/``0`` (any case) as a boolean;
* ``list``: items separated by semicolons or whitespace, as a list of strings;
* ``optional``: the cell, as a string.

With any conversion an empty (or blank) cell is ``null``, which the rules read
as an optional field left out.

A conversion needs the placeholder to be the whole value. Keys are not
substituted (a placeholder in a key is an error).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from provisioner.errors import SourceError, SpecError
from provisioner.files.yamlfile import check_node, yaml_document

CONVERSIONS = ("bool", "list", "optional")
# Values in a template once aliases are expanded: it is rendered once a row, and the
# largest valid spec holds under 2,000 (256 hosts, 6 x 200 packages, 16 metadata).
MAX_TEMPLATE_VALUES = 10_000
PLACEHOLDER = re.compile(r"\{\{(?P<inner>.*?)\}\}", re.S)

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = (f"{_TAG}{t}" for t in ("str", "map", "seq"))
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})
_ITEM_SEPARATORS = re.compile(r"[;\s]+")
_IMMUTABLE = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class Placeholder:
    """``{{ column | conversion }}`` at ``line`` of the template, in the dotted ``field``."""

    column: str
    conversion: str
    line: int
    field: str


@dataclass(frozen=True, slots=True)
class _Text:
    """A string value with placeholders among literal text."""

    parts: tuple[str | Placeholder, ...]


@dataclass(frozen=True, slots=True)
class Rendered:
    """One row's spec body, and the errors of its conversions."""

    body: object
    errors: tuple[SpecError, ...]


class Template:
    """A compiled template: call :meth:`render` with each row's cells, by column name.

    Attributes:
        source: the template's path.
        columns: the columns it names, each once, in order of appearance.
        fields: dotted field (``config.networking.type``) -> the columns whose
            cells make its value; the same for every row.
    """

    def __init__(self, tree: object, placeholders: list[Placeholder], source: str):
        self._tree = tree
        self._placeholders = tuple(placeholders)
        self.source = source
        self.columns = tuple(dict.fromkeys(p.column for p in placeholders))
        fields: dict[str, list[str]] = {}
        for placeholder in placeholders:
            fields.setdefault(placeholder.field, []).append(placeholder.column)
        self.fields = {k: tuple(dict.fromkeys(v)) for k, v in fields.items()}

    def check_header(self, header: Mapping[str, int], csv_source: str) -> None:
        """Stop if the template names a column that the CSV header lacks.

        Raises:
            SourceError: at the template line of the first such placeholder.
        """
        for placeholder in self._placeholders:
            if placeholder.column not in header:
                known = ", ".join(repr(name) for name in header) or "none"
                reason = (
                    f"column {placeholder.column!r} is not in the header of "
                    f"{csv_source} (its columns: {known})"
                )
                raise SourceError(reason, source=self.source, line=placeholder.line)

    def render(self, row: Mapping[str, str]) -> Rendered:
        """The spec body for one row; ``row`` holds a cell for every column in :attr:`columns`."""
        errors: list[SpecError] = []
        body = _fill(self._tree, row, errors)
        return Rendered(body, tuple(errors))


def read_template(path: str) -> Template:
    """Read and compile the template at ``path``.

    Raises:
        SourceError: it cannot be read, is not YAML, is not one mapping, breaks
            a YAML job file rule, or holds a malformed placeholder.
    """
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        reason = f"cannot read the template: {exc.strerror or exc}"
        raise SourceError(reason, source=path) from exc
    with yaml_document(data, path, empty="empty template: expected one spec") as (
        loader,
        root,
    ):
        if not isinstance(root, yaml.MappingNode) or root.tag != _MAP:
            reason = "a template is one spec: a mapping with name, config, ..."
            raise SourceError(reason, source=path, line=_line(root))
        check_node(root, path, "template", max_values=MAX_TEMPLATE_VALUES)
        placeholders: list[Placeholder] = []
        tree = _Compiler(loader, path, placeholders).compile(root, ())
    return Template(tree, placeholders, path)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Compiler:
    """Turns the template's nodes into plain values, :class:`_Text` and :class:`Placeholder`."""

    def __init__(
        self, loader: yaml.SafeLoader, source: str, found: list[Placeholder]
    ) -> None:
        self._loader = loader
        self._source = source
        self._found = found

    def compile(self, node: yaml.Node, path: tuple[str, ...]) -> object:
        """The node at the dotted ``path``, compiled (an alias's node once per use)."""
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR and "{{" in node.value:
                return self._text(node.value, _line(node), ".".join(path))
            return self._loader.construct_object(node)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            return [self.compile(c, (*path, str(i))) for i, c in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            return self._mapping(node, path)
        return self._loader.construct_object(node, deep=True)

    def _mapping(
        self, node: yaml.MappingNode, path: tuple[str, ...]
    ) -> dict[object, object]:
        self._loader.flatten_mapping(node)  # merge keys (<<: *base), as the loader does
        compiled: dict[object, object] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                # `name: {{ team }}` is YAML for a mapping inside a mapping.
                reason = 'a key that is not a string: quote a value that starts with {{ ("{{ team }}")'
                raise SourceError(reason, source=self._source, line=_line(key_node))
            key = self._loader.construct_object(key_node)
            if isinstance(key, str) and PLACEHOLDER.search(key):
                reason = f"{key}: placeholders go in values, not in keys"
                raise SourceError(reason, source=self._source, line=_line(key_node))
            compiled[key] = self.compile(value_node, (*path, str(key)))
        return compiled

    def _text(self, value: str, line: int, name: str) -> object:
        parts: list[str | Placeholder] = []
        at = 0
        for match in PLACEHOLDER.finditer(value):
            placeholder = self._placeholder(match, line, name)
            parts.extend([value[at : match.start()], placeholder])
            at = match.end()
        if not parts:  # a {{ that starts no placeholder is text
            return value
        parts = [p for p in [*parts, value[at:]] if p != ""]
        if len(parts) == 1 and isinstance(parts[0], Placeholder):
            return parts[0]
        if any(isinstance(p, Placeholder) and p.conversion for p in parts):
            reason = (
                f"{value!r}: a conversion needs the placeholder to be the whole value"
            )
            raise SourceError(reason, source=self._source, line=line)
        return _Text(tuple(parts))

    def _placeholder(self, match: re.Match[str], line: int, name: str) -> Placeholder:
        column, _, conversion = match.group("inner").partition("|")
        column, conversion = column.strip(), conversion.strip()
        if not column:
            reason = f"{match.group()}: a placeholder names a column"
            raise SourceError(reason, source=self._source, line=line)
        if conversion and conversion not in CONVERSIONS:
            expected = ", ".join(CONVERSIONS)
            reason = f"{match.group()}: unknown conversion {conversion!r} (expected {expected})"
            raise SourceError(reason, source=self._source, line=line)
        placeholder = Placeholder(column, conversion, line, name)
        self._found.append(placeholder)
        return placeholder


def _fill(node: object, row: Mapping[str, str], errors: list[SpecError]) -> object:
    """``node`` with its placeholders replaced from ``row``; conversion errors go to ``errors``."""
    if isinstance(node, dict):
        return {k: _fill(v, row, errors) for k, v in node.items()}
    if isinstance(node, Placeholder):
        return _convert(row[node.column], node, errors)
    if isinstance(node, _Text):
        return "".join(
            row[p.column] if isinstance(p, Placeholder) else p for p in node.parts
        )
    if isinstance(node, list):
        return [_fill(v, row, errors) for v in node]
    return node if isinstance(node, _IMMUTABLE) else copy.deepcopy(node)


def _convert(cell: str, placeholder: Placeholder, errors: list[SpecError]) -> object:
    """The value of one whole-value placeholder."""
    conversion = placeholder.conversion
    if not conversion:
        return cell
    if not cell.strip():
        return None
    if conversion == "bool":
        word = cell.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        reason = f"expected true or false (or yes/no, 1/0), got {cell!r}"
        errors.append(SpecError(reason, field=placeholder.field))
        return cell
    if conversion == "list":
        return [item for item in _ITEM_SEPARATORS.split(cell) if item]
    return cell


__all__ = [
    "CONVERSIONS",
    "PLACEHOLDER",
    "Placeholder",
    "Rendered",
    "Template",
    "read_template",
]
