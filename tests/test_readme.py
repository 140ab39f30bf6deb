"""The README's examples are run, so they cannot drift from what the tool does.

A fenced block preceded by ``<!-- check: KIND [ARGS] -->`` is checked by kind:
``commands`` (every provisioner line parses and names job files that exist),
``validate-output FILE`` (exactly what ``provisioner validate FILE`` prints),
``summary-lines FILE`` and ``summary-json`` (the shape of a real run's summary),
``record`` (the fields of a real result record, in order), ``jsonl``,
``json-file`` and ``yaml-file`` (example job files that validate). Every other
``sh`` block is checked like ``commands`` too.
"""

from __future__ import annotations

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

from provisioner.options import build_parser, check_combinations, resolve_env
from provisioner.sources import JobFiles, scan

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
_BLOCK = re.compile(
    r"(?:<!-- check: (?P<check>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_INVOCATION = re.compile(r"(?:^|[\s/])provisioner\s+(?:run|plan|validate|emulator|--)")
_COMMANDS = frozenset({"run", "plan", "validate", "emulator", "--help", "--version"})


@dataclass(frozen=True)
class Block:
    kind: str
    args: tuple[str, ...]
    lang: str
    body: str
    line: int

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.kind})"


def blocks() -> list[Block]:
    found = []
    for match in _BLOCK.finditer(README):
        words = (match["check"] or "").split()
        kind = words[0] if words else ("commands" if match["lang"] == "sh" else "")
        line = README.count("\n", 0, match.start("body"))
        found.append(Block(kind, tuple(words[1:]), match["lang"], match["body"], line))
    return found


def of_kind(kind: str) -> list[Block]:
    chosen = [b for b in blocks() if b.kind == kind]
    assert chosen, f"the README has no {kind} block"
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
    """The argv of every provisioner invocation in a shell block (comments dropped)."""
    calls = []
    for raw in body.splitlines():
        line = raw.split(" #", 1)[0].replace("$(id -u)", "1000")
        if not _INVOCATION.search(line):
            continue
        for part in line.split("|"):
            words = shlex.split(part.split(";", 1)[0])
            for at, word in enumerate(words[:-1]):
                if word.endswith("provisioner") and words[at + 1] in _COMMANDS:
                    calls.append(words[at + 1 :])
                    break
    return calls


@pytest.mark.parametrize("block", of_kind("commands"), ids=str)
def test_every_command_in_the_readme_parses(block: Block) -> None:
    """Each `provisioner ...` line uses real flags, in combinations the CLI accepts, on job files that exist."""
    for argv in provisioner_calls(block.body):
        if argv[0] in {"emulator", "--help", "--version"}:
            continue
        expanded = [
            p
            for word in argv
            for p in (sorted(glob.glob(str(ROOT / word))) if "*" in word else [word])
        ]
        args = build_parser().parse_args(expanded)
        if args.command == "run":
            check_combinations(args, resolve_env(args, {}))
        for job in args.jobs:
            if job.startswith("jobs/") or "/jobs/" in job:
                assert (ROOT / job).exists() or Path(job).exists(), (
                    f"{block}: {job} does not exist"
                )


def test_the_validate_example_is_exactly_what_validate_prints() -> None:
    """The README's `validate` output is the real output, line for line."""
    (block,) = of_kind("validate-output")
    result = cli("validate", *block.args)
    assert result.returncode == 2
    assert result.stderr == block.body


@pytest.fixture(scope="module")
def sandbox_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, dict[str, object], dict[str, object]]:
    """One real sandbox run of the README's summary example: stderr, the summary and a record."""
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
    """Every job-file example in the README is a valid job file of its format."""
    for block in of_kind(kind):
        path = tmp_path / f"example{suffix}"
        path.write_text(block.body)
        with JobFiles([str(path)]) as files:
            report = scan(files)
        assert report.errors == [], f"{block}: {report.errors}"
        assert report.total > 0
