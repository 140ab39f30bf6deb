"""The manual's examples are run, so they cannot drift from what the tool does.

The manual is the mkdocs site in docs/ (every page of docs/**/*.md, listed in mkdocs.yml's
nav) and the short README.md that leads to it. A fenced block preceded by
``<!-- check: KIND [ARGS] -->`` is checked by kind: ``commands`` (every provisioner line
parses and names job files that exist), ``teardown`` (the same, and every line tears down
``results.jsonl``), ``validate-output FILE`` (exactly what ``provisioner validate FILE``
prints), ``summary-lines FILE`` and ``summary-json`` (the shape of a real run's summary),
``record`` (the fields of a real result record, in order), ``jsonl``, ``json-file`` and
``yaml-file`` (example job files that validate), ``csv-template`` and ``csv-file`` (a
template and the CSV that follows it, which validate together). Every other ``sh`` block is checked like
``commands`` too. The README stays short and links only to pages that exist.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml

from provisioner.cli.flags import build_parser, check_combinations, resolve_env
from provisioner.emulator.cli import build_parser as emulator_parser
from provisioner.files.sources import JobFiles, scan
from provisioner.observe.progress import ProgressLog

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
#: The README and every page of the manual, each read once.
PAGES: dict[str, str] = {
    path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
    for path in [README, *sorted(DOCS.rglob("*.md"))]
}
README_MAX_LINES = 250
_BLOCK = re.compile(
    r"(?:<!-- check: (?P<check>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)
_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SUBCOMMANDS = tuple(
    next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
)
_COMMANDS = frozenset({*_SUBCOMMANDS, "--help", "--version"})
_INVOCATION = re.compile(
    r"(?:^|[\s/(])provisioner\s+(?:"
    + "|".join(re.escape(c) for c in sorted(_SUBCOMMANDS, key=len, reverse=True))
    + r"|--)"
)
_PROCESS_SUBSTITUTION = re.compile(r"<\((provisioner\s[^)]*)\)")
_SEPARATOR = re.compile(r"&&|\|\||[;&|>]")


@dataclass(frozen=True)
class Block:
    kind: str
    args: tuple[str, ...]
    lang: str
    body: str
    page: str
    line: int

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.kind})"


def blocks() -> list[Block]:
    found = []
    for page, text in PAGES.items():
        for match in _BLOCK.finditer(text):
            words = (match["check"] or "").split()
            kind = words[0] if words else ("commands" if match["lang"] == "sh" else "")
            line = text.count("\n", 0, match.start("body"))
            found.append(
                Block(kind, tuple(words[1:]), match["lang"], match["body"], page, line)
            )
    return found


def of_kind(kind: str) -> list[Block]:
    chosen = [b for b in blocks() if b.kind == kind]
    assert chosen, f"the manual has no {kind} block"
    return chosen


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    return subprocess.run(  # noqa: PLW1510 - outputs are compared
        [sys.executable, "-m", "provisioner", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def provisioner_calls(body: str) -> list[list[str]]:
    """The argv of every provisioner invocation in a shell block (comments dropped).

    A command in ``<(...)`` counts as written alone; ``;``, ``&&``, ``||``, ``&``, ``|``
    and a ``>`` redirection end a command.
    """
    calls = []
    for raw in body.splitlines():
        line = raw.split(" #", 1)[0].replace("$(id -u)", "1000")
        line = _PROCESS_SUBSTITUTION.sub(r"\1", line)
        if not _INVOCATION.search(line):
            continue
        for part in _SEPARATOR.split(line):
            words = shlex.split(part)
            for at, word in enumerate(words[:-1]):
                if word.endswith("provisioner") and words[at + 1] in _COMMANDS:
                    calls.append(words[at + 1 :])
                    break
    return calls


def parse_call(block: Block, argv: list[str]) -> object:
    """Parse one invocation as the CLI would, and check the job files it names exist."""
    if argv[0] == "emulator":
        return emulator_parser().parse_args(argv[1:])
    expanded = [
        p
        for word in argv
        for p in (sorted(glob.glob(str(ROOT / word))) if "*" in word else [word])
    ]
    args = build_parser().parse_args(expanded)
    if args.command == "run":
        check_combinations(args, resolve_env(args, {}))
    for job in getattr(args, "jobs", None) or []:
        if job.startswith("jobs/") or "/jobs/" in job:
            assert (ROOT / job).exists() or Path(job).exists(), (
                f"{block}: {job} does not exist"
            )
    return args


@pytest.mark.parametrize("block", of_kind("commands"), ids=str)
def test_every_command_in_the_manual_parses(block: Block) -> None:
    """Each `provisioner ...` line uses real flags, in combinations the CLI accepts, on job files that exist."""
    for argv in provisioner_calls(block.body):
        if argv[0] in {"--help", "--version"}:
            continue
        parse_call(block, argv)


def test_the_shell_blocks_run_every_command() -> None:
    """Every command of the CLI is shown at work in at least one checked block."""
    shown = {
        argv[0]
        for block in [*of_kind("commands"), *of_kind("teardown")]
        for argv in provisioner_calls(block.body)
    }
    assert set(_SUBCOMMANDS) <= shown, set(_SUBCOMMANDS) - shown


def test_the_teardown_examples_tear_down_the_result_log() -> None:
    """The archive/delete examples parse and act on results.jsonl, both commands shown."""
    commands = set()
    for block in of_kind("teardown"):
        calls = provisioner_calls(block.body)
        assert calls, f"{block}: no provisioner line"
        for argv in calls:
            assert argv[0] in {"archive", "delete"}, (str(block), argv)
            args = parse_call(block, argv)
            assert getattr(args, "from") == "results.jsonl", (str(block), argv)
            commands.add(argv[0])
    assert commands == {"archive", "delete"}


def test_the_validate_example_is_exactly_what_validate_prints() -> None:
    """The manual's `validate` output is the real output, line for line."""
    (block,) = of_kind("validate-output")
    result = cli("validate", *block.args)
    assert result.returncode == 2
    assert result.stderr == block.body


@pytest.fixture(scope="module")
def sandbox_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, dict[str, object], dict[str, object]]:
    """One real sandbox run of the manual's summary example: stderr, the summary and a record."""
    (block,) = of_kind("summary-lines")
    folder = tmp_path_factory.mktemp("readme")
    result = cli(
        "run",
        str(ROOT / block.args[0]),
        "--sandbox",
        "--summary",
        "summary.json",
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    summary = orjson.loads((folder / "summary.json").read_bytes())
    record = orjson.loads(
        (folder / "results.sandbox.jsonl").read_bytes().splitlines()[0]
    )
    return result.stderr, summary, record


def test_the_summary_lines_have_the_real_shape(sandbox_run) -> None:
    """The summary lines read as a real run's, numbers aside."""
    stderr, _, _ = sandbox_run
    (block,) = of_kind("summary-lines")
    printed = [line for line in stderr.splitlines() if line.startswith("provisioner: ")]
    assert [_NUMBER.sub("N", line) for line in printed] == [
        _NUMBER.sub("N", line) for line in block.body.splitlines()
    ]


def test_the_summary_json_has_the_real_fields(sandbox_run) -> None:
    """The `--summary` example has every field of a real summary, in order."""
    _, summary, _ = sandbox_run
    (block,) = of_kind("summary-json")
    example = orjson.loads(block.body)
    assert list(example) == list(summary)
    assert list(example["counts"]) == list(summary["counts"])  # type: ignore[arg-type]


def test_the_record_example_has_the_real_fields(sandbox_run) -> None:
    """The result-record example has every field of a real record, in order, with values of the same types."""
    _, _, record = sandbox_run
    (block,) = of_kind("record")
    example = orjson.loads(block.body)
    assert list(example) == list(record)
    for key, value in example.items():
        assert (
            type(value) is type(record[key]) or value is None or record[key] is None
        ), key
    assert re.fullmatch(r"env_[0-9a-f]{32}", example["id"])


@pytest.mark.parametrize(
    ("kind", "suffix"),
    [("jsonl", ".jsonl"), ("json-file", ".json"), ("yaml-file", ".yaml")],
)
def test_the_example_job_files_validate(tmp_path: Path, kind: str, suffix: str) -> None:
    """Every job-file example in the manual is a valid job file of its format."""
    for block in of_kind(kind):
        path = tmp_path / f"example{suffix}"
        path.write_text(block.body)
        with JobFiles([str(path)]) as files:
            report = scan(files)
        assert report.errors == [], f"{block}: {report.errors}"
        assert report.total > 0


def test_the_csv_example_and_its_template_validate(tmp_path: Path) -> None:
    """The manual's CSV example, read with the template shown before it, is valid."""
    templates, sheets = of_kind("csv-template"), of_kind("csv-file")
    assert len(templates) == len(sheets)
    for number, (template, sheet) in enumerate(zip(templates, sheets, strict=True)):
        (tmp_path / f"t{number}.template.yaml").write_text(template.body)
        path = tmp_path / f"t{number}.csv"
        path.write_text(sheet.body)
        with JobFiles([str(path)]) as files:
            report = scan(files)
        assert report.errors == [], f"{sheet}: {report.errors}"
        assert report.total == len(sheet.body.splitlines()) - 1


def test_the_progress_example_has_the_fields_of_a_real_event() -> None:
    """The manual's run.progress line names exactly the fields an event carries."""
    (line,) = (
        x
        for text in PAGES.values()
        for x in text.splitlines()
        if '"event":"run.progress"' in x
    )
    example = orjson.loads(line)
    real = ProgressLog(total=1, interval_s=5, clock=lambda: 100.0).snapshot(100.0)
    assert list(example)[: len(real)] == list(real)
    # structlog adds the event's name, level and time; the command binds its run_id.
    assert set(example) - set(real) == {"event", "run_id", "level", "timestamp"}


def nav_pages() -> list[str]:
    """Every page mkdocs.yml's nav lists, relative to docs/."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs"
    found: list[str] = []

    def walk(entry: object) -> None:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, list):
            for item in entry:
                walk(item)
        elif isinstance(entry, dict):
            for item in entry.values():
                walk(item)

    walk(config["nav"])
    return found


def test_every_page_is_in_the_nav_once() -> None:
    """The nav lists every page of docs/, once, and nothing else."""
    pages = nav_pages()
    assert len(pages) == len(set(pages))
    on_disk = {
        p.relative_to(DOCS).as_posix()
        for p in DOCS.rglob("*.md")
        if "hooks" not in p.parts
    }
    assert set(pages) == on_disk


def test_the_readme_is_short() -> None:
    """The README is what a newcomer reads: under 250 lines, the reference is in docs/."""
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines"


def test_the_readme_keeps_the_two_commands() -> None:
    """The README opens with `make demo` and `make test`, and says how to build the manual."""
    text = PAGES["README.md"]
    assert "make demo    # creates .venv, installs, and runs jobs/" in text
    assert (
        "make test    # creates .venv, installs, and runs the whole test suite" in text
    )
    assert "make docs" in text


def test_the_readme_links_only_to_pages_that_exist() -> None:
    """Every link of the README is a page of the manual (or its image), by a path that exists.

    Anchors are left out: GitHub and mkdocs spell them differently.
    """
    pages = set(nav_pages())
    targets = [m["target"] for m in _LINK.finditer(PAGES["README.md"])]
    assert targets
    for target in targets:
        assert "#" not in target, target
        assert "://" not in target, target
        path = (ROOT / target).resolve()
        assert path.is_relative_to(DOCS.resolve()), f"{target} is not in docs/"
        assert path.exists(), f"{target} does not exist"
        if path.suffix == ".md":
            assert path.relative_to(DOCS.resolve()).as_posix() in pages, target
        else:
            assert path.is_file(), target


def test_the_readme_links_to_every_page() -> None:
    """A newcomer finds every page of the manual from the README."""
    linked = {
        (ROOT / m["target"]).resolve().relative_to(DOCS.resolve()).as_posix()
        for m in _LINK.finditer(PAGES["README.md"])
    }
    assert set(nav_pages()) <= linked, set(nav_pages()) - linked
