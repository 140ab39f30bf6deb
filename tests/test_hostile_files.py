"""Job files from untrusted or broken producers: read, or refused with a located error.

Never a traceback, a hang, or a spec silently read as something else. The first
part shows each case; the second throws random and mutated files at every reader.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.errors import SourceError, SpecError
from provisioner.files.jsonlimits import MAX_DEPTH
from provisioner.files.sources import MAX_LINE_BYTES, JobFiles, ScanReport, scan
from provisioner.files.yamlfile import MAX_YAML_VALUES
from provisioner.spec import (
    BIDI_REASON,
    MAX_BODY_BYTES,
    InvalidSpec,
    Spec,
    canonical_json,
    check_size,
    validate_body,
)
from tests.helpers import Write, child_env, jsonl, records, spec

PROVISIONER = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "provisioner"
DEPTH = f"nested deeper than {MAX_DEPTH} levels"


def errors_of(*paths: str) -> list[str]:
    """Every error of every spec, as a user reads them."""
    with JobFiles(paths) as files:
        return [str(e) for e in scan(files).errors]


def source_error(path: str) -> SourceError:
    with pytest.raises(SourceError) as caught:
        errors_of(path)
    return caught.value


def nested(depth: int) -> str:
    """A spec whose metadata holds lists ``depth`` levels deep in all."""
    inner = "[" * (depth - 2) + "]" * (depth - 2)
    return json.dumps(spec("deep", metadata={"x": "@"})).replace('"@"', inner)


# --- nesting ----------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 1_030, 100_000])
def test_jsonl_nested_too_deep_is_an_error_at_its_line(
    write: Write, depth: int
) -> None:
    """A JSONL line nested deeper than the limit (even past every decoder's recursion) is an error at that line; the next line is read."""
    text = jsonl(spec("a")) + nested(depth) + "\n" + jsonl(spec("b"))
    assert errors_of(write("a.jsonl", text)) == [f"a.jsonl:2: {DEPTH}"]


def test_a_deep_line_only_orjson_refuses_is_still_too_deep(write: Write) -> None:
    """A deep line that only orjson refuses (a NaN in it) is reported as too deep, the clearest reason."""
    text = nested(MAX_DEPTH + 1).replace("[]", "[NaN]") + "\n"
    assert errors_of(write("a.jsonl", text)) == [f"a.jsonl:1: {DEPTH}"]


def test_json_element_nested_too_deep_is_an_error_at_its_line(write: Write) -> None:
    """A JSON array element nested deeper than the limit is an error at its line; the next element is read."""
    text = "[\n" + nested(MAX_DEPTH + 1) + ",\n" + json.dumps(spec("b")) + "\n]"
    assert errors_of(write("a.json", text)) == [f"a.json:2: {DEPTH}"]


def test_json_nested_past_the_decoders_recursion_stops_at_its_line(
    write: Write,
) -> None:
    """A JSON element nested 100,000 deep stops reading with a located error, not a RecursionError."""
    text = "[\n" + json.dumps(spec("a")) + ",\n" + nested(100_000) + "\n]"
    error = source_error(write("a.json", text))
    assert (error.line, error.reason) == (3, DEPTH)


def test_yaml_nested_too_deep_is_an_error_at_its_line(write: Write) -> None:
    """A YAML entry nested deeper than the limit, or through an alias to itself, is an error at its line."""
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    text = (
        f"- name: a\n  config: {{type: cloud}}\n  metadata: {{x: {deep}}}\n"
        "- &loop {name: b, config: {type: cloud}, metadata: *loop}\n"
        "- name: c\n  config: {type: cloud}\n"
    )
    assert errors_of(write("a.yaml", text)) == [
        f"a.yaml:1: {DEPTH}",
        f"a.yaml:4: {DEPTH}",
    ]


def test_yaml_nested_past_libyaml_limit_stops_at_its_line(write: Write) -> None:
    """YAML nested 5,000 deep stops reading with a located error."""
    error = source_error(write("a.yaml", "- " + "[" * 5_000 + "]" * 5_000 + "\n"))
    assert error.line == 1


LAUGHS = "".join(
    f"- &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]\n" for n in range(1, 10)
).replace("*l0", "lol")


def test_a_billion_laughs_yaml_file_is_refused_without_expanding_it(
    write: Write,
) -> None:
    """Aliases that would expand to a billion values make the specs past the file's limit errors, at once."""
    text = LAUGHS + "- name: boom\n  config: {type: cloud}\n  metadata: {x: *l9}\n"
    errors = errors_of(write("a.yaml", text))
    over = f"over {MAX_YAML_VALUES:,} values in this file once aliases and defaults are expanded"
    assert errors[-4:] == [f"a.yaml:{n}: {over}" for n in (7, 8, 9, 10)]


def test_yaml_merge_keys_cannot_multiply_a_file_either(write: Write) -> None:
    """Merge keys that merge merges ten times over are counted like aliases, before any is merged."""
    chain = "    - &m0 {" + ", ".join(f"k{i}: v" for i in range(10)) + "}\n"
    chain += "".join(
        f"    - &m{n} {{<<: [{', '.join([f'*m{n - 1}'] * 10)}]}}\n" for n in range(1, 9)
    )
    text = "- name: a\n  config: {type: cloud}\n  metadata:\n    x:\n" + chain
    errors = errors_of(write("a.yaml", text))
    assert errors == [
        f"a.yaml:1: over {MAX_YAML_VALUES:,} values in this file once aliases and defaults are expanded"
    ]


# --- duplicate keys ---------------------------------------------------------


def test_a_key_given_twice_in_jsonl_is_an_error_naming_it(write: Write) -> None:
    """A key repeated in any object of a JSONL line is an error naming its dotted path, not a silent last-one-wins."""
    text = (
        '{"name": "a", "name": "b", "config": {"type": "cloud"}}\n'
        '{"name": "c", "config": {"type": "cloud", "type": "self_hosted"}}\n'
        '{"name": "d", "config": {"type": "cloud", "packages": {"pip": ["x"], "pip": []}}}\n'
        + jsonl(spec("e"))
    )
    assert errors_of(write("a.jsonl", text)) == [
        "a.jsonl:1: name: duplicate key",
        "a.jsonl:2: config.type: duplicate key",
        "a.jsonl:3: config.packages.pip: duplicate key",
    ]


def test_a_key_given_twice_in_a_json_array_is_an_error_naming_it(
    write: Write,
) -> None:
    """A repeated key in a JSON array element is an error at the element's line."""
    text = '[\n{"name": "a", "config": {"type": "cloud"}},\n{"name": "b",\n "config": {"type": "cloud"}, "config": {"type": "cloud"}}]'
    assert errors_of(write("a.json", text)) == ["a.json:3: config: duplicate key"]


@pytest.mark.parametrize(
    ("metadata", "errors"),
    [
        ('{"k\\u003a": "v:"}', []),
        ('{"k": "a:b", "\\u006b": "c"}', ["a.jsonl:1: metadata.k: duplicate key"]),
        ('{"k\\u003A": "1", "k:": "2"}', ["a.jsonl:1: metadata.k:: duplicate key"]),
        # The escaped colon in the value makes up for the colon of the lost key.
        ('{"k": "1", "k": "\\u003a"}', ["a.jsonl:1: metadata.k: duplicate key"]),
    ],
)
def test_escaped_keys_and_colons_are_compared_as_decoded(
    write: Write, metadata: str, errors: list[str]
) -> None:
    """Keys are compared once unescaped, and an escaped colon neither hides nor invents a duplicate."""
    line = '{"name": "a", "config": {"type": "cloud"}, "metadata": ' + metadata + "}\n"
    assert errors_of(write("a.jsonl", line)) == errors


def test_a_key_given_twice_in_yaml_is_an_error_at_the_second_key(
    write: Write,
) -> None:
    """A repeated YAML key is an error at the second key's line, naming its path and the first key's line."""
    text = "- name: a\n  config:\n    type: cloud\n    type: self_hosted\n- name: b\n  config: {type: cloud}\n"
    assert errors_of(write("a.yaml", text)) == [
        "a.yaml:4: config.type: duplicate key, first at line 3"
    ]


def test_yaml_merge_keys_that_a_key_overrides_are_not_duplicates(
    write: Write,
) -> None:
    """``<<: *base`` followed by a key the base also has is YAML's override, not a repeat."""
    text = "- &base {name: a, config: {type: cloud}}\n- <<: *base\n  name: b\n"
    with JobFiles([write("a.yaml", text)]) as files:
        items = list(files)
    assert [(i.name, isinstance(i, Spec)) for i in items] == [("a", True), ("b", True)]


def test_yaml_defaults_too_deep_or_too_big_stop_reading(write: Write) -> None:
    """Defaults nested too deep, or expanding past the file's limit, stop reading at their line: every spec takes them."""
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    text = f"defaults:\n  metadata: {{x: {deep}}}\nenvironments: []\n"
    error = source_error(write("a.yaml", text))
    assert (error.line, error.reason) == (2, f"defaults: {DEPTH}")
    laughs = textwrap.indent(LAUGHS, "      ")
    text = f"defaults:\n  metadata:\n    x:\n{laughs}environments: []\n"
    error = source_error(write("b.yaml", text))
    assert error.line == 2
    assert error.reason.startswith("defaults: over ")


def test_a_utf16_yaml_file_is_still_read(write: Write) -> None:
    """YAML allows UTF-16 with a byte order mark: such a file is read, not refused as not UTF-8."""
    text = "- name: a\n  config: {type: cloud}\n"
    assert errors_of(write("a.yaml", text.encode("utf-16"))) == []


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            "defaults:\n  config: {type: cloud, type: self_hosted}\nenvironments: []\n",
            2,
            "defaults.config.type: duplicate key, first at line 2",
        ),
        (
            "environments: []\ndefaults: {}\nenvironments: []\n",
            3,
            "environments: duplicate key, first at line 1",
        ),
    ],
)
def test_a_key_repeated_in_yaml_defaults_or_layout_stops_reading(
    write: Write, text: str, line: int, reason: str
) -> None:
    """A repeat in defaults (which every spec takes) or at the top level stops reading at its line."""
    error = source_error(write("a.yaml", text))
    assert (error.line, error.reason) == (line, reason)


# --- size -------------------------------------------------------------------


@pytest.mark.slow
def test_a_spec_over_the_api_body_limit_is_refused_at_its_line(write: Write) -> None:
    """A spec whose JSON is larger than the API takes is an error before anything is sent."""
    padding = MAX_BODY_BYTES - len(orjson.dumps(spec("big", description="")))
    fits = spec("fits", description="d" * (padding - 10))
    big = spec("big", description="d" * (padding + 1))
    errors = errors_of(write("a.jsonl", jsonl(fits, big)))
    size = f"{MAX_BODY_BYTES + 1:,}"
    assert errors == [
        f"a.jsonl:2: {size} bytes of JSON: over the API's body limit of {MAX_BODY_BYTES:,} bytes"
    ]


@pytest.mark.slow
def test_an_over_long_jsonl_line_is_skipped_and_reading_continues(
    write: Write,
) -> None:
    """A JSONL line longer than the cap is an error at its line, never read whole; the lines after it are read."""
    long_line = b'{"name": "x", "description": "' + b"d" * MAX_LINE_BYTES + b'"}\n'
    data = jsonl(spec("a")).encode() + long_line + jsonl(spec("b")).encode()
    with JobFiles([write("a.jsonl", data)]) as files:
        items = list(files)
    assert [(i.location, i.name) for i in items] == [
        ("a.jsonl:1", "a"),
        ("a.jsonl:2", None),
        ("a.jsonl:3", "b"),
    ]
    assert isinstance(items[1], InvalidSpec)
    assert items[1].errors[0].reason.startswith(f"a line over {MAX_LINE_BYTES:,} bytes")


# --- UTF-8 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "line"),
    [
        ("a.json", b'[\n{"name": "a"},\n\n{"name": "\xc3"}]', 4),
        ("b.json", b"[" + b'{"name": "a"},\n' * 9_000 + b'{"name": "\xff"}]', 9_001),
        ("c.yaml", b"- name: a\n- name: b\n  description: \xe2\x82\n", 3),
        ("d.yaml", b"\xef\xbb\xbf- name: \xed\xa0\x80\n", 1),
    ],
)
def test_invalid_utf8_is_located_by_line(
    write: Write, name: str, data: bytes, line: int
) -> None:
    """Bytes that are not UTF-8 in a JSON or YAML file stop reading at their line (past the first read chunk too)."""
    error = source_error(write(name, data))
    assert error.line == line
    assert error.reason.startswith("not valid UTF-8: ")


def test_invalid_utf8_in_jsonl_is_an_error_at_its_line(write: Write) -> None:
    """In JSONL a line that is not UTF-8 is an invalid spec at its line, and reading goes on."""
    data = jsonl(spec("a")).encode() + b'{"name": "\xff"}\n' + jsonl(spec("b")).encode()
    assert errors_of(write("a.jsonl", data)) == [
        "a.jsonl:2: invalid JSON: not valid UTF-8 (invalid start byte)"
    ]


# --- names ------------------------------------------------------------------


def test_a_name_with_bidirectional_controls_is_refused_in_a_file(
    write: Write,
) -> None:
    """A name that hides a right-to-left override is refused at its line, with why."""
    text = jsonl(spec("invoice-\u202egpj.exe"), spec("plain"))
    assert errors_of(write("a.jsonl", text)) == [f"a.jsonl:1: name: {BIDI_REASON}"]


# --- pipes and FIFOs --------------------------------------------------------


def _feed(path: Path, data: bytes) -> threading.Thread:
    """Write ``data`` into the FIFO at ``path`` from a thread (opening blocks until a reader comes)."""
    writer = threading.Thread(target=path.write_bytes, args=(data,), daemon=True)
    writer.start()
    return writer


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("specs", jsonl(spec("a"), spec("b"))),
        (
            "specs.yaml",
            "- name: a\n  config: {type: cloud}\n- name: b\n  config: {type: cloud}\n",
        ),
        ("specs.json", json.dumps([spec("a"), spec("b")])),
    ],
)
def test_a_fifo_is_read_once_and_replayed_on_the_second_pass(
    tmp_path: Path, name: str, data: str
) -> None:
    """A named FIFO is read once (JSONL without an extension) and both passes see the same specs."""
    fifo = tmp_path / name
    os.mkfifo(fifo)
    writer = _feed(fifo, data.encode())
    with JobFiles([str(fifo)]) as files:
        passes = [
            [(i.name, i.line, isinstance(i, Spec)) for i in files] for _ in range(2)
        ]
    writer.join(timeout=10)
    assert passes[0] == passes[1]
    assert [(n, ok) for n, _, ok in passes[0]] == [("a", True), ("b", True)]


def test_a_pipe_by_its_dev_fd_path_is_jsonl_and_read_once() -> None:
    """A pipe named /dev/fd/N, as process substitution passes it, is read as JSONL, once, for both passes."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "wb") as pipe:
        pipe.write(jsonl(spec("a")).encode())
    try:
        with JobFiles([f"/dev/fd/{read_fd}"]) as files:
            passes = [[i.location for i in files] for _ in range(2)]
    finally:
        os.close(read_fd)
    assert passes == [[f"/dev/fd/{read_fd}:1"]] * 2


def test_a_regular_file_without_a_known_extension_is_still_refused(
    write: Write,
) -> None:
    """Only pipes fall back to JSONL: a regular file named teams.txt is still an unknown type."""
    error = source_error(write("teams.txt", jsonl(spec("a"))))
    assert error.reason.startswith("unknown file type .txt")


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", "-c", command],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


@pytest.mark.slow
def test_validate_reads_process_substitution(tmp_path: Path) -> None:
    """`provisioner validate <(gen-specs)` reads the pipe as JSONL and locates errors in it."""
    (tmp_path / "specs.jsonl").write_text(jsonl(spec("a"), {"name": "b"}))
    done = _shell(f"{PROVISIONER} validate <(cat specs.jsonl)", tmp_path)
    assert done.returncode == 2
    assert "/dev/fd/" in done.stderr
    assert ":2: config: field required" in done.stderr


@pytest.mark.slow
def test_run_reads_process_substitution_once_for_both_passes(tmp_path: Path) -> None:
    """`provisioner run <(gen-specs)` validates and then runs the same specs instead of waiting on a drained pipe."""
    (tmp_path / "specs.jsonl").write_text(jsonl(spec("a"), spec("b")))
    command = f"{PROVISIONER} run --sandbox --no-progress --results r.jsonl <(cat specs.jsonl)"
    done = _shell(command, tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted((r["name"], r["status"]) for r in records(tmp_path / "r.jsonl")) == [
        ("a", "created"),
        ("b", "created"),
    ]


# --- values the decoders cannot read ----------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-02-30", "cannot read '2026-02-30' as !!timestamp"),
        ("!!int abc", "cannot read 'abc' as !!int"),
        ("!!float abc", "cannot read 'abc' as !!float"),
        ("!!bool abc", "cannot read 'abc' as !!bool"),
        ("!!timestamp abc", "cannot read 'abc' as !!timestamp"),
        ("1" * 5_000, "cannot read '" + "1" * 37 + "...' as !!int"),
    ],
)
def test_a_yaml_value_the_loader_cannot_read_stops_at_its_line(
    write: Write, value: str, reason: str
) -> None:
    """A value PyYAML cannot construct (an impossible date, a bad explicit tag) is a located error, not a traceback."""
    error = source_error(write("a.yaml", f"- name: a\n  metadata: {{x: {value}}}\n"))
    assert (error.line, error.reason) == (2, f"invalid YAML: {reason}")


def test_a_json_integer_too_long_to_read_is_a_located_error(write: Write) -> None:
    """A 5,000-digit number is an error at its line in JSONL, and stops a JSON array at its line."""
    number = "1" * 5_000
    reason = (
        "invalid JSON: Exceeds the limit (4300 digits) for integer string conversion"
    )
    text = jsonl(spec("a")) + '{"name": ' + number + "}\n"
    assert errors_of(write("a.jsonl", text)) == [f"a.jsonl:2: {reason}"]
    error = source_error(write("a.json", '[\n{"name": ' + number + "}]"))
    assert (error.line, error.reason) == (2, reason)


# --- properties: random and mutated files -------------------------------------

VALID: list[dict[str, Any]] = [
    spec("a"),
    {
        "name": "payments-dev",
        "description": "Payments sandbox: é ü 中",
        "config": {
            "type": "cloud",
            "networking": {"type": "limited", "allowed_hosts": ["api.github.com"]},
            "packages": {"apt": ["git"], "pip": ["ruff>=0.5"]},
            "setup_script": "#!/bin/bash\necho ready\n",
        },
        "metadata": {"team": "payments", "a:b": "c:d"},
        "scope": "account",
    },
    {"name": "self", "config": {"type": "self_hosted"}},
]

ENCODERS: dict[str, Callable[[list[Any]], bytes]] = {
    "jsonl": lambda bodies: jsonl(*bodies).encode(),
    "json": lambda bodies: json.dumps(bodies, indent=1).encode(),
    "yaml": lambda bodies: yaml.safe_dump(bodies, allow_unicode=True).encode(),
}

NESTINGS = [(b"[", b"]"), (b'{"k":', b"}"), (b"{a: ", b"}"), (b"- ", b"")]
HOSTILE_TEXT = st.text(
    st.characters(codec="utf-8")
    | st.sampled_from('\u202a\u202e\u2066\u2069\x00\r\n\t\x85\u2028\ufeff:{}[]"\\&*<!')
    | st.characters(categories=["Cs"]),
    max_size=8,
)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw: st.DrawFn, fmt: str) -> bytes:
    """Valid specs in ``fmt``, then up to five random edits of their bytes."""
    bodies = draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=3))
    data = bytearray(ENCODERS[fmt](bodies))
    for _ in range(draw(st.integers(0, 5))):
        at = draw(st.integers(0, len(data)))
        edit = draw(
            st.sampled_from(
                ["flip", "insert", "delete", "cut", "repeat", "nest", "text"]
            )
        )
        if edit == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif edit == "cut":
            del data[at:]
        elif edit == "repeat":
            end = draw(st.integers(at, min(len(data), at + 64)))
            data[end:end] = data[at:end]
        elif edit == "nest":
            depth = draw(st.sampled_from([MAX_DEPTH, MAX_DEPTH + 1, 999, 1_500]))
            opener, closer = draw(st.sampled_from(NESTINGS))
            data[at:at] = (
                opener * depth + b"0" + closer * draw(st.sampled_from([0, depth]))
            )
        else:
            data[at:at] = _encode(draw(HOSTILE_TEXT))
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | HOSTILE_TEXT,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(HOSTILE_TEXT, children, max_size=4)
    ),
    max_leaves=16,
)


def _with_repeats(value: object) -> str:
    """``value`` as JSON, with each object's first key written twice when it has one."""
    if isinstance(value, dict):
        parts = [f"{json.dumps(k)}: {_with_repeats(v)}" for k, v in value.items()]
        if parts:
            parts.append(parts[0])
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_with_repeats(v) for v in value) + "]"
    return json.dumps(value)


@st.composite
def random_file(draw: st.DrawFn, fmt: str) -> bytes:
    """Random JSON values (some with repeated keys), or plain random bytes."""
    kind = draw(st.sampled_from(["values", "repeats", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    values = draw(st.lists(JSON_VALUES, min_size=1, max_size=3))
    if kind == "repeats":
        texts = [_with_repeats(v) for v in values]
        joined = "\n".join(texts) if fmt == "jsonl" else "[" + ",\n".join(texts) + "]"
        return _encode(joined)
    if fmt == "yaml":
        return _encode(yaml.safe_dump(values, allow_unicode=True))
    return ENCODERS[fmt](values) if fmt == "json" else _encode(jsonl(*values))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def _is_on_a_line(line: int | None, data: bytes) -> bool:
    """Whether ``line`` is a line of ``data`` (any line break YAML or JSON counts)."""
    if line is None or line < 1:
        return False
    # libyaml reads a file with a UTF-16 byte order mark as UTF-16: its own line breaks.
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    return line <= len(data.decode("utf-8", "replace").splitlines()) + 1


def _read(name: str) -> tuple[list[Spec | InvalidSpec], ScanReport] | SourceError:
    """Both passes over one file, or the SourceError that stopped them."""
    try:
        with JobFiles([name]) as files:
            return list(files), scan(files)
    except SourceError as exc:
        return exc


def assert_read_or_located(path: Path, data: bytes) -> None:
    """Reading ``data`` gives specs and located errors, or a SourceError naming the file."""
    path.write_bytes(data)
    name = str(path)
    outcome = _read(name)
    if isinstance(outcome, SourceError):
        assert outcome.source == name
        assert outcome.line is None or _is_on_a_line(outcome.line, data)
        return
    items, report = outcome
    assert report.total == len(items)
    for item in items:
        assert item.source == name
        assert _is_on_a_line(item.line, data)
    for error in report.errors:
        assert isinstance(error, SpecError)
        assert error.source == name
        assert _is_on_a_line(error.line, data)
        assert error.reason


PROPERTY = settings(
    max_examples=200,
    deadline=timedelta(seconds=5),
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("fmt", sorted(ENCODERS))
@PROPERTY
@given(data=st.data())
def test_mutated_job_files_are_read_or_refused_with_a_location(
    workdir: Path, fmt: str, data: st.DataObject
) -> None:
    """Valid files with flipped, inserted, deleted, repeated or deeply nested bytes never crash or hang a reader."""
    assert_read_or_located(workdir / f"mutated.{fmt}", data.draw(mutated(fmt)))


@pytest.mark.parametrize("fmt", sorted(ENCODERS))
@PROPERTY
@given(data=st.data())
def test_random_job_files_are_read_or_refused_with_a_location(
    workdir: Path, fmt: str, data: st.DataObject
) -> None:
    """Random values, repeated keys, odd Unicode and random bytes never crash or hang a reader."""
    assert_read_or_located(workdir / f"random.{fmt}", data.draw(random_file(fmt)))


def _deep(value: object, depth: int) -> object:
    """``value`` inside ``depth`` lists and objects, alternately."""
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@PROPERTY
@given(
    body=st.sampled_from(VALID),
    key=st.sampled_from(["name", "description", "config", "metadata", "scope", "x"]),
    value=JSON_VALUES,
    depth=st.sampled_from([0, 1, MAX_DEPTH + 1, 2_000]),
)
def test_validate_body_gives_errors_or_nothing_for_any_value(
    body: dict[str, Any], key: str, value: object, depth: int
) -> None:
    """Any JSON value anywhere in a body gives field-and-reason errors, never an exception; a valid one fits the API."""
    candidate = {**body, key: _deep(value, depth)}
    errors = validate_body(candidate)
    for error in errors:
        assert isinstance(error, SpecError)
        assert isinstance(error.field, str)
        assert error.reason
    if not errors:
        assert check_size(canonical_json(candidate)) == []
