"""The installed package and how it is built: version, console script, locks, image."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

import provisioner
from tests.helpers import missing

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ("requirements.lock", "requirements-dev.lock", "requirements-build.lock")
# One requirement of a lock, its continuation lines joined: `name==version [; marker]`
# followed by one or more `--hash=sha256:<64 hex>`.
PINNED = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)"
    r"(?: ; (?P<marker>[^\\]+?))?(?P<hashes>(?: --hash=sha256:[0-9a-f]{64})+)"
)


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def lock_entries(name: str) -> list[str]:
    """The requirements of a lock file, each on one line, comments dropped."""
    text = (ROOT / name).read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].rstrip() for line in text.splitlines()]
    joined = "\n".join(line for line in lines if line.strip())
    return [
        " ".join(entry.split()) for entry in joined.replace("\\\n", " ").splitlines()
    ]


def pins(name: str) -> dict[tuple[str, str], str]:
    """(normalised name, marker) -> version for every requirement of a lock."""
    found = {}
    for entry in lock_entries(name):
        match = PINNED.fullmatch(entry)
        assert match, f"{name}: not pinned with == and --hash=sha256: {entry[:80]}"
        key = (re.sub(r"[-_.]+", "-", match["name"]).lower(), match["marker"] or "")
        found[key] = match["version"]
    return found


def test_version_comes_from_the_package_metadata():
    """__version__ is the installed distribution's version, the one pyproject declares."""
    assert provisioner.__version__ == version("provisioner")
    assert provisioner.__version__ == pyproject()["project"]["version"]


def test_console_script_and_module_both_run():
    """`provisioner --help` and `python -m provisioner --help` both work."""
    script = shutil.which("provisioner", path=str(Path(sys.executable).parent))
    assert script is not None
    for argv in ([script, "--help"], [sys.executable, "-m", "provisioner", "--help"]):
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        for command in ("run", "validate", "emulator"):
            assert command in out


@pytest.mark.parametrize("name", LOCKS)
def test_every_lock_line_is_pinned_with_a_hash(name):
    """Each requirement of each lock is `==` one version, with its sha256 hashes."""
    assert len(pins(name)) >= 5


def test_the_locks_agree_on_every_shared_version():
    """A package in two locks has one version: runtime, dev and build pins never differ."""
    runtime, dev, build = (pins(name) for name in LOCKS)
    assert runtime.keys() <= dev.keys()
    assert build.keys() <= dev.keys()
    assert {key: dev[key] for key in runtime} == runtime
    assert {key: dev[key] for key in build} == build


def test_the_locks_hold_what_installs_and_regenerates_them():
    """The dev lock has uv (make lock), pip and the build backend; the runtime lock has uvloop."""
    dev = {name for name, _ in pins("requirements-dev.lock")}
    assert {"uv", "pip", "hatchling", "editables"} <= dev
    runtime = pins("requirements.lock")
    assert ("uvloop", "sys_platform != 'win32'") in runtime
    assert "pip" not in {name for name, _ in runtime}
    requires = pyproject()["build-system"]["requires"]
    assert [re.split(r"[<>=!~ ]", r, maxsplit=1)[0] for r in requires] == ["hatchling"]
    assert ("hatchling", "") in pins("requirements-build.lock")


def test_every_install_from_a_lock_checks_hashes():
    """make, .ci/run (through make) and the Dockerfile install a lock only with --require-hashes."""
    for name in ("Makefile", "Dockerfile"):
        text = (ROOT / name).read_text(encoding="utf-8")
        installs = re.findall(r"pip[^\n]* install [^\n]*-r [^\n]*", text)
        assert installs, name
        for line in installs:
            assert "--require-hashes" in line, f"{name}: {line}"
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_image_is_built_on_python_3_11_with_its_labels():
    """The Dockerfile's base is python:3.11-slim, its version label pyproject's version."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG BASE=python:3\.11-slim(@sha256:[0-9a-f]{64})?$", text, re.M)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE}", "${BASE}"]
    assert f"ARG VERSION={pyproject()['project']['version']}\n" in text
    for label in ("title", "version", "source", "licenses", "revision", "created"):
        assert f"org.opencontainers.image.{label}=" in text
    assert pyproject()["tool"]["mypy"]["python_version"] == "3.11"


def test_the_license_and_changelog_match_the_project():
    """LICENSE is the MIT text pyproject declares; the CHANGELOG has a section for this version."""
    assert pyproject()["project"]["license"] == "MIT"
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith(
        "MIT License\n\nCopyright (c) 2026 The provisioner authors\n"
    )
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[([^\]]+)\]", changelog, re.M)
    assert versions[0] == "Unreleased"
    assert pyproject()["project"]["version"] in versions
    dated = re.findall(r"^## \[[0-9.]+\] - \d{4}-\d{2}-\d{2}$", changelog, re.M)
    assert len(dated) == len(versions) - 1
    for section in re.split(r"^## ", changelog, flags=re.M)[1:]:
        headings = re.findall(r"^### (\w+)", section, re.M)
        assert len(headings) == len(set(headings)), section.splitlines()[0]


def fresh_venv(path: Path) -> Path:
    """A new venv at ``path`` whose pip is the dev lock's (the bundled one may be older)."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    text = (ROOT / "requirements-dev.lock").read_text(encoding="utf-8")
    pip_lock = path / "pip.lock"
    pip_entry = re.search(r"^pip==.*?(?<!\\)\n", text, re.M | re.S)
    assert pip_entry is not None
    pip_lock.write_text(pip_entry[0])
    pip_install(python, pip_lock)
    return python


def pip_install(python: Path, lock: Path) -> None:
    """`pip install --require-hashes -r lock`; no bytecode, which only costs time here."""
    argv = [str(python), "-m", "pip", "install", "-q", "--no-compile"]
    argv += ["--require-hashes", "-r", str(lock)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode and "NewConnectionError" in done.stderr + done.stdout:
        missing("PyPI is not reachable from here")
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_both_locks_install_with_require_hashes_in_a_fresh_venv(tmp_path):
    """`pip install --require-hashes -r` of the runtime lock, then of the dev lock, succeeds."""
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, ROOT / "requirements.lock")
    subprocess.run([str(python), "-m", "pip", "check"], check=True, capture_output=True)
    pip_install(python, ROOT / "requirements-dev.lock")
    pip_install(python, ROOT / "requirements-build.lock")
    subprocess.run([str(python), "-m", "pip", "check"], check=True, capture_output=True)
