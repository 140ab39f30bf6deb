"""Environments, per token: create, read, update, archive, delete, list; and snapshots.

Every Environment carries ``status``: ``"ready"``, then ``"archived"`` once archived
(the seed's response example and field table; the newest docs drop it for ``archived_at``,
which is kept too).

Each token sees its own environments (the scope key is a hash of the token, so a state
file never holds a token). Ids are kept in a sorted list so a page is a bisect away.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from provisioner.emulator.errors import conflict, invalid, not_found
from provisioner.emulator.ids import IdGenerator, clock
from provisioner.emulator.pagination import ListQuery, paginate
from provisioner.emulator.validation import apply_metadata

Env = dict[str, Any]
READY, ARCHIVED = "ready", "archived"


@dataclass(slots=True)
class Scope:
    """One token's environments."""

    ids: list[str] = field(default_factory=list)  # ascending
    envs: dict[str, Env] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # name -> id
    references: dict[str, int] = field(default_factory=dict)  # id -> sessions


class Store:
    """All environments, with the name index and the committed-creation counter."""

    def __init__(self, *, unique_names: bool) -> None:
        self.unique_names = unique_names
        self.creation_counts: Counter[str] = Counter()
        self.dirty = False
        self._scopes: dict[str, Scope] = {}
        self._ids = IdGenerator()

    def _scope(self, key: str) -> Scope:
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = Scope()
        return scope

    def create(self, key: str, fields: dict[str, Any]) -> Env:
        """Store a new environment from checked ``fields``; 409 on a duplicate name."""
        scope = self._scope(key)
        name: str = fields["name"]
        self._check_name_free(scope, name)
        stamp, unix_ms = clock()
        env_id = self._ids.next_id(unix_ms)
        # The seed's field order: id, type, name, description, status, config, ...
        env: Env = {"id": env_id, "type": "environment", "name": name}
        env.update(description=fields["description"], status=READY)
        env.update(fields)  # keys already present keep their place
        env.update(archived_at=None, created_at=stamp, updated_at=stamp)
        scope.envs[env_id] = env
        if not scope.ids or env_id > scope.ids[-1]:
            scope.ids.append(env_id)
        else:
            insort(scope.ids, env_id)
        scope.names[name] = env_id
        self.creation_counts[name] += 1
        self.dirty = True
        return env

    def get(self, key: str, env_id: str) -> Env:
        """The environment ``env_id``, or 404."""
        scope = self._scopes.get(key)
        env = None if scope is None else scope.envs.get(env_id)
        if env is None:
            raise not_found(env_id)
        return env

    def update(self, key: str, env_id: str, patch: dict[str, Any]) -> Env:
        """Apply a checked update; 404 unknown, 409 archived or duplicate name."""
        env = self.get(key, env_id)
        if env["archived_at"] is not None:
            raise conflict(f"Environment {env_id} is archived and cannot be updated")
        changes = dict(patch)
        if "metadata" in changes:
            changes["metadata"] = apply_metadata(env["metadata"], changes["metadata"])
        scope = self._scopes[key]
        new_name = str(changes["name"] if "name" in changes else env["name"])
        if new_name != env["name"]:
            self._check_name_free(scope, new_name)
            if scope.names.get(env["name"]) == env_id:
                del scope.names[env["name"]]
            scope.names[new_name] = env_id
        env.update(changes)
        env["updated_at"] = clock()[0]
        self.dirty = True
        return env

    def archive(self, key: str, env_id: str) -> Env:
        """Set ``archived_at``; 409 when it is already archived."""
        env = self.get(key, env_id)
        if env["archived_at"] is not None:
            raise conflict(f"Environment {env_id} is already archived")
        stamp = clock()[0]
        env.update(status=ARCHIVED, archived_at=stamp, updated_at=stamp)
        self.dirty = True
        return env

    def delete(self, key: str, env_id: str) -> dict[str, str]:
        """Remove it; 409 while sessions reference it."""
        env = self.get(key, env_id)
        scope = self._scopes[key]
        sessions = scope.references.get(env_id, 0)
        if sessions:
            raise conflict(
                f"Environment {env_id} is referenced by {sessions} session(s) and cannot "
                "be deleted; archive it instead"
            )
        del scope.envs[env_id]
        del scope.ids[bisect_left(scope.ids, env_id)]
        if scope.names.get(env["name"]) == env_id:
            del scope.names[env["name"]]
        self.dirty = True
        return {"id": env_id, "type": "environment_deleted"}

    def set_references(self, key: str, env_id: str, count: int) -> Env:
        """Mark ``env_id`` as used by ``count`` sessions (0 frees it for delete)."""
        env = self.get(key, env_id)
        if count:
            self._scopes[key].references[env_id] = count
        else:
            self._scopes[key].references.pop(env_id, None)
        self.dirty = True
        return env

    def list_page(self, key: str, query: ListQuery) -> dict[str, Any]:
        """One page of this token's environments, newest first."""
        scope = self._scope(key)
        return paginate(scope.ids, scope.envs, query)

    def all_environments(self) -> list[Env]:
        """Every stored environment of every token, oldest first."""
        # list() copies each dict in one step, so a reader in another thread is safe
        scopes = list(self._scopes.values())
        envs = [env for scope in scopes for env in list(scope.envs.values())]
        return sorted(envs, key=lambda env: str(env["id"]))

    def clear(self) -> None:
        """Forget every environment (the creation counter too)."""
        self._scopes.clear()
        self.creation_counts.clear()
        self.dirty = True

    def _check_name_free(self, scope: Scope, name: str) -> None:
        if not self.unique_names:
            return
        existing = scope.names.get(name)
        if existing is not None and existing in scope.envs:
            raise conflict(
                f"An environment with name '{name}' already exists ({existing})", "name"
            )

    def snapshot(self) -> dict[str, Any]:
        """The whole store as JSON-ready data."""
        scopes = {
            key: {
                "environments": [scope.envs[env_id] for env_id in scope.ids],
                "references": scope.references,
            }
            for key, scope in self._scopes.items()
        }
        return {"scopes": scopes, "creation_counts": dict(self.creation_counts)}

    def restore(self, data: dict[str, Any]) -> None:
        """Load a ``snapshot``; raises ``ValueError`` when it does not fit."""
        try:
            for key, saved in data["scopes"].items():
                scope = self._scope(key)
                for env in saved["environments"]:
                    self._load(scope, env)
                scope.references.update(saved["references"])
            self.creation_counts.update(data["creation_counts"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"unexpected state data: {exc!r}") from exc

    def _load(self, scope: Scope, env: Env) -> None:
        env_id = env["id"]
        # State files written before ``status`` existed
        env.setdefault("status", READY if env["archived_at"] is None else ARCHIVED)
        scope.envs[env_id] = env
        insort(scope.ids, env_id)
        scope.names.setdefault(env["name"], env_id)
        self._ids.observe(env_id)


def check_reference_count(value: object) -> int:
    """The ``count`` of the admin references route: an integer >= 0, or 400."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid("count", f"expected an integer >= 0, got {value!r}")
    return value
