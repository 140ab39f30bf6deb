"""Shell completion scripts for bash and zsh, generated from the argument parsers.

``provisioner completion bash`` and ``provisioner completion zsh`` print a script
that completes the commands, each command's flags, the choices of flags that have
them, and file names where a command takes job files or a flag takes a path. The
script is built from :func:`provisioner.cli.flags.build_parser` (and the emulator's
own parser), so a new flag is completed without touching this module.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.cli.flags import build_parser
from provisioner.emulator.cli import build_parser as emulator_parser

PROG = "provisioner"
#: Metavars of flags whose value is a file name.
_PATH_METAVARS = frozenset({"PATH", "FILE", "RESULTS"})
_ENV_NOTE = re.compile(r"\s*\[env [^\]]*\]")


@dataclass(frozen=True, slots=True)
class Option:
    """One flag as completion sees it."""

    names: tuple[str, ...]
    help: str
    takes_value: bool
    choices: tuple[str, ...] = ()
    is_path: bool = False
    repeatable: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    """One command: its flags and what its positional arguments are."""

    name: str
    help: str
    options: tuple[Option, ...]
    operands: str  # "files", "choices" or "" (none)
    operand_choices: tuple[str, ...] = ()


def _option(action: argparse.Action) -> Option:
    choices = action.choices or getattr(action.type, "choices", None) or ()
    return Option(
        names=tuple(action.option_strings),
        help=_ENV_NOTE.sub("", action.help or "").strip(),
        takes_value=action.nargs != 0,
        choices=tuple(str(c) for c in choices),
        is_path=action.metavar in _PATH_METAVARS,
        repeatable=isinstance(action, argparse._AppendAction),
    )


def _command(name: str, help_text: str, parser: argparse.ArgumentParser) -> Command:
    options = tuple(_option(a) for a in parser._actions if a.option_strings)
    positionals = [a for a in parser._actions if not a.option_strings]
    if not positionals:
        return Command(name, help_text, options, "")
    if positionals[0].choices:
        return Command(
            name,
            help_text,
            options,
            "choices",
            tuple(str(c) for c in positionals[0].choices),
        )
    return Command(name, help_text, options, "files")


def commands() -> tuple[Command, ...]:
    """Every command of ``provisioner``, in the order of ``provisioner --help``."""
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help or "" for c in sub._choices_actions}
    found = []
    for name, subparser in sub.choices.items():
        # `emulator` hands its argv to its own parser: complete that parser's flags.
        source = emulator_parser() if name == "emulator" else subparser
        found.append(_command(name, helps.get(name, ""), source))
    return tuple(found)


def script(shell: str) -> str:
    """The completion script for ``shell`` (``bash`` or ``zsh``).

    Raises:
        ValueError: another shell.
    """
    if shell == "bash":
        return bash_script(commands())
    if shell == "zsh":
        return zsh_script(commands())
    raise ValueError(f"no completion for shell {shell!r} (bash or zsh)")


# --- bash ---------------------------------------------------------------------


def _words(items: Sequence[str]) -> str:
    return " ".join(items)


def _bash_command(command: Command) -> list[str]:
    options = [n for o in command.options for n in o.names]
    lines = [f"        {command.name})", '            case "$prev" in']
    for option in command.options:
        if not option.takes_value:
            continue
        if option.choices:
            action = f'COMPREPLY=($(compgen -W "{_words(option.choices)}" -- "$cur"))'
        elif option.is_path:
            action = '_provisioner_files "$cur"'
        else:
            action = "COMPREPLY=()"  # a number or a name: nothing to offer
        lines.append(f"                {'|'.join(option.names)}) {action}; return ;;")
    lines += ["            esac", "            if [[ $cur == -* ]]; then"]
    lines.append(
        f'                COMPREPLY=($(compgen -W "{_words(options)}" -- "$cur"))'
    )
    if command.operands == "files":
        lines += ["            else", '                _provisioner_files "$cur"']
    elif command.operands == "choices":
        words = _words(command.operand_choices)
        lines += [
            "            else",
            f'                COMPREPLY=($(compgen -W "{words}" -- "$cur"))',
        ]
    lines += ["            fi", "            ;;"]
    return lines


def bash_script(found: Sequence[Command]) -> str:
    """The bash script: the function ``_provisioner`` registered with ``complete``."""
    names = _words([c.name for c in found])
    body = [line for command in found for line in _bash_command(command)]
    lines = [
        f"# bash completion for {PROG}; generated by `{PROG} completion bash`.",
        f"# Load it with: source <({PROG} completion bash)   (e.g. in ~/.bashrc)",
        "_provisioner_files() {",
        "    compopt -o filenames 2>/dev/null",
        '    COMPREPLY=($(compgen -f -- "$1"))',
        "}",
        "",
        "_provisioner() {",
        "    local cur prev command i",
        '    cur="${COMP_WORDS[COMP_CWORD]}"',
        '    prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    # --flag=value: bash splits at '=', so the flag is two words back.",
        '    if [[ $cur == "=" ]]; then cur=""; prev="${COMP_WORDS[COMP_CWORD-1]}"; fi',
        '    if [[ $prev == "=" ]]; then prev="${COMP_WORDS[COMP_CWORD-2]}"; fi',
        '    command=""',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        if [[ ${COMP_WORDS[i]} != -* ]]; then command="${COMP_WORDS[i]}"; break; fi',
        "    done",
        '    case "$command" in',
        '        "")',
        f'            COMPREPLY=($(compgen -W "{names} --help --version" -- "$cur"))',
        "            ;;",
        *body,
        "    esac",
        "}",
        f"complete -F _provisioner {PROG}",
        "",
    ]
    return "\n".join(lines)


# --- zsh ----------------------------------------------------------------------


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_help(text: str) -> str:
    """A description fit for ``_arguments``' brackets: one clause, no brackets or colons."""
    short = re.split(r";|\s\(", text, maxsplit=1)[0].strip()
    short = short.replace("://", "").replace(": ", ", ").replace(":", " ")
    return short.replace("[", "(").replace("]", ")").replace("\\", "")


def _zsh_option(option: Option) -> list[str]:
    specs = []
    for name in option.names:
        spec = f"{'*' if option.repeatable else ''}{name}"
        if option.takes_value:
            spec += "=" if name.startswith("--") else "+"
        spec += f"[{_zsh_help(option.help)}]"
        if option.takes_value:
            label = name.lstrip("-")
            if option.choices:
                spec += f":{label}:({' '.join(option.choices)})"
            elif option.is_path:
                spec += f":{label}:_files"
            else:
                spec += f":{label}: "
        specs.append(_zsh_quote(spec))
    return specs


def _zsh_command(command: Command) -> list[str]:
    specs = [s for o in command.options for s in _zsh_option(o)]
    if command.operands == "files":
        specs.append(_zsh_quote("*:job file:_files"))
    elif command.operands == "choices":
        specs.append(
            _zsh_quote(f"1:{command.name}:({' '.join(command.operand_choices)})")
        )
    joined = " \\\n                ".join(specs)
    return [
        f"        {command.name})",
        f"            _arguments -s \\\n                {joined}",
        "            ;;",
    ]


def zsh_script(found: Sequence[Command]) -> str:
    """The zsh script: usable from ``$fpath`` (``#compdef``) or sourced after compinit."""
    described = [
        "        " + _zsh_quote(f"{c.name}:{_zsh_help(c.help)}") for c in found
    ]
    body = [line for command in found for line in _zsh_command(command)]
    lines = [
        f"#compdef {PROG}",
        f"# zsh completion for {PROG}; generated by `{PROG} completion zsh`.",
        f"# Save it as _{PROG} in a folder of $fpath, or: source <({PROG} completion zsh)",
        "# after compinit (e.g. in ~/.zshrc).",
        "_provisioner() {",
        "    local -a commands",
        "    commands=(",
        *described,
        "    )",
        "    local curcontext=$curcontext state line",
        "    _arguments -C \\",
        "        '(- *)'{-h,--help}'[show help and exit]' \\",
        "        '(- *)--version[show the version and exit]' \\",
        "        '1:command:->command' \\",
        "        '*::argument:->argument'",
        "    case $state in",
        "        command) _describe -t commands 'provisioner command' commands ;;",
        "        argument)",
        "            case $words[1] in",
        *("    " + line for line in body),
        "            esac",
        "            ;;",
        "    esac",
        "}",
        "# Autoloaded from $fpath the file is the function's body: complete now.",
        "# Sourced, it only registers the function.",
        'if [[ "${funcstack[1]}" == _provisioner ]]; then',
        '    _provisioner "$@"',
        "else",
        f"    compdef _provisioner {PROG}",
        "fi",
        "",
    ]
    return "\n".join(lines)


__all__ = ["Command", "Option", "bash_script", "commands", "script", "zsh_script"]
