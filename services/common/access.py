"""The least-privilege table (services/common/access.toml): principals, their topics, groups and operations.

Force ``default``'s principals are the rows as written; every other force's are derived from the
same rows (services/governance/forces/naming.py). The one source of the Strimzi KafkaUsers (k8s/, the
chart) and of each service's start-up check (services/governance/forces/grants.py)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_FILE = Path(__file__).with_name("access.toml")
OPERATIONS = frozenset({"Read", "Write", "Create", "Delete", "Alter", "Describe", "DescribeConfigs", "AlterConfigs", "IdempotentWrite"})
SCOPES = ("force", "platform")
#: what a force's principal may do on a platform-wide topic (the force registry): read it, never write it
PLATFORM_TOPIC_OPS_FOR_FORCES = ("Describe", "Read")


@dataclass(frozen=True)
class Principal:
    name: str
    description: str
    topics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    topic_prefixes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    scope: str = "force"  # force: one per force (force default: the rows as written); platform: one for all
    force: str | None = None  # the force this principal is of (None: the rows as written)
    group_prefixes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def user(self) -> str:
        """The KafkaUser (and SASL user name): openlfr-<principal> or openlfr-<force>-<principal>."""
        return f"openlfr-{self.name}"

    def may(self, topic: str, operation: str) -> bool:
        if operation in self.topics.get(topic, ()):
            return True
        return any(topic.startswith(prefix) and operation in ops for prefix, ops in self.topic_prefixes.items())

    def may_group(self, group: str, operation: str = "Read") -> bool:
        if operation in self.groups.get(group, ()):
            return True
        return any(group.startswith(prefix) and operation in ops for prefix, ops in self.group_prefixes.items())

    def for_force(self, force: str, platform_topics: Iterable[str] = (), *, template: bool = False) -> Principal:
        """This row for ``force``: every topic of the row as a prefix grant on its family under
        ``lfr.<force>.`` (all versions of that topic, nothing of another force), groups and
        internal-topic prefixes moved likewise; platform-wide topics read-only. ``template``:
        ``force`` is the chart's ``{force}`` placeholder, not an id."""
        from services.governance.forces.naming import DEFAULT_FORCE, check_force_id, family_prefix, rename  # noqa: PLC0415

        if self.scope != "force":
            raise ValueError(f"principal {self.name} is platform-wide, not per force")
        if force == DEFAULT_FORCE:
            return self
        if not template:
            check_force_id(force)
        platform = set(platform_topics)
        literal = {t: tuple(op for op in ops if op in PLATFORM_TOPIC_OPS_FOR_FORCES) for t, ops in self.topics.items() if t in platform}
        prefixes = {family_prefix(force, t): ops for t, ops in self.topics.items() if t not in platform}
        prefixes.update({rename(force, p): ops for p, ops in self.topic_prefixes.items()})
        return Principal(f"{force}-{self.name}", f"force {force}: {self.description}", {t: ops for t, ops in literal.items() if ops},
                         prefixes, {rename(force, g): ops for g, ops in self.groups.items()}, "force", force,
                         {rename(force, g): ops for g, ops in self.group_prefixes.items()})

    def strimzi_acls(self) -> list[dict[str, Any]]:
        """The ACLs of this principal's Strimzi KafkaUser (simple authorization, allow only)."""
        acls = [{"resource": {"type": "topic", "name": t, "patternType": "literal"}, "operations": list(ops)}
                for t, ops in sorted(self.topics.items())]
        acls += [{"resource": {"type": "topic", "name": p, "patternType": "prefix"}, "operations": list(ops)}
                 for p, ops in sorted(self.topic_prefixes.items())]
        acls += [{"resource": {"type": "group", "name": g, "patternType": "literal"}, "operations": list(ops)}
                 for g, ops in sorted(self.groups.items())]
        acls += [{"resource": {"type": "group", "name": g, "patternType": "prefix"}, "operations": list(ops)}
                 for g, ops in sorted(self.group_prefixes.items())]
        if any("Write" in ops for ops in (*self.topics.values(), *self.topic_prefixes.values())):
            acls.append({"resource": {"type": "cluster"}, "operations": ["IdempotentWrite"]})  # idempotent producers
        return acls


def load_access(path: Path = ACCESS_FILE) -> dict[str, Principal]:
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    principals = {}
    for name, spec in document["principals"].items():
        principal = Principal(
            name,
            spec["description"],
            {t: tuple(ops) for t, ops in spec.get("topics", {}).items()},
            {p: tuple(ops) for p, ops in spec.get("topic_prefixes", {}).items()},
            {g: tuple(ops) for g, ops in spec.get("groups", {}).items()},
            spec.get("scope", "force"),
        )
        if principal.scope not in SCOPES:
            raise ValueError(f"{path.name}: {name}: scope must be one of {SCOPES}")
        for ops in (*principal.topics.values(), *principal.topic_prefixes.values(), *principal.groups.values()):
            unknown = set(ops) - OPERATIONS
            if unknown:
                raise ValueError(f"{path.name}: {name}: unknown operations {sorted(unknown)}")
        principals[name] = principal
    return principals


def principals_for(forces: Iterable[str], access: Mapping[str, Principal] | None = None,
                   platform_topics: Iterable[str] | None = None) -> dict[str, Principal]:
    """Every principal of a platform serving ``forces``: the platform-wide rows once, the per-force
    rows once per force (force ``default`` keeps the names as written), keyed by principal name."""
    access = load_access() if access is None else access
    if platform_topics is None:
        from .topics import load_topic_specs  # noqa: PLC0415

        platform_topics = [spec.name for spec in load_topic_specs() if spec.platform]
    platform_topics = list(platform_topics)
    found = {name: p for name, p in access.items() if p.scope == "platform"}
    for force in dict.fromkeys(forces):
        for principal in access.values():
            if principal.scope == "force":
                tenant = principal.for_force(force, platform_topics)
                found[tenant.name] = tenant
    return found


def service_principal(service: str, force: str, access: Mapping[str, Principal] | None = None) -> Principal | None:
    """The principal service ``service`` of ``force`` runs as (None: not in the table)."""
    access = load_access() if access is None else access
    row = access.get(service)
    if row is None:
        return None
    return principals_for([force], {service: row})[row.name if force == "default" else f"{force}-{row.name}"]
