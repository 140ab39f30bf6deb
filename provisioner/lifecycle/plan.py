"""The plan: what ``run`` would do to each spec, decided from what the API holds.

Each valid spec is matched by name against one walk of the list endpoint
(archived environments included) and gets one :class:`Change`:

* ``create``: no environment has its name;
* ``update``: one does, with another description, config or metadata
  (:func:`provisioner.core.drift.drift` names the fields): ``run --update`` updates
  it in place, ``run`` alone records it ``exists`` with that ``drift``;
* ``unchanged``: one does, and it matches the spec;
* ``conflict``: one does, and ``run`` cannot make it match (it is archived:
  the API refuses to update it, and its name stays taken).

Everything here is pure: the command (``cli/plan.py``) does the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

from provisioner.core.drift import drift
from provisioner.core.lookup import is_archived
from provisioner.redact import printable
from provisioner.spec import Spec

Action = Literal["create", "update", "unchanged", "conflict"]
ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged", "conflict")
_SIGNS: dict[Action, str] = {
    "create": "+",
    "update": "~",
    "unchanged": "=",
    "conflict": "!",
}
ARCHIVED_REASON = (
    "archived: an archived environment keeps its name, "
    "so run can neither create nor update it"
)
#: The version of ``plan --format json``'s document (new fields may be added).
FORMAT_VERSION = 1


class PlanExit(IntEnum):
    """What ``provisioner plan`` exits with (docs/exit-codes.md lists each).

    ``CHANGES`` only with ``--detailed-exitcode``, as ``terraform plan``; a usage
    error (bad flags, no token) exits 2 too, but prints no plan.
    """

    OK = 0  # planned; with --detailed-exitcode: and nothing to change
    ERROR = 1  # invalid or unreadable job files, the list could not be read, a conflict
    CHANGES = 2  # with --detailed-exitcode: a spec would be created or updated


@dataclass(frozen=True, slots=True)
class Change:
    """What ``run`` would do to one spec.

    ``id`` is the existing environment's (null for ``create``); ``drift`` the
    dotted paths that differ (``update``, and a ``conflict`` that also drifted);
    ``reason`` why a ``conflict`` cannot be fixed.
    """

    name: str
    action: Action
    source: str
    id: str | None = None
    drift: tuple[str, ...] = ()
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The change as ``plan --format json`` writes it."""
        return {
            "name": self.name,
            "action": self.action,
            "id": self.id,
            "drift": list(self.drift),
            "reason": self.reason,
            "source": self.source,
        }


def classify(spec: Spec, environment: Mapping[str, Any] | None) -> Change:
    """The change that brings ``environment`` (the one named as ``spec``, if any) to ``spec``."""
    if environment is None:
        return Change(spec.name, "create", spec.location)
    env_id = str(environment.get("id"))
    paths = tuple(drift(spec.body, environment))
    if is_archived(environment):
        return Change(
            spec.name, "conflict", spec.location, env_id, paths, ARCHIVED_REASON
        )
    action: Action = "update" if paths else "unchanged"
    return Change(spec.name, action, spec.location, env_id, paths)


@dataclass(slots=True)
class PlanCounts:
    """How many specs get each action."""

    create: int = 0
    update: int = 0
    unchanged: int = 0
    conflict: int = 0

    def add(self, change: Change) -> None:
        """Count one spec's change."""
        setattr(self, change.action, getattr(self, change.action) + 1)

    @property
    def total(self) -> int:
        """Specs planned."""
        return self.create + self.update + self.unchanged + self.conflict

    @property
    def has_changes(self) -> bool:
        """Whether ``run`` (with ``--update``) would send a write."""
        return bool(self.create or self.update)

    def to_dict(self) -> dict[str, int]:
        """The counts by action, as ``plan --format json`` writes them."""
        return {action: getattr(self, action) for action in ACTIONS}


def plan_exit(counts: PlanCounts, *, detailed: bool) -> PlanExit:
    """The exit code of a finished plan (a conflict is an error: run cannot converge)."""
    if counts.conflict:
        return PlanExit.ERROR
    if detailed and counts.has_changes:
        return PlanExit.CHANGES
    return PlanExit.OK


def render(change: Change) -> str:
    """One line of the text plan: sign, action, name, id, source, then what differs."""
    text = f"{_SIGNS[change.action]} {change.action:<9} {printable(change.name)}"
    text += f"  {change.id or '-'}  {printable(change.source)}"
    if change.drift:
        text += "  " + ", ".join(printable(path) for path in change.drift)
    if change.reason:
        text += f"  ({change.reason})"
    return text


def render_totals(counts: PlanCounts) -> list[str]:
    """The closing lines of the text plan."""
    lines = [
        f"Plan: {counts.create} to create, {counts.update} to update, "
        f"{counts.unchanged} unchanged, {counts.conflict} conflicts "
        f"({counts.total} specs)."
    ]
    if counts.update:
        lines.append(
            "run --update updates the drifted environments in place; "
            "run alone creates and only reports the drift."
        )
    if not counts.has_changes and not counts.conflict:
        lines.append("No changes: every environment matches its spec.")
    return lines


__all__ = [
    "ACTIONS",
    "ARCHIVED_REASON",
    "FORMAT_VERSION",
    "Action",
    "Change",
    "PlanCounts",
    "PlanExit",
    "classify",
    "plan_exit",
    "render",
    "render_totals",
]
