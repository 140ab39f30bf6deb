"""Peak RSS of ``provisioner validate`` on a CSV job file of 1,000 and of 100,000 rows.

CSV rows are streamed through the template, so the two figures should be close
(what grows is the duplicate-name index, 24 to 32 bytes a name). Each run is one
child process; its peak RSS comes from ``os.wait4``. Prints figures, asserts nothing.

    .venv/bin/python bench/csv_memory.py [--rows 1000,100000]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = """\
name: "team-{{ team }}"
description: "{{ description | optional }}"
config:
  type: cloud
  networking:
    type: limited
    allowed_hosts: "{{ hosts | list }}"
    allow_package_managers: "{{ package_managers | bool }}"
  packages:
    pip: "{{ pip | list }}"
metadata:
  team: "{{ team }}"
  owner: "{{ owner }}"
"""
HEADER = ["team", "owner", "description", "hosts", "package_managers", "pip"]


def write_pair(folder: Path, rows: int) -> Path:
    """``teams-ROWS.csv`` and its template; the CSV's path."""
    path = folder / f"teams-{rows}.csv"
    (folder / f"teams-{rows}.template.yaml").write_text(TEMPLATE)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for i in range(rows):
            writer.writerow(
                [f"t{i:07d}", f"Owner {i}, Esq.", f'Team "{i}"\nsecond line',
                 "pypi.org;files.pythonhosted.org", "yes", "requests pandas"]
            )  # fmt: skip
    return path


def measure(path: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall time (s) of one ``provisioner validate`` of ``path``."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "validate", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall_s = time.perf_counter() - started
    stderr = child.stderr.read().decode() if child.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"validate {path} failed: {stderr}")
    return usage.ru_maxrss / 1024, wall_s  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", default="1000,100000", help="comma-separated row counts"
    )
    counts = [int(n) for n in parser.parse_args().rows.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'rows':>9}  {'file MB':>8}  {'peak RSS MB':>11}  {'rows/s':>8}")
        for rows in counts:
            path = write_pair(Path(folder), rows)
            rss_mb, wall_s = measure(path)
            size_mb = path.stat().st_size / 1e6
            print(
                f"{rows:>9,}  {size_mb:>8.1f}  {rss_mb:>11.1f}  {rows / wall_s:>8,.0f}"
            )


if __name__ == "__main__":
    main()
