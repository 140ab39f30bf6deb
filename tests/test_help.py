"""Every command's --help is complete, and the README's one table of variables is exact."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from provisioner.emulator.cli import build_parser as emulator_parser
from provisioner.options import COMMAND_FLAGS, FLAGS, build_parser

ROOT = Path(__file__).parent.parent
_TABLE = re.compile(r"<!-- env-table -->\n(.*?)<!-- /env-table -->", re.S)
_API_URL_ENVS = "`QODER_API_URL`, `QODER_BASE_URL`"


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def help_of(command: str) -> str:
    """The command's --help, on one line (argparse wraps at any space)."""
    return " ".join(subparsers()[command].format_help().split())


def env_table() -> str:
    """The README table, from options.py: every flag, its variables, its commands."""
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


def test_the_readme_env_table_is_exactly_the_flags() -> None:
    """The README's table of variables lists every flag of options.py, no more, no less."""
    readme = (ROOT / "README.md").read_text()
    match = _TABLE.search(readme)
    assert match, "README.md has no <!-- env-table --> block"
    expected = env_table()
    assert match.group(1) == expected, f"replace the README table with:\n{expected}"
