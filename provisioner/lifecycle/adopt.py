"""Import: bring environments that exist already under provisioner's result log.

As ``terraform import`` (or Crossplane's observe-only resources) does: each spec
of the job files is matched by name against one walk of the list endpoint, and
gets one :class:`Adoption`:

* ``import``: an environment has its name; it is recorded ``exists`` (with the
  ``drift`` that ``run`` would record), so ``plan``, ``run --update`` and
  ``archive``/``delete --include-existing`` take it over;
* ``recorded``: the result log already settles the spec (``created``,
  ``updated`` or ``exists`` for this API and this spec key): nothing is written;
* ``missing``: no environment has its name: nothing is written (``run``
  creates it);
* ``archived``: the environment with its name is archived: skipped, unless
  archived ones are included (then ``import``, its record ``archived``).

Everything here is pure: the command (``cli/adopt.py``) does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from provisioner.core.drift import drift
from provisioner.core.lookup import is_archived
from provisioner.redact import printable
from provisioner.results import SUCCESS, Result
from provisioner.spec import Spec

AdoptAction = Literal["import", "recorded", "missing", "archived"]
ADOPT_ACTIONS: tuple[AdoptAction, ...] = ("import", "recorded", "missing", "archived")
_SIGNS: dict[AdoptAction, str] = {
    "import": "+",
    "recorded": "=",
    "missing": "-",
    "archived": "!",
}
_NOTES: dict[AdoptAction, str] = {
    "recorded": "already in the result log",
    "missing": "no environment has this name: run creates it",
    "archived": "archived: skipped (--include-archived records it)",
}


@dataclass(frozen=True, slots=True)
class Adoption:
    """What ``import`` does with one spec.

    ``id`` is the environment's (null for ``missing``); ``drift`` the dotted
    paths where it differs from the spec; ``archived`` whether it is archived.
    """

    name: str
    action: AdoptAction
    source: str
    key: str
    id: str | None = None
    drift: tuple[str, ...] = ()
    archived: bool = False

    @property
    def is_written(self) -> bool:
        """Whether a record is written for it."""
        return self.action == "import"

    def to_dict(self) -> dict[str, Any]:
        """The spec's line as ``import --format json`` writes it."""
        return {
            "name": self.name,
            "action": self.action,
            "id": self.id,
            "drift": list(self.drift),
            "archived": self.archived,
            "source": self.source,
        }


def is_settled(last: tuple[str, object] | None, key: str) -> bool:
    """Whether a log's last record of a name (status, spec key) settles the spec ``key``.

    As resume decides: ``created``, ``updated`` or ``exists`` with the same key.
    """
    return last is not None and last[0] in SUCCESS and last[1] == key


def adopt(
    spec: Spec,
    environment: Mapping[str, Any] | None,
    *,
    last: tuple[str, object] | None = None,
    include_archived: bool = False,
) -> Adoption:
    """What to do with ``spec``, given the environment named as it (if any) and the
    last record of its name in the result log (``last``: status and spec key)."""
    if is_settled(last, spec.key):
        action: AdoptAction = "recorded"
        return Adoption(spec.name, action, spec.location, spec.key)
    if environment is None:
        return Adoption(spec.name, "missing", spec.location, spec.key)
    env_id = str(environment.get("id"))
    paths = tuple(drift(spec.body, environment))
    archived = is_archived(environment)
    action = "archived" if archived and not include_archived else "import"
    return Adoption(spec.name, action, spec.location, spec.key, env_id, paths, archived)


def record(
    adoption: Adoption,
    *,
    target: str,
    at: datetime,
    created_earlier: bool = False,
    run_id: str | None = None,
) -> Result:
    """The ``exists`` record of an imported environment, as ``run`` would write it.

    No create was sent (``attempts`` 0, no HTTP status); ``started_at`` and
    ``finished_at`` are both ``at``, the moment the list was read.
    """
    return Result(
        name=adoption.name,
        status="exists",
        id=adoption.id,
        attempts=0,
        http_status=None,
        error=None,
        source=adoption.source,
        started_at=at,
        finished_at=at,
        spec_key=adoption.key,
        target=target,
        drift=adoption.drift,
        archived=adoption.archived,
        created_earlier=created_earlier,
        run_id=run_id,
    )


@dataclass(slots=True)
class AdoptCounts:
    """How many specs got each action, and how many imported ones drifted."""

    imported: int = 0
    recorded: int = 0
    missing: int = 0
    archived: int = 0
    drifted: int = 0

    def add(self, adoption: Adoption) -> None:
        """Count one spec."""
        if adoption.action == "import":
            self.imported += 1
            self.drifted += bool(adoption.drift)
        else:
            setattr(self, adoption.action, getattr(self, adoption.action) + 1)

    @property
    def total(self) -> int:
        """Specs read."""
        return self.imported + self.recorded + self.missing + self.archived

    def to_dict(self) -> dict[str, int]:
        """The counts, as ``import --format json`` writes them."""
        return {
            "import": self.imported,
            "recorded": self.recorded,
            "missing": self.missing,
            "archived": self.archived,
            "drifted": self.drifted,
        }


def render(adoption: Adoption) -> str:
    """One line of the text output: sign, action, name, id, source, then drift or a note."""
    text = f"{_SIGNS[adoption.action]} {adoption.action:<8} {printable(adoption.name)}"
    text += f"  {adoption.id or '-'}  {printable(adoption.source)}"
    if adoption.drift:
        text += "  drift: " + ", ".join(printable(path) for path in adoption.drift)
    if adoption.action in _NOTES:
        text += f"  ({_NOTES[adoption.action]})"
    elif adoption.archived:
        text += "  (archived)"
    return text


def render_totals(counts: AdoptCounts, *, into: str) -> list[str]:
    """The closing lines of the text output."""
    lines = [
        f"Import: {counts.imported} recorded as exists in {printable(into)} "
        f"({counts.drifted} drifted), {counts.recorded} already there, "
        f"{counts.missing} without an environment, {counts.archived} archived skipped "
        f"({counts.total} specs)."
    ]
    if counts.drifted:
        lines.append("run --update converges the drifted environments in place.")
    if counts.missing:
        lines.append("run creates the specs without an environment.")
    return lines


__all__ = [
    "ADOPT_ACTIONS",
    "AdoptAction",
    "AdoptCounts",
    "Adoption",
    "adopt",
    "is_settled",
    "record",
    "render",
    "render_totals",
]
