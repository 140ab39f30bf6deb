"""Running ``provisioner`` in this process, as the CLI tests of plan, update and teardown do."""

from __future__ import annotations

from pathlib import Path

from provisioner.cli import main
from provisioner.emulator import Emulator


def cli(emulator: Emulator, command: str, *args: str | Path) -> int:
    """``provisioner COMMAND`` against ``emulator``, unpaced and without backoff waits."""
    defaults = ["--api-url", emulator.url, "--backoff", "0", "--rate", "0"]
    if command == "run":
        defaults.append("--no-progress")
    return main([command, *defaults, *map(str, args)])
