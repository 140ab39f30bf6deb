"""The progress bar: drawn on a terminal with the counts by status, silent elsewhere."""

from __future__ import annotations

import io

from provisioner.progress import ProgressBar
from tests.test_results import result


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_bar_shows_the_counts_by_status_on_a_terminal() -> None:
    """On a terminal the bar draws done/total and created=N failed=N."""
    screen = _Terminal()
    with ProgressBar(total=3, stream=screen, enabled=True) as bar:
        for status in ("created", "failed", "created"):
            bar.advance(result(status, status))
        bar._progress.refresh()  # draw now instead of at the next tick
    drawn = screen.getvalue()
    assert "3/3" in drawn
    assert "created=2 failed=1" in drawn


def test_off_a_terminal_or_disabled_the_bar_writes_nothing() -> None:
    """A pipe or --no-progress gets no bar and no control characters."""
    for stream, enabled in ((io.StringIO(), True), (_Terminal(), False)):
        with ProgressBar(total=2, stream=stream, enabled=enabled) as bar:
            bar.advance(result("a"))
            bar.advance(result("b"))
        assert stream.getvalue() == ""
