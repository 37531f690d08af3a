"""A force's topics: topics.toml's specs renamed into the force's prefix, and the check that
`lfr topics apply` makes before creating anything (scheme, registered forces)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from services.common.topics import TopicSpec

from .naming import DEFAULT_FORCE, check_topic_name, force_topic, topic_force


def specs_for_force(specs: list[TopicSpec], force: str) -> list[TopicSpec]:
    """The force's own topics (platform-scoped ones are not per force)."""
    if force == DEFAULT_FORCE:
        return list(specs)
    return [replace(spec, name=force_topic(force, spec.name)) for spec in specs if not spec.platform]


def needs_registry(specs: list[TopicSpec]) -> bool:
    return any(topic_force(spec.name) != DEFAULT_FORCE for spec in specs)


def check_specs(specs: list[TopicSpec], forces: Collection[str], platform: Collection[str]) -> None:
    """NamingError for the first name outside the scheme or of a force not registered."""
    for spec in specs:
        check_topic_name(spec.name, forces, platform)
