"""Every command's --help is complete, and the manual (docs/) documents exactly what it shows.

Each command has a page of the manual that names every one of its flags; the one table of
variables (docs/environment.md) is exactly the flag table of cli/flags.py; and the exit-code
page lists every code the commands exit with.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from provisioner.cli.common import ExitCode
from provisioner.cli.flags import COMMAND_FLAGS, FLAGS, build_parser
from provisioner.emulator.cli import build_parser as emulator_parser
from provisioner.lifecycle.plan import PlanExit

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
#: The page of the manual that documents each command (and all of its flags).
PAGE_OF = {
    "run": "commands/run.md",
    "validate": "commands/validate.md",
    "plan": "commands/plan.md",
    "import": "commands/import.md",
    "doctor": "commands/doctor.md",
    "archive": "commands/teardown.md",
    "delete": "commands/teardown.md",
    "enqueue": "commands/queue.md",
    "worker": "commands/queue.md",
    "queue-status": "commands/queue.md",
    "dead-letters": "commands/queue.md",
    "completion": "commands/completion.md",
    "report": "commands/report.md",
    "emulator": "emulator.md",
}
_ROW_CODE = re.compile(r"^\| (\d+) \|", re.M)
_TABLE = re.compile(r"<!-- env-table -->\n(.*?)<!-- /env-table -->", re.S)
_API_URL_ENVS = "`QODER_API_URL`, `QODER_BASE_URL`"


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def help_of(command: str) -> str:
    """The command's --help, on one line (argparse wraps at any space)."""
    return " ".join(subparsers()[command].format_help().split())


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text under a ``## heading``, up to the next one (pages have one ``#`` title)."""
    _, found, rest = text.partition(f"\n{heading}\n")
    assert found, f"no {heading!r} section"
    return rest.split("\n## ", 1)[0]


def options_of(command: str) -> list[str]:
    """The long options of a command, as its --help lists them."""
    parser = emulator_parser() if command == "emulator" else subparsers()[command]
    return [
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]


def env_table() -> str:
    """The manual's table, from cli/flags.py: every flag, its variables, its commands."""
    rows = ["| flag | environment variable | commands |", "|---|---|---|"]
    parsers = subparsers()
    with_url = [
        name
        for name in COMMAND_FLAGS
        if any("--api-url" in a.option_strings for a in parsers[name]._actions)
    ]
    rows.append(f"| `--api-url URL` | {_API_URL_ENVS} | {', '.join(with_url)} |")
    for flag in FLAGS.values():
        commands = [c for c, names in COMMAND_FLAGS.items() if flag.name in names]
        if not commands:
            continue
        spelt = f"`{flag.name} {flag.metavar}`" if flag.metavar else f"`{flag.name}`"
        if flag.negatable:
            spelt += f", `--no-{flag.name.removeprefix('--')}`"
        envs = ", ".join(f"`{env}`" for env in flag.env_names)
        rows.append(f"| {spelt} | {envs} | {', '.join(commands)} |")
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("command", sorted(COMMAND_FLAGS))
def test_help_names_every_flags_variable(command: str) -> None:
    """`provisioner COMMAND --help` shows, for each flag, the variable that sets it."""
    text = help_of(command)
    for name in COMMAND_FLAGS[command]:
        flag = FLAGS[name]
        assert f"[env {' or '.join(flag.env_names)}]" in text, (command, name)


def test_every_option_of_every_command_has_a_variable() -> None:
    """No command takes a flag that the flag table (and so the env table) leaves out."""
    for command, parser in subparsers().items():
        if (
            command == "emulator"
        ):  # its own parser: a local test double, not configured by env
            continue
        listed = set(COMMAND_FLAGS.get(command, ()))
        for action in parser._actions:
            for option in action.option_strings:
                base = option.replace("--no-", "--", 1)
                if option in {"-h", "--help", "--api-url"}:
                    continue
                assert option in listed or base in listed, (command, option)


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_argument_of_every_command_is_explained(command: str) -> None:
    """Each flag and operand in --help has a description (the emulator's in its own --help)."""
    parser = emulator_parser() if command == "emulator" else subparsers()[command]
    assert parser.description or command == "emulator"
    for action in parser._actions:
        assert action.help, (command, action.dest)


def test_the_manual_env_table_is_exactly_the_flags() -> None:
    """The manual's table of variables lists every flag of cli/flags.py, no more, no less."""
    match = _TABLE.search(page("environment.md"))
    assert match, "docs/environment.md has no <!-- env-table --> block"
    expected = env_table()
    assert match.group(1) == expected, (
        f"replace the table in docs/environment.md with:\n{expected}"
    )


def test_every_command_has_a_page() -> None:
    """Each command of the CLI is documented on a page of the manual that exists."""
    assert set(PAGE_OF) == set(subparsers())
    for command, name in PAGE_OF.items():
        assert f"provisioner {command}" in page(name), (command, name)


@pytest.mark.parametrize("command", sorted(PAGE_OF))
def test_every_flag_of_every_command_is_on_its_page(command: str) -> None:
    """The page of each command names every flag its --help shows."""
    text = page(PAGE_OF[command])
    for option in options_of(command):
        assert f"`{option}" in text, (command, option, PAGE_OF[command])


def test_every_emulator_flag_has_a_row_in_its_flags_table() -> None:
    """Each ``provisioner emulator`` flag has a row in the emulator page's flags table."""
    table = section(page("emulator.md"), "## Flags")
    options = options_of("emulator")
    assert options
    for option in options:
        assert f"| `{option}" in table or f", `{option}" in table, option


def codes_in(text: str) -> set[int]:
    """The exit codes a table lists, one per row."""
    return {int(code) for code in _ROW_CODE.findall(text)}


def test_every_exit_code_is_documented() -> None:
    """The exit-code page lists every code of run (exactly) and of plan, and every command."""
    text = page("exit-codes.md")
    assert codes_in(section(text, "## `run`")) == {int(code) for code in ExitCode}
    plan = codes_in(section(text, "## `plan`"))
    assert {int(code) for code in PlanExit} <= plan
    assert plan <= {int(code) for code in ExitCode} | {int(code) for code in PlanExit}
    others = section(text, "## The other commands")
    for command in subparsers():
        if command not in {"run", "plan"}:
            assert f"| `{command}`" in others or f", `{command}`" in others, command
