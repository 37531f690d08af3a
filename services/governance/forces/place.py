"""The place check: every governed record carries its force, and one whose force is not its
place's (the force of the topic it is on, or of the deployment it belongs to) is refused.

A record's force is its ``force`` field (``schemas/lfr.common.v1.json#/$defs/force``); absent
means force ``default``, so a single-force installation's records are byte for byte what they
were. A deployment's ``force`` was free text before forces existed: a value that is no force id
is such a name, accepted on force default's topic only.

Refusal policy (``force_mismatch``): counted here (``lfr_force_mismatches_total``), dead-lettered
without payload (the record names another force's subjects or places, which must not be copied
into a topic the other force's readers see), and audited by services that hold an audit key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter

from services.common.errors import MessageError

from .naming import DEFAULT_FORCE, FORCE_ID_PATTERN, topic_force

#: schemas whose records carry a force (the governed records); others are not checked
GOVERNED_SCHEMAS = frozenset({"lfr.watchlist.v1", "lfr.deployments.v1", "lfr.alerts.v3", "lfr.adjudications.v3", "lfr.evidence.v1",
                              "lfr.counts.v2", "lfr.audit.v2"})
FORCE_MISMATCHES = Counter("lfr_force_mismatches_total", "Governed records refused because the force they carry is not their place's",
                           ["service", "topic", "place"])
_FORCE_ID = re.compile(FORCE_ID_PATTERN)


class ForceMismatch(MessageError):
    """A record of one force found in another force's place; dead-lettered without payload."""

    reason = "force_mismatch"

    def __init__(self, message: str, place: str = "topic") -> None:
        super().__init__(message)
        self.place = place


def record_force(data: Mapping[str, Any] | None) -> str:
    """The force a record names (``default`` when it names none)."""
    force = data.get("force") if isinstance(data, Mapping) else None
    return force if isinstance(force, str) and force else DEFAULT_FORCE


def is_legacy_name(force: str) -> bool:
    """A deployment's free-text force name from before forces (``Test Constabulary``): no force id."""
    return not _FORCE_ID.match(force)


def stamp(data: dict[str, Any], force: str) -> dict[str, Any]:
    """``data`` carrying ``force`` (left out for force default, whose records stay as they were)."""
    if force and force != DEFAULT_FORCE:
        data["force"] = force
    return data


def force_of_topic(topic: str) -> str:
    """The force whose records ``topic`` holds (``default`` outside the scheme): what a writer stamps."""
    return topic_force(topic) or DEFAULT_FORCE


def mismatch(topic: str, data: Mapping[str, Any] | None) -> str | None:
    """Why a record on ``topic`` does not belong there (None when it does, or the topic is
    outside the naming scheme, which the grant check keeps services from reading)."""
    place = topic_force(topic)
    if place is None:
        return None
    force = record_force(data)
    if force == place:
        return None
    if place == DEFAULT_FORCE and is_legacy_name(force):
        return None
    return f"a record of force {force!r} on force {place!r}'s topic {topic}"


def check_topic(topic: str, schema: str, data: Mapping[str, Any] | None, service: str) -> None:
    """ForceMismatch (counted) when a governed record on ``topic`` names another force."""
    if schema not in GOVERNED_SCHEMAS:
        return
    problem = mismatch(topic, data)
    if problem is not None:
        FORCE_MISMATCHES.labels(service, topic, "topic").inc()
        raise ForceMismatch(problem)


def check_deployment(data: Mapping[str, Any], deployment_force: str | None, topic: str, service: str) -> None:
    """ForceMismatch (counted) when a record names a force other than its deployment's."""
    owner = deployment_force or DEFAULT_FORCE
    if is_legacy_name(owner):
        owner = DEFAULT_FORCE
    force = record_force(data)
    if force != owner:
        FORCE_MISMATCHES.labels(service, topic, "deployment").inc()
        raise ForceMismatch(f"a record of force {force!r} for a deployment of force {owner!r}", place="deployment")
