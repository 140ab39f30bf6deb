"""`provisioner completion bash|zsh`: scripts that real shells load and complete with."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from provisioner.cli.completion import script
from provisioner.cli.main import main
from tests.helpers import run_cli

ROOT = Path(__file__).parent.parent


def complete_bash(script_path: Path, *words: str, cwd: Path = ROOT) -> list[str]:
    """What bash offers for the last of ``words`` (typed after ``provisioner``)."""
    array = " ".join(f"'{w}'" for w in ("provisioner", *words))
    program = (
        f"source {script_path}; COMP_WORDS=({array}); COMP_CWORD={len(words)}; "
        '_provisioner; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", program],  # noqa: S607 - the user's bash is what is tested
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        timeout=30,
    )
    return [line for line in done.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def bash_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bash script as `provisioner completion bash` prints it."""
    done = run_cli("completion", "bash", check=True, timeout=60)
    path = tmp_path_factory.mktemp("completion") / "provisioner.bash"
    path.write_text(done.stdout)
    return path


def test_completion_prints_the_script_and_exits_0(capsys) -> None:
    """`provisioner completion bash` prints the script on stdout and exits 0."""
    assert main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert out == script("bash")
    assert "complete -F _provisioner provisioner" in out


def test_an_unknown_shell_is_a_usage_error(capsys) -> None:
    """`provisioner completion fish` names the shells there are and exits 2."""
    assert main(["completion", "fish"]) == 2
    assert "bash" in capsys.readouterr().err


def test_bash_completes_commands(bash_file: Path) -> None:
    """`provisioner ru<TAB>` offers run; `provisioner <TAB>` every command."""
    assert complete_bash(bash_file, "ru") == ["run"]
    every = complete_bash(bash_file, "")
    assert {"run", "validate", "plan", "worker", "completion", "emulator"} <= set(every)


def test_bash_completes_each_commands_flags(bash_file: Path) -> None:
    """`provisioner worker --cl<TAB>` offers --claim-idle; run's flags are not worker's."""
    assert complete_bash(bash_file, "worker", "--cl") == ["--claim-idle"]
    assert complete_bash(bash_file, "run", "--sand") == [
        "--sandbox",
        "--sandbox-faults",
    ]
    assert complete_bash(bash_file, "worker", "--sand") == []
    assert "--no-resume" in complete_bash(bash_file, "run", "--no-")


def test_bash_completes_choices(bash_file: Path) -> None:
    """A flag with choices offers them, also after `=`; the completion command offers its shells."""
    assert complete_bash(bash_file, "run", "--on-conflict", "") == ["exists", "fail"]
    assert complete_bash(bash_file, "run", "--log-level", "w") == ["warning"]
    assert complete_bash(bash_file, "run", "--log-format", "=", "j") == ["json"]
    assert complete_bash(bash_file, "emulator", "--config-echo", "") == [
        "as-sent",
        "normalized",
    ]
    assert complete_bash(bash_file, "completion", "") == ["bash", "zsh"]


def test_bash_completes_job_files_and_paths(bash_file: Path, tmp_path: Path) -> None:
    """Job files and path flags complete file names; a number flag offers nothing."""
    (tmp_path / "teams.jsonl").write_text("")
    (tmp_path / "token.txt").write_text("")
    assert complete_bash(bash_file, "run", "te", cwd=tmp_path) == ["teams.jsonl"]
    assert complete_bash(bash_file, "run", "--token-file", "to", cwd=tmp_path) == [
        "token.txt"
    ]
    assert complete_bash(bash_file, "run", "--concurrency", "", cwd=tmp_path) == []


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed here")
def test_the_zsh_script_parses(tmp_path: Path) -> None:
    """zsh reads `provisioner completion zsh` without a syntax error, and it loads after compinit."""
    path = tmp_path / "_provisioner"
    path.write_text(script("zsh"))
    subprocess.run(["zsh", "-n", str(path)], check=True, timeout=30)  # noqa: S607 - the user's zsh
    loaded = subprocess.run(
        [  # noqa: S607 - the user's zsh
            "zsh",
            "-fc",
            f"autoload -Uz compinit && compinit -u -D && source {path} "
            "&& print -r -- $_comps[provisioner]",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert loaded.stdout.strip() == "_provisioner"


def test_the_zsh_script_names_every_command_and_choice() -> None:
    """The zsh script lists every command and the choices of flags that have them."""
    text = script("zsh")
    assert text.startswith("#compdef provisioner\n")
    for command in ("run", "validate", "plan", "worker", "queue-status", "completion"):
        assert f"'{command}:" in text
    assert "--on-conflict=[" in text
    assert ":on-conflict:(exists fail)'" in text
    assert "'*:job file:_files'" in text
