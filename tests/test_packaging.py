"""The installed package: version, console script, public surface."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import provisioner


def test_version_comes_from_the_package_metadata():
    """__version__ is the installed distribution's version."""
    assert provisioner.__version__ == version("provisioner")


def test_console_script_and_module_both_run():
    """`provisioner --help` and `python -m provisioner --help` both work."""
    script = shutil.which("provisioner", path=str(Path(sys.executable).parent))
    assert script is not None
    for argv in ([script, "--help"], [sys.executable, "-m", "provisioner", "--help"]):
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        for command in ("run", "validate", "emulator"):
            assert command in out
