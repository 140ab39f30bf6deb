"""``provisioner report``: result logs in, a summary out (text or JSON, and ``--html``).

The figures come from :mod:`provisioner.report.figures`, the page from
:mod:`provisioner.report.html`. The summary goes to stdout; an unreadable log or
an unwritable ``--html`` path is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from provisioner.cli.common import ExitCode, print_json, say, stdin_stream
from provisioner.cli.flags import STDIO
from provisioner.errors import ResultLogError
from provisioner.redact import printable
from provisioner.report.figures import Report, read_report
from provisioner.report.html import render_html


def cmd_report(args: argparse.Namespace) -> int:
    """Run ``provisioner report`` with parsed, resolved flags; return the exit code."""
    try:
        report = read_report(args.results, stdin=stdin_stream())
    except ResultLogError as exc:
        say(f"error: {exc}")
        return ExitCode.USAGE
    if args.html == STDIO:  # the page is stdout's one document
        sys.stdout.write(render_html(report))
        return ExitCode.OK
    if args.format == "json":
        print_json(report.to_dict())
    else:
        sys.stdout.write("".join(line + "\n" for line in render_text(report)))
    if args.html:
        try:
            Path(args.html).write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            say(f"error: cannot write {args.html}: {exc.strerror}")
            return ExitCode.USAGE
        say(f"HTML report in {args.html}")
    return ExitCode.OK


def _ms(value: float) -> str:
    return f"{value:,.1f} ms"


def render_text(report: Report) -> list[str]:
    """The terminal summary: one figure per line, untrusted text made printable."""
    logs = "log" if len(report.files) == 1 else "logs"
    counts = ", ".join(f"{n:,} {status}" for status, n in report.counts.items() if n)
    attempts = report.attempts
    latency = report.latency
    lines = [
        f"records:   {report.records:,} in {len(report.files)} {logs} ({', '.join(report.files)})",
        f"status:    {counts or 'none'}",
        f"attempts:  {attempts.total:,} requests; {attempts.retried_specs:,} specs retried "
        f"({attempts.retries:,} retries), at most {attempts.max_per_spec} for one spec",
        f"latency:   p50 {_ms(latency.p50_ms)}, p95 {_ms(latency.p95_ms)}, "
        f"p99 {_ms(latency.p99_ms)}, max {_ms(latency.max_ms)} "
        f"({latency.count:,} records that sent a request)",
        f"wall time: {report.wall_s:,.1f} s ({report.creates_per_s:,.2f} creates/s)",
    ]
    lines += _error_lines(report)
    lines += _slowest_lines(report)
    return [printable(line) for line in lines]


def _error_lines(report: Report) -> list[str]:
    if not report.errors:
        return ["errors:    none"]
    lines = [
        f"errors:    {report.error_total:,} (top types, each with its first source)"
    ]
    lines += [
        f"  {kind.count:>7,}  {kind.type}  {kind.source}: {_clip(kind.message)}"
        for kind in report.errors
    ]
    return lines


def _clip(text: str, width: int = 100) -> str:
    """One line of at most ``width`` characters (a gateway's HTML page is long)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _slowest_lines(report: Report) -> list[str]:
    if not report.slowest:
        return []
    return ["slowest:"] + [
        f"  {_ms(row.duration_ms):>12}  {row.name or '(no name)'}  {row.status}  "
        f"attempts {row.attempts}  {row.source}"
        for row in report.slowest
    ]


__all__ = ["cmd_report", "render_text"]
