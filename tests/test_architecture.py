"""The package's shape: layers that import one way, no cycle, a short top level."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

import provisioner
from tests.helpers import child_env

PACKAGE = Path(provisioner.__file__).parent
MAX_TOP_LEVEL_MODULES = 8


def test_no_module_imports_itself_back():
    """No import cycle between provisioner's modules, lazy (in a function) or not."""
    graph = grimp.build_graph("provisioner", exclude_type_checking_imports=False)
    for module in list(graph.modules):
        # A package's __init__ re-exporting its children is not a cycle of modules.
        for child in graph.find_children(module):
            if graph.direct_import_exists(importer=module, imported=child):
                graph.remove_import(importer=module, imported=child)
    cycles = [
        (importer, imported)
        for importer in sorted(m for m in graph.modules if m.startswith("provisioner"))
        for imported in sorted(graph.find_modules_directly_imported_by(importer))
        if imported.startswith("provisioner")
        and graph.chain_exists(importer=imported, imported=importer)
    ]
    assert cycles == []


def test_the_layer_contracts_hold():
    """`lint-imports` (the contracts in pyproject.toml) finds no forbidden import."""
    tool = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(tool), "--no-cache"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_the_top_level_holds_at_most_eight_modules():
    """`ls provisioner/` shows the subpackages and a few root modules, not the whole code."""
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def test_a_plain_run_imports_neither_prometheus_nor_the_health_server(
    tmp_path, live_emulator
):
    """Without --metrics-port, `run` never imports prometheus-client or aiohttp.web."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"name": "plain", "config": {"type": "cloud"}}\n')
    code = (
        "import sys\n"
        "from provisioner.cli.main import main\n"
        f"code = main(['run', {str(jobs)!r}, '--api-url', {live_emulator.url!r},"
        f" '--no-progress', '--results', {str(tmp_path / 'r.jsonl')!r}])\n"
        "loaded = [m for m in ('prometheus_client', 'aiohttp.web',"
        " 'provisioner.observe.health', 'provisioner.observe.metrics', 'redis')"
        " if m in sys.modules]\n"
        "print(code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=child_env(),
    )
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stderr
