"""The force record (schema lfr.forces.v1) and the registry every service reads: id, name,
data controller, console roles, and (bound later by key registration, issue #23) signing keys.

Force ``default`` is built in: an installation that registers no force is one force, named
``default``, on today's un-prefixed topics (services/governance/forces/naming.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from services.common.errors import LfrError

from .naming import DEFAULT_FORCE, check_force_id

SCHEMA = "lfr.forces.v1"
ROLES = ("operator", "supervisor", "auditor", "admin")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")

#: The forces of the national roll-out (issue #24): suggested ids for `lfr forces add --known`.
KNOWN_FORCES = {
    "gmp": "Greater Manchester Police",
    "wyp": "West Yorkshire Police",
    "beds": "Bedfordshire Police",
    "surrey": "Surrey Police",
    "sussex": "Sussex Police",
    "tvp": "Thames Valley Police",
    "hampshire": "Hampshire and Isle of Wight Constabulary",
}


class ForceRefused(LfrError, ValueError):
    """A force record that cannot be registered (exit 3: refused on purpose)."""

    exit_code = 3


def default_roles(force_id: str) -> dict[str, str]:
    """Console role -> the group that grants it inside the force: ``<force>:<role>``."""
    return {role: f"{force_id}:{role}" for role in ROLES}


@dataclass(frozen=True)
class Force:
    force_id: str
    name: str
    controller_email: str
    controller_name: str | None = None
    roles: Mapping[str, str] = field(default_factory=dict)
    keys: tuple[str, ...] = ()  # signing key ids; issue #23's key registration binds them
    revision: int = 0
    created_by: str = "lfr"
    created_at_ms: int = 0
    updated_at_ms: int = 0

    def to_data(self) -> dict[str, Any]:
        controller = {"email": self.controller_email}
        if self.controller_name:
            controller["name"] = self.controller_name
        return {
            "force_id": self.force_id, "revision": self.revision, "name": self.name, "controller": controller,
            "roles": dict(self.roles), "keys": list(self.keys), "created_by": self.created_by,
            "created_at_ms": self.created_at_ms, "updated_at_ms": self.updated_at_ms,
        }

    def summary(self) -> dict[str, Any]:
        """What `lfr forces list --json` prints for it (``id`` and ``name`` are stable keys)."""
        return {"id": self.force_id, "name": self.name, "controller": self.controller_email, "keys": len(self.keys),
                "builtin": self.force_id == DEFAULT_FORCE and self.revision == 0 and self.created_by == "lfr"}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Force:
        controller = data["controller"]
        return cls(data["force_id"], data["name"], controller["email"], controller.get("name"), dict(data["roles"]),
                   tuple(data["keys"]), data["revision"], data["created_by"], data["created_at_ms"], data["updated_at_ms"])


DEFAULT = Force(DEFAULT_FORCE, "Default force (this installation before forces)", "dpo@invalid.example",
                roles=default_roles(DEFAULT_FORCE))


def new_force(force_id: str, name: str | None, controller_email: str, *, controller_name: str | None = None,
              roles: Mapping[str, str] | None = None, actor: str, now_ms: int, platform_topics: Iterable[str] = ()) -> Force:
    """A force to register, checked; ForceRefused (or NamingError for the id) names each problem."""
    check_force_id(force_id, tuple(platform_topics))
    name = name or KNOWN_FORCES.get(force_id)
    problems = []
    if not name or not name.strip() or len(name) > 256:
        problems.append("--name: 1-256 characters (required unless the id is one of " + ", ".join(KNOWN_FORCES) + ")")
    if not _EMAIL.match(controller_email or ""):
        problems.append(f"--controller {controller_email!r}: the data controller's contact, an email address")
    unknown = set(roles or {}) - set(ROLES)
    if unknown:
        problems.append(f"--role: unknown roles {sorted(unknown)} (known: {', '.join(ROLES)})")
    if problems:
        raise ForceRefused("; ".join(problems))
    return Force(force_id, name.strip(), controller_email, controller_name, {**default_roles(force_id), **(roles or {})},
                 (), 0, actor, now_ms, now_ms)


def revise(current: Force, *, name: str | None = None, controller_email: str | None = None, controller_name: str | None = None,
           roles: Mapping[str, str] | None = None, now_ms: int) -> Force:
    """The next revision of a registered force (its id, keys and creator never change here)."""
    return replace(current, name=name or current.name, controller_email=controller_email or current.controller_email,
                   controller_name=controller_name or current.controller_name, roles={**current.roles, **(roles or {})},
                   revision=current.revision + 1, updated_at_ms=now_ms)


class ForceRegistry:
    """The registered forces (``default`` always among them), from the records of lfr.forces.v1."""

    def __init__(self, forces: Iterable[Force] = ()) -> None:
        self._forces = {DEFAULT_FORCE: DEFAULT}
        for force in forces:
            self._forces[force.force_id] = force

    def __contains__(self, force_id: object) -> bool:
        return force_id in self._forces

    def __iter__(self):
        return iter(sorted(self._forces.values(), key=lambda f: (f.force_id != DEFAULT_FORCE, f.force_id)))

    def ids(self) -> frozenset[str]:
        return frozenset(self._forces)

    def get(self, force_id: str) -> Force | None:
        return self._forces.get(force_id)

    def require(self, force_id: str) -> Force:
        """The force, or LfrError naming it as unregistered (the tenant check every caller makes)."""
        force = self._forces.get(force_id)
        if force is None:
            raise ForceRefused(f"force {force_id!r} is not registered (lfr forces list; lfr forces add)")
        return force
