"""Job files → located specs: JSONL, JSON, YAML with defaults, stdin, duplicates."""

from __future__ import annotations

import io
import json
import re
import tracemalloc
from pathlib import Path

import orjson
import pytest

from provisioner.errors import SourceError
from provisioner.files import jsonarray, sources
from provisioner.files.sources import JobFiles, ScanReport, scan
from provisioner.spec import HOST_REASON, InvalidSpec, Spec, spec_key
from tests.helpers import Write, jsonl, spec

JOBS = Path(__file__).resolve().parent.parent / "jobs"
MB = 1024 * 1024


def read(*paths: str, stdin: io.BytesIO | None = None) -> list[Spec | InvalidSpec]:
    with JobFiles(paths, stdin=stdin) as files:
        return list(files)


def summary(items: list[Spec | InvalidSpec]) -> list[tuple[str, str | None, list[str]]]:
    """(location, name, errors) per item: what a user sees."""
    return [
        (item.location, item.name, [str(e) for e in getattr(item, "errors", ())])
        for item in items
    ]


# --- JSONL ------------------------------------------------------------------


def test_jsonl_specs_carry_file_line_and_index(write: Write) -> None:
    """Each JSONL spec knows its file, 1-based line and 0-based index; blanks and comments are skipped."""
    text = (
        "# teams\n" + json.dumps(spec("a")) + "\n\n   \n" + json.dumps(spec("b")) + "\n"
    )
    items = read(write("teams.jsonl", text))
    assert [(i.source, i.line, i.index, i.location) for i in items] == [
        ("teams.jsonl", 2, 0, "teams.jsonl:2"),
        ("teams.jsonl", 5, 1, "teams.jsonl:5"),
    ]


def test_a_valid_spec_keeps_its_body_exactly_and_its_key(write: Write) -> None:
    """A valid spec's body is the object as written, with no defaults, and its key is spec_key(body)."""
    body = {"config": {"type": "cloud"}, "name": "a", "description": None}
    (item,) = read(write("a.ndjson", jsonl(body)))
    assert isinstance(item, Spec)
    assert item.body == body
    assert list(item.body) == ["config", "name", "description"]
    assert item.key == spec_key(body)
    assert item.name == "a"


def test_a_bad_json_line_is_an_invalid_spec_and_reading_continues(write: Write) -> None:
    """A line that is not JSON becomes an error at that line; the lines after it are still read."""
    text = json.dumps(spec("a")) + '\n{"name": "b",}\n' + json.dumps(spec("c")) + "\n"
    items = read(write("a.jsonl", text))
    assert summary(items) == [
        ("a.jsonl:1", "a", []),
        (
            "a.jsonl:2",
            None,
            [
                "a.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes at column 14"
            ],
        ),
        ("a.jsonl:3", "c", []),
    ]
    assert [i.index for i in items] == [0, 1, 2]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"name": NaN}', "invalid JSON: "),
        (b'{"name": "\xff"}', "invalid JSON: not valid UTF-8 (invalid start byte)"),
        (b"[1, 2", "invalid JSON: Expecting ',' delimiter at column 6"),
    ],
)
def test_lines_that_only_look_like_json_are_reported(
    write: Write, line: bytes, reason: str
) -> None:
    """NaN, invalid UTF-8 and truncated lines are each an 'invalid JSON' error."""
    (item,) = read(write("a.jsonl", line + b"\n"))
    assert isinstance(item, InvalidSpec)
    assert item.errors[0].reason.startswith(reason)


def test_jsonl_accepts_a_bom_and_crlf_line_ends(write: Write) -> None:
    """A UTF-8 byte order mark and Windows line ends do not break JSONL."""
    data = b"\xef\xbb\xbf" + jsonl(spec("a"), spec("b")).replace("\n", "\r\n").encode()
    items = read(write("a.jsonl", data))
    assert [(i.name, i.line, isinstance(i, Spec)) for i in items] == [
        ("a", 1, True),
        ("b", 2, True),
    ]


def test_a_non_object_entry_is_an_invalid_spec(write: Write) -> None:
    """A JSON value that is not an object is reported as such, with no name."""
    (item,) = read(write("a.jsonl", "[1, 2]\n"))
    assert isinstance(item, InvalidSpec)
    assert item.name is None
    assert [str(e) for e in item.errors] == ["a.jsonl:1: expected an object, got list"]


def test_an_invalid_spec_keeps_its_name_and_every_located_error(write: Write) -> None:
    """An invalid spec with a string name keeps it, and every error says file:line."""
    body = {
        "name": "a",
        "config": {"type": "cloud", "networking": "unrestricted"},
        "x": 1,
    }
    (item,) = read(write("a.jsonl", "\n" + jsonl(body)))
    assert isinstance(item, InvalidSpec)
    assert item.name == "a"
    assert [(e.source, e.line, e.field, e.reason) for e in item.errors] == [
        ("a.jsonl", 2, "config.networking", "expected an object, got string"),
        ("a.jsonl", 2, "x", "unknown field"),
    ]


# --- JSON -------------------------------------------------------------------


def test_json_array_elements_carry_the_line_they_start_on(write: Write) -> None:
    """Each element of a JSON array is located at the line where it starts."""
    text = '[\n  {"name": "a", "config": {"type": "cloud"}},\n\n  {"name": "b",\n   "config": {"type": "cloud"}}, 7,\n  "x"\n]\n'
    items = read(write("a.json", text))
    assert summary(items) == [
        ("a.json:2", "a", []),
        ("a.json:4", "b", []),
        ("a.json:5", None, ["a.json:5: expected an object, got number"]),
        ("a.json:6", None, ["a.json:6: expected an object, got string"]),
    ]
    assert [i.index for i in items] == [0, 1, 2, 3]


@pytest.mark.parametrize("chunk_chars", [1, 2, 3, 7, 64, 4096])
def test_json_array_reads_the_same_whatever_the_chunk_size(
    write: Write, monkeypatch: pytest.MonkeyPatch, chunk_chars: int
) -> None:
    """Elements, numbers and strings cut at any chunk boundary still decode whole."""
    bodies: list[object] = [
        spec(f"env-{i}", metadata={"n": "é" * i, "q": 'say "hi"\\'}) for i in range(30)
    ]
    bodies[3:3] = [12345678901234, 1.5e10, -0.25, True, None, "long string " * 40]
    text = json.dumps(bodies, indent=2)
    path = write("a.json", text)
    monkeypatch.setattr(jsonarray, "CHUNK_BYTES", chunk_chars)
    items = read(path)
    element_start = re.compile(r"^  [^ }\]]")
    lines = text.splitlines()
    starts = [n for n, line in enumerate(lines, 1) if element_start.match(line)]
    assert [i.line for i in items] == starts
    valid = [i.body for i in items if isinstance(i, Spec)]
    assert valid == [b for b in bodies if isinstance(b, dict)]
    assert len(items) == len(bodies)


def test_an_empty_json_array_has_no_specs(write: Write) -> None:
    """A file holding [] is valid and yields nothing."""
    assert read(write("a.json", " [ ]\n")) == []


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('{"name": "a"}', 1, "expected a JSON array of specs at the top level"),
        ("", 1, "expected a JSON array of specs at the top level"),
        (
            '[\n{"name": "a"}\n{"name": "b"}]',
            3,
            "invalid JSON: expected ',' or ']', found '{'",
        ),
        ('[\n{"name": "a"},\n{"name": }]', 3, "invalid JSON: Expecting value"),
        ('[\n{"name": "a"},\n]', 3, "invalid JSON: Expecting value"),
        ('[\n{"name": "a"}', 2, "invalid JSON: expected ',' or ']', found end of file"),
        ('[\n{"name": "a', 2, "invalid JSON: Unterminated string starting at"),
        ('[{"name": "a"}]\n[]', 2, "unexpected data after the top-level array"),
    ],
)
def test_a_broken_json_file_is_a_source_error_with_its_line(
    write: Write, text: str, line: int, reason: str
) -> None:
    """A JSON file that is not an array, or has a syntax error, cannot be read: the error says where."""
    path = write("a.json", text)
    with pytest.raises(SourceError) as caught:
        read(path)
    assert (caught.value.source, caught.value.line) == ("a.json", line)
    assert caught.value.reason.startswith(reason)


def test_a_runaway_json_element_is_a_source_error(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An element that never ends (a lost quote) stops reading instead of filling memory."""
    path = write("a.json", '[\n{"name": "a", "description": "' + "x" * 500)
    monkeypatch.setattr(jsonarray, "CHUNK_BYTES", 16)
    monkeypatch.setattr(jsonarray, "MAX_ELEMENT_CHARS", 100)
    with pytest.raises(SourceError, match="an element over 100 characters") as caught:
        read(path)
    assert caught.value.line == 2


def test_json_file_that_is_not_utf8_is_a_source_error(write: Write) -> None:
    """Bytes that are not UTF-8 in a JSON file stop reading with a SourceError at their line."""
    with pytest.raises(SourceError, match="not valid UTF-8") as caught:
        read(write("a.json", b'[{"name": "a"},\n {"name": "\xff"}]'))
    assert caught.value.line == 2


# --- YAML -------------------------------------------------------------------


def test_yaml_list_entries_carry_their_lines(write: Write) -> None:
    """A YAML list of specs is read in order, each located at its first line."""
    text = "# envs\n- name: a\n  config: {type: cloud}\n\n- name: b\n  config:\n    type: cloud\n- 5\n"
    items = read(write("a.yaml", text))
    assert summary(items) == [
        ("a.yaml:2", "a", []),
        ("a.yaml:5", "b", []),
        ("a.yaml:8", None, ["a.yaml:8: expected an object, got number"]),
    ]


def test_yaml_entries_are_deep_merged_over_defaults(write: Write) -> None:
    """Mappings merge key by key; lists, scalars and null in an entry replace the default."""
    text = """
defaults:
  description: shared
  config:
    type: cloud
    packages: {apt: [git], pip: [ruff]}
  metadata: {team: core, tier: "2"}
environments:
  - name: a
  - name: b
    description: null
    config:
      packages: {apt: [curl]}
    metadata: {tier: "1", owner: bob}
"""
    a, b = read(write("a.yml", text))
    assert isinstance(a, Spec)
    assert isinstance(b, Spec)
    assert a.body == {
        "description": "shared",
        "config": {"type": "cloud", "packages": {"apt": ["git"], "pip": ["ruff"]}},
        "metadata": {"team": "core", "tier": "2"},
        "name": "a",
    }
    assert b.body == {
        "description": None,
        "config": {"type": "cloud", "packages": {"apt": ["curl"], "pip": ["ruff"]}},
        "metadata": {"team": "core", "tier": "1", "owner": "bob"},
        "name": "b",
    }
    assert (a.line, b.line) == (9, 10)
    a.body["config"]["packages"]["pip"].append("x")
    assert b.body["config"]["packages"]["pip"] == ["ruff"]


def test_yaml_null_in_an_entry_drops_a_default_and_the_spec_is_valid(
    write: Write,
) -> None:
    """An entry's ``null`` replaces a default, is sent as written, and means "absent"."""
    text = """
defaults:
  config:
    type: cloud
    networking: {type: limited, allowed_hosts: [pypi.org], allow_package_managers: true}
    packages: {apt: [git], pip: [ruff]}
    setup_script: echo hi
  metadata: {team: core}
  scope: account
environments:
  - name: open
    config:
      networking: {type: unrestricted, allowed_hosts: null, allow_package_managers: null}
      packages: {pip: null}
      setup_script: null
    metadata: null
    scope: null
  - name: bare
    config: {networking: null, packages: null}
"""
    open_, bare = read(write("a.yaml", text))
    assert isinstance(open_, Spec), summary([open_])
    assert isinstance(bare, Spec), summary([bare])
    assert open_.body["config"] == {
        "type": "cloud",
        "networking": {
            "type": "unrestricted",
            "allowed_hosts": None,
            "allow_package_managers": None,
        },
        "packages": {"apt": ["git"], "pip": None},
        "setup_script": None,
    }
    assert (open_.body["metadata"], open_.body["scope"]) == (None, None)
    assert bare.body["config"]["networking"] is None
    assert bare.body["config"]["packages"] is None


def test_yaml_null_defaults_are_no_defaults(write: Write) -> None:
    """``defaults:`` left empty (null) changes nothing in the entries."""
    text = "defaults:\nenvironments:\n  - name: a\n    config: {type: cloud}\n"
    (item,) = read(write("a.yaml", text))
    assert isinstance(item, Spec)
    assert item.body == {"name": "a", "config": {"type": "cloud"}}


def test_yaml_without_defaults_keeps_entries_as_written(write: Write) -> None:
    """The mapping form without defaults reads its environments unchanged."""
    text = "environments:\n  - name: a\n    config: {type: self_hosted}\n"
    (item,) = read(write("a.yaml", text))
    assert isinstance(item, Spec)
    assert item.body == {"name": "a", "config": {"type": "self_hosted"}}
    assert item.line == 2


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("- name: a\n  config: [\n", 3, "invalid YAML: "),
        ("- name: a\n - b\n", 2, "invalid YAML: "),
        ("- !!python/object:os.system {}\n", 1, "invalid YAML: "),
        ("", None, "empty YAML file"),
        ("just text\n", 1, "expected a list of specs or a mapping"),
        (
            "environments: []\nextras: 1\nzz: 2\n",
            1,
            "unknown top-level keys: extras, zz",
        ),
        ("defaults: [1]\nenvironments: []\n", 1, "'defaults' must be a mapping"),
        ("defaults: {}\n", 1, "'environments' must be a list of specs"),
        ("environments: {name: a}\n", 1, "'environments' must be a list of specs"),
        ("--- []\n--- []\n", 2, "invalid YAML: "),
    ],
)
def test_a_broken_yaml_file_is_a_source_error(
    write: Write, text: str, line: int | None, reason: str
) -> None:
    """Bad syntax, unsafe tags and an unexpected layout each stop reading with a located SourceError."""
    path = write("a.yaml", text)
    with pytest.raises(SourceError) as caught:
        read(path)
    assert (caught.value.source, caught.value.line) == ("a.yaml", line)
    assert caught.value.reason.startswith(reason)


# --- stdin, files, passes ---------------------------------------------------


def test_stdin_is_read_as_jsonl_under_the_name_dash() -> None:
    """'-' reads JSONL from stdin, and its specs are located as -:line."""
    stdin = io.BytesIO(jsonl(spec("a"), spec("b")).encode())
    items = read("-", stdin=stdin)
    assert [(i.location, i.name) for i in items] == [("-:1", "a"), ("-:2", "b")]


def test_stdin_is_spooled_so_a_second_pass_sees_the_same_specs() -> None:
    """Stdin is read once and spooled (to disk past a few MB), so both passes agree."""
    bodies = [spec(f"env-{i}", description="d" * 200) for i in range(30_000)]
    stdin = io.BytesIO(jsonl(*bodies).encode())
    assert len(stdin.getvalue()) > sources.SPOOL_MAX_MEMORY_BYTES
    with JobFiles(["-"], stdin=stdin) as files:
        first = [(i.location, i.key) for i in files if isinstance(i, Spec)]
        second = [(i.location, i.key) for i in files if isinstance(i, Spec)]
    assert len(first) == 30_000
    assert first == second


def test_stdin_without_a_stream_is_a_source_error() -> None:
    """Asking for '-' when no stdin is available cannot be read."""
    with pytest.raises(SourceError, match="stdin is not available"):
        read("-")


def test_job_files_read_twice_give_the_same_specs(write: Write) -> None:
    """The validate pass and the run pass see the same specs, keys and errors."""
    a = write("a.jsonl", jsonl(spec("a"), {"name": 1}) + "oops\n")
    b = write("b.json", json.dumps([spec("b"), spec("a")]))
    c = write(
        "c.yaml", "defaults: {config: {type: cloud}}\nenvironments: [{name: c}]\n"
    )
    with JobFiles([a, b, c]) as files:
        first, second = summary(list(files)), summary(list(files))
        keys = [[getattr(i, "key", None) for i in files] for _ in range(2)]
    assert first == second
    assert keys[0] == keys[1]
    assert len(first) == 6


def test_a_name_used_again_is_a_duplicate_even_across_files(write: Write) -> None:
    """Later uses of a name anywhere in the input are invalid and point at the first."""
    a = write("a.jsonl", jsonl(spec("x"), spec("y")))
    b = write("b.yaml", "- name: y\n  config: {type: cloud}\n- name: x\n  bad: 1\n")
    items = read(a, b)
    assert summary(items) == [
        ("a.jsonl:1", "x", []),
        ("a.jsonl:2", "y", []),
        ("b.yaml:1", "y", ["b.yaml:1: name: duplicate name, first at a.jsonl:2"]),
        (
            "b.yaml:3",
            "x",
            [
                "b.yaml:3: config: field required",
                "b.yaml:3: bad: unknown field",
                "b.yaml:3: name: duplicate name, first at a.jsonl:1",
            ],
        ),
    ]


def test_a_name_first_seen_on_an_invalid_spec_still_counts(write: Write) -> None:
    """A duplicate is flagged even when the first spec with that name was invalid."""
    items = read(write("a.jsonl", jsonl({"name": "x"}, spec("x"))))
    first, second = items
    assert isinstance(first, InvalidSpec)
    assert isinstance(second, InvalidSpec)
    assert [str(e) for e in second.errors] == [
        "a.jsonl:2: name: duplicate name, first at a.jsonl:1"
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.jsonl", "cannot read: No such file or directory"),
        (
            "teams.txt",
            "unknown file type .txt: expected .jsonl, .ndjson, .json, .yaml, .yml or .csv",
        ),
        ("teams", "unknown file type (no extension)"),
    ],
)
def test_an_unreadable_file_is_a_source_error(
    write: Write, name: str, reason: str
) -> None:
    """A missing file or an unknown extension stops reading, naming the file."""
    write("teams.txt", "")
    with pytest.raises(SourceError) as caught:
        read(name)
    assert caught.value.source == name
    assert caught.value.reason.startswith(reason)


def test_yaml_values_that_are_not_json_are_named_by_their_type(write: Write) -> None:
    """A YAML date or a 'yes' where a string belongs is reported with its YAML type."""
    text = "- name: a\n  config: {type: cloud}\n  metadata: {since: 2026-01-31, enabled: yes}\n"
    (item,) = read(write("a.yaml", text))
    assert isinstance(item, InvalidSpec)
    assert [(e.field, e.reason) for e in item.errors] == [
        ("metadata.since", "expected a string, got date"),
        ("metadata.enabled", "expected a string, got boolean"),
    ]


def test_a_directory_is_a_source_error(write: Write, tmp_path: Path) -> None:
    """A directory named like a job file cannot be read."""
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(SourceError, match=r"dir\.jsonl: cannot read"):
        read("dir.jsonl")


def test_specs_before_a_broken_file_are_yielded_first(write: Write) -> None:
    """Files are read in order, so the SourceError comes after the earlier files' specs."""
    a = write("a.jsonl", jsonl(spec("a")))
    seen: list[str | None] = []
    with JobFiles([a, "missing.yaml"]) as files, pytest.raises(SourceError):
        seen.extend(item.name for item in files)
    assert seen == ["a"]


def test_location_falls_back_to_the_index_without_a_line() -> None:
    """A spec whose line is unknown is located as file#index."""
    item = Spec(name="a", body={}, key="k", source="q.json", line=None, index=4)
    bad = InvalidSpec(name=None, source="q.json", line=None, index=5, errors=())
    assert (item.location, bad.location) == ("q.json#4", "q.json#5")


# --- scan -------------------------------------------------------------------


def test_scan_counts_specs_and_collects_located_errors_in_order(write: Write) -> None:
    """scan reports totals, every located error in input order, and which asked-for names occur."""
    a = write("a.jsonl", jsonl(spec("a"), {"name": "b", "config": {}}, 5, spec("a")))
    with JobFiles([a]) as files:
        report = scan(files, keys_for={"a", "b", "c"})
    assert isinstance(report, ScanReport)
    assert (report.total, report.valid, report.found) == (4, 1, frozenset({"a", "b"}))
    assert report.keys.keys() == {"a"}
    assert [str(e) for e in report.errors] == [
        "a.jsonl:2: config.type: field required",
        "a.jsonl:3: expected an object, got number",
        "a.jsonl:4: name: duplicate name, first at a.jsonl:1",
    ]


# --- the shipped job files --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "total"),
    [
        ("demo-onboarding.jsonl", 40),
        ("mixed-networking.yaml", 20),
        ("platform-teams.json", 10),
    ],
)
def test_shipped_example_job_files_are_valid(name: str, total: int) -> None:
    """Every example in jobs/ except with-mistakes.jsonl validates cleanly."""
    with JobFiles([str(JOBS / name)]) as files:
        report = scan(files)
    assert [str(e) for e in report.errors] == []
    assert (report.total, report.valid) == (total, total)


def test_shipped_example_files_use_distinct_names() -> None:
    """The demo can run all example files together: names repeat only inside with-mistakes.jsonl."""
    paths = sorted(
        str(p)
        for p in JOBS.iterdir()
        if p.name != "with-mistakes.jsonl" and not p.name.endswith(".template.yaml")
    )
    with JobFiles(paths) as files:
        report = scan(files)
    assert report.errors == []
    with JobFiles([*paths, str(JOBS / "with-mistakes.jsonl")]) as files:
        duplicates = [e for e in scan(files).errors if e.reason.startswith("duplicate")]
    assert len(duplicates) == 1


def test_with_mistakes_reports_each_deliberate_mistake() -> None:
    """with-mistakes.jsonl shows one error of each kind, at its line, and keeps its valid lines."""
    with JobFiles(["jobs/with-mistakes.jsonl"]) as files:
        report = scan(files)
    lines = {(e.line, e.field, e.reason.split(" at column")[0]) for e in report.errors}
    assert lines == {
        (2, "config.networking", "expected an object, got string"),
        (3, "metadata", "at most 16 keys (got 17)"),
        (4, "metadata.notes", "at most 512 characters (got 600)"),
        (5, "config", "field required"),
        (6, "", "invalid JSON: Expecting property name enclosed in double quotes"),
        (7, "name", "duplicate name, first at jobs/with-mistakes.jsonl:1"),
        (8, "config.networking.allowed_hosts.1", HOST_REASON),
        (
            9,
            "config.packages.pip.1",
            "must not contain whitespace or control characters",
        ),
        (10, "metdata", "unknown field"),
    }
    assert (report.total, report.valid) == (11, 2)


# --- memory -----------------------------------------------------------------


def _peak_bytes(path: str) -> int:
    """Peak traced memory while reading every spec of ``path``."""
    tracemalloc.start()
    try:
        with JobFiles([path]) as files:
            for item in files:
                assert isinstance(item, Spec)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
# tracemalloc sees every allocation: 60k specs take ~10 s, twice that under coverage.
@pytest.mark.timeout(180)
@pytest.mark.parametrize("suffix", ["jsonl", "json"])
def test_reading_a_long_file_keeps_memory_flat(write: Write, suffix: str) -> None:
    """A 60k-spec file is streamed: memory holds the names seen, never the file."""
    line = orjson.dumps(spec("{}", description="d" * 250, metadata={"team": "t"}))
    lines = [line.replace(b"{}", b"env-%06d" % i) for i in range(60_000)]
    if suffix == "json":
        data = b"[\n" + b",\n".join(lines) + b"\n]\n"
    else:
        data = b"\n".join(lines) + b"\n"
    path = write(f"big.{suffix}", data)
    del lines, data
    size = Path(path).stat().st_size
    peak = _peak_bytes(path)
    assert size > 18 * MB
    # The duplicate check keeps ~30 bytes a distinct name; nothing else grows.
    assert peak < 12 * MB


@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["jsonl", "json"])
def test_memory_does_not_grow_with_spec_size(write: Write, suffix: str) -> None:
    """2,000 specs of 32 KB each (a 64 MB file) are read within a few MB."""
    script = "echo " + "x" * 32_000
    line = orjson.dumps(spec("{}", config={"type": "cloud", "setup_script": script}))
    lines = [line.replace(b"{}", b"env-%06d" % i, 1) for i in range(2_000)]
    joined = b",\n".join(lines) if suffix == "json" else b"\n".join(lines)
    data = b"[" + joined + b"]" if suffix == "json" else joined
    path = write(f"wide.{suffix}", data)
    del lines, data
    assert Path(path).stat().st_size > 60 * MB
    assert _peak_bytes(path) < 5 * MB
