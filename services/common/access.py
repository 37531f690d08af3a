"""The least-privilege table (services/common/access.toml): principals, their topics, groups and operations."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_FILE = Path(__file__).with_name("access.toml")
OPERATIONS = frozenset({"Read", "Write", "Create", "Delete", "Alter", "Describe", "DescribeConfigs", "AlterConfigs", "IdempotentWrite"})


@dataclass(frozen=True)
class Principal:
    name: str
    description: str
    topics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    topic_prefixes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def may(self, topic: str, operation: str) -> bool:
        if operation in self.topics.get(topic, ()):
            return True
        return any(topic.startswith(prefix) and operation in ops for prefix, ops in self.topic_prefixes.items())


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
        )
        for ops in (*principal.topics.values(), *principal.topic_prefixes.values(), *principal.groups.values()):
            unknown = set(ops) - OPERATIONS
            if unknown:
                raise ValueError(f"{path.name}: {name}: unknown operations {sorted(unknown)}")
        principals[name] = principal
    return principals
