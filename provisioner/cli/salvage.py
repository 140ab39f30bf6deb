"""``run --salvage``: where the salvage may go, and publishing it when the run ends.

The salvage file itself is :mod:`provisioner.files.salvage`; which specs go
into it is :mod:`provisioner.core.salvage`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from provisioner.cli.common import same_file, say
from provisioner.cli.flags import STDIO, UsageError
from provisioner.core.salvage import Salvage
from provisioner.files.salvage import SalvageFile, is_salvage
from provisioner.files.sources import STDIN
from provisioner.redact import Scrubber
from provisioner.results.lock import lock_path
from provisioner.settings import RunSettings


def check_salvage_path(settings: RunSettings, jobs: Sequence[str]) -> None:
    """``--salvage`` must not overwrite the result log, its lock, the summary or a job
    file (one that is itself a salvage may be replaced: retrying in place), nor share
    stdout with another document.

    Raises:
        UsageError: naming what it would overwrite.
    """
    path = settings.salvage_path
    if not path:
        return
    if path == STDIO:
        _check_stdout(settings)
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"--salvage {path}: no such folder {folder}")
    guarded = {"the summary": settings.summary_path or STDIO}
    if not settings.is_stdout_results:
        guarded["the result log"] = settings.results_path
        guarded["the result log's lock"] = lock_path(settings.results_path)
    for what, other in guarded.items():
        if other != STDIO and same_file(path, other):
            raise UsageError(f"--salvage {path} would overwrite {what}")
    for job in jobs:
        # is_salvage reads the file: only the job file that is the salvage's.
        if job != STDIN and same_file(path, job) and not is_salvage(job):
            raise UsageError(f"--salvage {path} would overwrite job file {job}")


def _check_stdout(settings: RunSettings) -> None:
    """One document per stdout: the salvage, or the records, or the summary."""
    for flag, other in (
        ("--results", settings.results_path),
        ("--summary", settings.summary_path),
    ):
        if other == STDIO:
            raise UsageError(f"--salvage - and {flag} - would both write to stdout")


@contextlib.contextmanager
def salvaging(
    settings: RunSettings, *, run_id: str | None, scrub: Scrubber
) -> Iterator[Salvage | None]:
    """A salvage for the run (``None`` without ``--salvage``), published when it ends.

    It is published when the run returns, stopped by a signal or not; an error
    that ends the run leaves the old file as it was.
    """
    path = settings.salvage_path
    if not path:
        yield None
        return
    try:
        target = SalvageFile(path, run_id=run_id)
    except OSError as exc:
        raise UsageError(f"--salvage {path}: cannot write: {exc.strerror}") from exc
    try:
        yield Salvage(target, path=path)
    except BaseException:
        target.discard()
        raise
    try:
        target.commit()
    except OSError as exc:
        # The run is done and its log complete: say so, do not crash.
        say(f"warning: cannot write salvage {path}: {exc.strerror}", scrub)


__all__ = ["check_salvage_path", "salvaging"]
