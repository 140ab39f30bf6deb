"""CSV job files: each row filled into the template beside the file, errors located by row and column."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
import pytest

from provisioner.cli.main import main
from provisioner.errors import SourceError
from provisioner.files.sources import JobFiles, scan
from tests.helpers import cli, records, run_cli

pytestmark = pytest.mark.usefixtures("cli_env")

TEMPLATE = """\
# one spec a row
name: "team-{{ team }}"
config:
  type: cloud
  networking:
    type: "{{ networking }}"
metadata:
  team: "{{ team }}"
  owner: "{{ owner }}"
"""
NETWORKING_ERROR = (
    "column C (networking): config.networking.type: "
    "must be one of: unrestricted, limited, allowlist, allowed_hosts"
)


def teams(count: int = 10, *, bad_row: int | None = None) -> str:
    """A CSV of ``count`` teams; the team at data row ``bad_row`` has a misspelt networking type."""
    rows = ["team,owner,networking"]
    for i in range(count):
        networking = "limted" if i == bad_row else "unrestricted"
        rows.append(f"t{i:02d},owner {i},{networking}")
    return "\n".join(rows) + "\n"


def write_pair(
    folder: Path, csv: str | bytes, template: str = TEMPLATE, *, name: str = "teams"
) -> Path:
    """``name.csv`` and its ``name.template.yaml`` in ``folder``; the CSV's path."""
    (folder / f"{name}.template.yaml").write_text(template)
    path = folder / f"{name}.csv"
    path.write_bytes(csv.encode() if isinstance(csv, str) else csv)
    return path


def bodies(path: Path) -> list[tuple[int | None, object]]:
    """Each spec's line and body, valid or not."""
    with JobFiles([str(path)]) as files:
        return [(item.line, getattr(item, "body", None)) for item in files]


def errors(path: Path) -> list[str]:
    with JobFiles([str(path)]) as files:
        return [str(e) for e in scan(files).errors]


def source_error(path: Path) -> SourceError:
    with pytest.raises(SourceError) as caught, JobFiles([str(path)]) as files:
        scan(files)
    return caught.value


# --- end to end ---------------------------------------------------------------


def test_ten_teams_with_one_bad_row_give_one_error_at_its_line_column_and_field(
    tmp_path,
):
    """validate names the file, the bad row's line, its column and the field, once."""
    path = write_pair(tmp_path, teams(bad_row=5))
    result = run_cli("validate", path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{path}:7: {NETWORKING_ERROR}",
        "provisioner: 1 of 10 specs are invalid (1 error)",
    ]
    document = orjson.loads(run_cli("validate", path, "--format", "json").stdout)
    (error,) = document["errors"]
    assert error == {
        "source": str(path),
        "line": 7,
        "column": "C (networking)",
        "field": "config.networking.type",
        "reason": "must be one of: unrestricted, limited, allowlist, allowed_hosts",
    }


def test_run_skip_invalid_creates_the_nine_good_rows_once(make_live_emulator, tmp_path):
    """run --skip-invalid creates the 9 valid rows (exit 2 for the invalid one); a rerun creates nothing more."""
    emulator = make_live_emulator()
    path = write_pair(tmp_path, teams(bad_row=5))
    results = tmp_path / "results.jsonl"
    for _ in range(2):
        code = cli(emulator, "run", path, "--skip-invalid", "--results", results)
        assert code == 2
    counts = emulator.creation_counts()
    assert counts == {f"team-t{i:02d}": 1 for i in range(10) if i != 5}
    first_run = records(results)[:10]
    (invalid,) = [r for r in first_run if r["status"] == "invalid"]
    assert invalid["source"] == f"{path}:7"
    assert invalid["error"]["message"] == NETWORKING_ERROR
    created = [r["source"] for r in first_run if r["status"] == "created"]
    assert created[0] == f"{path}:2"


def test_plan_and_enqueue_read_a_csv_as_run_does(live_emulator, tmp_path, capsys):
    """plan reads the rows like run; enqueue refuses the bad row with the same located error."""
    good = write_pair(tmp_path, teams(3), name="good")
    assert cli(live_emulator, "plan", good, "--format", "json") == 0
    plan = orjson.loads(capsys.readouterr().out)
    assert plan["counts"]["create"] == 3
    bad = write_pair(tmp_path, teams(3, bad_row=1), name="bad")
    assert main(["enqueue", str(bad), "--stream", "never-used"]) == 2
    assert f"{bad}:3: {NETWORKING_ERROR}" in capsys.readouterr().err.splitlines()


# --- reading the file ---------------------------------------------------------


def test_bom_crlf_and_quoted_commas_quotes_and_newlines_are_read_as_written(
    tmp_path,
):
    """A quoted cell keeps commas, doubled quotes and line breaks; a row is at its first line."""
    csv = (
        b"\xef\xbb\xbfteam,owner,networking\r\n"
        b'a,"Lee, Ann ""AL""",unrestricted\r\n'
        b'b,"two\r\nlines",unrestricted\r\n'
        b"c,plain,unrestricted\r\n"
    )
    path = write_pair(tmp_path, csv)
    read = bodies(path)
    assert [line for line, _ in read] == [2, 3, 5]
    owners = [body["metadata"]["owner"] for _, body in read]  # type: ignore[index]
    assert owners == ['Lee, Ann "AL"', "two\r\nlines", "plain"]
    assert errors(path) == []


def test_values_that_look_like_yaml_or_placeholders_stay_plain_strings(tmp_path):
    """Cells are never parsed: quotes, colons, #, {{ }} and true/123 are kept as text."""
    owners = ['"quoted"', "key: value", "# not a comment", "{{ team }}", "true", "123"]
    out = io.StringIO()
    csv.writer(out).writerows(
        [["team", "owner", "networking"]]
        + [[f"t{i}", owner, "unrestricted"] for i, owner in enumerate(owners)]
    )
    path = write_pair(tmp_path, out.getvalue())
    read = [body["metadata"]["owner"] for _, body in bodies(path)]  # type: ignore[index]
    assert read == owners
    assert errors(path) == []


def test_empty_lines_empty_rows_and_unused_columns_are_ignored(tmp_path):
    """Blank lines, rows of empty cells and columns the template does not name change nothing."""
    csv = "team,notes,owner,networking,\n\nx,anything,o,unrestricted,\n,,,,\ny,,o,unrestricted,\n\n"
    path = write_pair(tmp_path, csv)
    assert [line for line, _ in bodies(path)] == [3, 5]
    assert errors(path) == []


def test_a_short_row_or_a_value_past_the_header_is_an_error_naming_the_column(
    tmp_path,
):
    """A row with a cell missing, or one too many, is refused at its line and column."""
    csv = "team,owner,networking\na,o\nb,o,unrestricted,extra\nc,o,unrestricted,\n"
    path = write_pair(tmp_path, csv)
    assert errors(path) == [
        f"{path}:2: column C (networking): the row has 2 cells, the header 3: a missing comma or quote?",
        f"{path}:3: column D: a value past the header's last column (C): a missing quote?",
    ]


def test_a_stray_quote_is_an_error_at_its_row_and_reading_goes_on(tmp_path):
    """Malformed quoting spoils only its own row."""
    path = write_pair(
        tmp_path, 'team,owner,networking\na,"o"x,unrestricted\nb,o,unrestricted\n'
    )
    (error,) = errors(path)
    assert error.startswith(f"{path}:2: invalid CSV: ")
    assert [line for line, _ in bodies(path)] == [2, 3]


def test_a_repeated_name_is_refused_at_the_name_column(tmp_path):
    """Two rows that make one name: the second is a duplicate, in the team column."""
    path = write_pair(
        tmp_path, "team,owner,networking\na,o,unrestricted\na,p,unrestricted\n"
    )
    assert errors(path) == [
        f"{path}:3: column A (team): name: duplicate name, first at {path}:2"
    ]


def test_bytes_that_are_not_utf8_stop_reading_at_their_line(tmp_path):
    """A Latin-1 export is refused at the line of its first bad byte."""
    path = write_pair(
        tmp_path, b"team,owner,networking\na,o,unrestricted\nb,Jos\xe9,unrestricted\n"
    )
    error = source_error(path)
    assert (error.source, error.line) == (str(path), 3)
    assert error.reason.startswith("not valid UTF-8")


def test_an_empty_file_has_no_header(tmp_path):
    """A CSV without a header row is refused; one with only a header holds no specs."""
    assert (
        source_error(write_pair(tmp_path, "\n\n")).reason
        == "expected a header row of column names"
    )
    assert bodies(write_pair(tmp_path, "team,owner,networking\n", name="only")) == []
    broken = source_error(write_pair(tmp_path, '\n"team"x,owner\n', name="broken"))
    assert (broken.line, broken.reason) == (
        2,
        "expected a header row of column names: invalid CSV: ',' expected after '\"'",
    )


# --- the template ---------------------------------------------------------------


def test_a_column_the_header_lacks_is_named_at_the_template_line(tmp_path):
    """The template's placeholder for a missing column stops reading, at the template's line."""
    path = write_pair(tmp_path, "team,networking\na,unrestricted\n")
    error = source_error(path)
    assert str(error) == (
        f"{tmp_path / 'teams.template.yaml'}:9: column 'owner' is not in the header "
        f"of {path} (its columns: 'team', 'networking')"
    )


def test_conversions_make_lists_and_booleans_and_an_empty_cell_leaves_the_field_out(
    tmp_path,
):
    """| list splits on ; or spaces, | bool reads yes/no, and an empty cell gives null."""
    template = """\
name: "{{ team }}"
description: "{{ description | optional }}"
config:
  type: cloud
  networking:
    type: limited
    allowed_hosts: "{{ hosts | list }}"
    allow_package_managers: "{{ managers | bool }}"
"""
    csv = "team,description,hosts,managers\na,,pypi.org; github.com,Yes\nb,B,,\n"
    path = write_pair(tmp_path, csv, template)
    (_, a), (_, b) = bodies(path)
    assert a["description"] is None  # type: ignore[index]
    assert a["config"]["networking"] == {  # type: ignore[index]
        "type": "limited",
        "allowed_hosts": ["pypi.org", "github.com"],
        "allow_package_managers": True,
    }
    assert b["config"]["networking"]["allowed_hosts"] is None  # type: ignore[index]
    assert errors(path) == []


def test_a_cell_that_is_not_a_boolean_is_an_error_in_its_column(tmp_path):
    """| bool of 'maybe' is refused at the row, the column and the field."""
    template = TEMPLATE.replace(
        'type: "{{ networking }}"',
        'type: limited\n    allow_package_managers: "{{ networking | bool }}"',
    )
    path = write_pair(tmp_path, "team,owner,networking\na,o,maybe\n", template)
    assert errors(path) == [
        f"{path}:2: column C (networking): config.networking.allow_package_managers: "
        "expected true or false (or yes/no, 1/0), got 'maybe'"
    ]


def test_without_a_conversion_a_number_or_boolean_stays_a_string(tmp_path):
    """A whole-value placeholder is a string: 'true' is not a boolean to the rules."""
    template = TEMPLATE.replace(
        'type: "{{ networking }}"',
        'type: limited\n    allow_package_managers: "{{ networking }}"',
    )
    path = write_pair(tmp_path, "team,owner,networking\na,o,true\n", template)
    (error,) = errors(path)
    assert "column C (networking): config.networking.allow_package_managers:" in error


@pytest.mark.parametrize(
    ("template", "line", "reason"),
    [
        ("name: {{ team }}\n", 1, "a key that is not a string: quote a value"),
        ('name: "{{ team | upper }}"\n', 1, "unknown conversion 'upper'"),
        ('name: "t-{{ team | bool }}"\n', 1, "a conversion needs the placeholder"),
        ('name: "{{ }}"\n', 1, "a placeholder names a column"),
        ('name: a\nmetadata:\n  "{{ team }}": x\n', 3, "placeholders go in values"),
        ("name: a\nname: b\n", 2, "template.name: duplicate key"),
        ("- name: a\n", 1, "a template is one spec"),
        (
            'name: a\nx: &a ["{{ team }}", "{{ team }}"]\n'
            + "".join(
                f"x{i}: &a{i} [*a{i - 1 if i else ''}, *a{i - 1 if i else ''}]\n"
                for i in range(14)
            ),
            1,
            "template: over 10,000 values in this file once aliases",
        ),
    ],
)
def test_a_broken_template_stops_reading_at_its_line(tmp_path, template, line, reason):
    """Template mistakes are reported in the template, with their line."""
    error = source_error(write_pair(tmp_path, "team\na\n", template))
    assert (error.source, error.line) == (str(tmp_path / "teams.template.yaml"), line)
    assert reason in error.reason


def test_a_csv_without_a_template_or_a_template_as_a_job_file_is_refused(tmp_path):
    """The CSV needs its .template.yaml; the template alone is no job file."""
    lonely = tmp_path / "lonely.csv"
    lonely.write_text("team\na\n")
    result = run_cli("validate", lonely)
    assert result.returncode == 2
    assert (
        f"no template: a CSV job file is read with {tmp_path / 'lonely.template.yaml'}"
        in result.stderr
    )
    path = write_pair(tmp_path, teams(2))
    result = run_cli("validate", tmp_path / "teams.template.yaml")
    assert (
        f"a CSV file's template, not a job file: give its CSV ({path})" in result.stderr
    )


def test_a_template_given_beside_its_csv_is_read_with_it(tmp_path):
    """validate folder/* reads the CSV once, with its template, not the template as a job file."""
    path = write_pair(tmp_path, teams(3))
    result = run_cli("validate", tmp_path / "teams.template.yaml", path)
    assert (result.returncode, result.stdout) == (0, "ok: 3 specs are valid\n")


def test_a_yml_template_is_found_too(tmp_path):
    """teams.template.yml serves as well as .yaml."""
    path = tmp_path / "teams.csv"
    path.write_text(teams(2))
    (tmp_path / "teams.template.yml").write_text(TEMPLATE)
    assert errors(path) == []
    assert len(bodies(path)) == 2


def test_lists_anchors_and_a_literal_brace_pair_in_the_template(tmp_path):
    """Placeholders fill list items and merged (<<) mappings; a {{ with no }} is plain text."""
    template = """\
name: &team "{{ team }}"
description: "uses {{ and }"
config:
  type: cloud
  networking:
    type: limited
    allowed_hosts: ["{{ host }}", pypi.org]
metadata:
  <<: {team: *team}
  host: "{{ host }}.internal"
"""
    path = write_pair(tmp_path, "team,host\na,github.com\n", template)
    ((_, body),) = bodies(path)
    assert body["description"] == "uses {{ and }"  # type: ignore[index]
    assert body["config"]["networking"]["allowed_hosts"] == ["github.com", "pypi.org"]  # type: ignore[index]
    assert body["metadata"] == {"team": "a", "host": "github.com.internal"}  # type: ignore[index]


def test_a_column_the_template_uses_given_twice_in_the_header_stops_reading(tmp_path):
    """Which 'team' would it be? A repeated column is refused when the template names it."""
    unused = write_pair(tmp_path, "team,owner,networking,x,x\na,o,unrestricted,1,2\n")
    assert errors(unused) == []
    used = write_pair(
        tmp_path, "team,owner,networking,team\na,o,unrestricted,b\n", name="twice"
    )
    error = source_error(used)
    assert (error.line, error.reason) == (
        1,
        "column 'team' is in the header twice (A and D)",
    )


def test_a_line_over_the_limit_stops_reading_at_its_line(tmp_path):
    """A 1 MiB line is no spreadsheet row: refused at its line, unread."""
    long_cell = "x" * (1024 * 1024)
    path = write_pair(tmp_path, f"team,owner,networking\na,{long_cell},unrestricted\n")
    error = source_error(path)
    assert (error.line, error.reason) == (
        2,
        "a line over 1,048,576 bytes: not a CSV row",
    )
