"""A small evaluator of Strimzi KafkaUser ACLs, deciding as Kafka's StandardAuthorizer does
(simple authorization, no super users): a DENY that matches wins, else an ALLOW that matches
allows, else denied. A literal ACL matches its name or ``*``; a prefix ACL any name starting with
it. Read, Write, Delete and Alter imply Describe; AlterConfigs implies DescribeConfigs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

IMPLIES = {"Describe": {"Read", "Write", "Delete", "Alter"}, "DescribeConfigs": {"AlterConfigs"}}


def _matches(resource: dict[str, Any], kind: str, name: str | None) -> bool:
    if resource["type"] != kind:
        return False
    if kind == "cluster":
        return True
    pattern = resource.get("patternType", "literal")
    if pattern == "literal":
        return resource["name"] in (name, "*")
    if pattern == "prefix":
        return name is not None and name.startswith(resource["name"])
    raise ValueError(f"unknown patternType {pattern}")


class Authorizer:
    def __init__(self, kafka_users: Iterable[dict[str, Any]]) -> None:
        self.acls = {doc["metadata"]["name"]: doc["spec"]["authorization"]["acls"] for doc in kafka_users if doc["kind"] == "KafkaUser"}

    def allowed(self, user: str, kind: str, name: str | None, operation: str) -> bool:
        acls = [a for a in self.acls.get(user, []) if _matches(a["resource"], kind, name)]
        granting = {operation, "All"} | IMPLIES.get(operation, set())
        if any(a.get("type", "allow") == "deny" and ({operation, "All"} & set(a["operations"])) for a in acls):
            return False
        return any(a.get("type", "allow") == "allow" and granting & set(a["operations"]) for a in acls)
