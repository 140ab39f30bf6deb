"""Every example job file in jobs/ validates as documented and runs against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.cli.main import main
from tests.helpers import records

JOBS = Path(__file__).parent.parent / "jobs"
# A CSV's template is read with its CSV, not given as a job file.
VALID = sorted(
    p
    for p in JOBS.iterdir()
    if p.name != "with-mistakes.jsonl" and not p.name.endswith(".template.yaml")
)

pytestmark = pytest.mark.usefixtures("cli_env")


def test_jobs_folder_has_the_documented_examples():
    """The README's examples exist."""
    names = {p.name for p in JOBS.iterdir()}
    assert {
        "demo-onboarding.jsonl",
        "mixed-networking.yaml",
        "platform-teams.json",
        "with-mistakes.jsonl",
        "onboarding-sheet.csv",
        "onboarding-sheet.template.yaml",
    } <= names


def test_the_csv_example_fills_each_row_into_its_template(live_emulator, tmp_path):
    """onboarding-sheet.csv creates one environment a row, each at the row's first line."""
    results = tmp_path / "r.jsonl"
    argv = ["run", str(JOBS / "onboarding-sheet.csv"), "--api-url", live_emulator.url]
    assert main([*argv, "--rate", "0", "--results", str(results), "--no-progress"]) == 0
    lines = [int(r["source"].rsplit(":", 1)[1]) for r in records(results)]
    assert lines == [2, 3, 4, 5, 7]  # the row at line 5 holds a quoted line break
    (search,) = (e for e in live_emulator.environments() if e["name"] == "sheet-search")
    assert search["metadata"]["owner"] == "Bo, Chen"
    assert search["description"] == 'Search: indexing and "relevance"'


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_each_valid_example_validates(path, capsys):
    """Every example except the one with deliberate mistakes is valid."""
    assert main(["validate", str(path)]) == 0


def test_the_mistakes_example_is_refused(capsys):
    """with-mistakes.jsonl is refused with located errors."""
    assert main(["validate", str(JOBS / "with-mistakes.jsonl")]) == 2
    assert "with-mistakes.jsonl:2: config.networking" in capsys.readouterr().err


def test_all_valid_examples_run_together(live_emulator, tmp_path):
    """The valid examples create every environment in one run (what `make demo` does)."""
    results = tmp_path / "r.jsonl"
    code = main(
        [
            "run",
            *map(str, VALID),
            "--api-url",
            live_emulator.url,
            "--rate",
            "0",
            "--results",
            str(results),
            "--no-progress",
        ]
    )
    assert code == 0
    log = records(results)
    assert {r["status"] for r in log} == {"created"}
    assert len(log) == len(live_emulator.environments())
