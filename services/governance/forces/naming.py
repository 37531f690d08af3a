"""Force ids and the per-force topic naming scheme, one place for every service and tool.

Scheme (hierarchical names, the Kafka multi-tenancy pattern of KIP-290):

    lfr.<name>.v<N>            governed topic of the platform, or of force ``default``
    lfr-<app>-<rest>           internal topic of force ``default`` (faust changelogs)
    lfr.<force>.<name>.v<N>    governed topic of force <force>
    lfr.<force>.<app>-<rest>   internal topic of force <force>

Every name a force owns starts with ``lfr.<force>.``, so one prefix ACL covers it, and the dot
that ends the prefix means no force's prefix is a prefix of another force's. A force id may not
equal a platform topic's name segment (``frames``, ``forces``, ...): ``lfr.frames.`` would
otherwise cover ``lfr.frames.v1``. Force ``default`` keeps today's un-prefixed names.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from services.common.errors import LfrError

DEFAULT_FORCE = "default"
#: 2-32 characters: lowercase letters, digits and single hyphens, a letter first, no hyphen last.
FORCE_ID_PATTERN = r"^[a-z](?:-?[a-z0-9]){1,31}$"
_FORCE_ID = re.compile(FORCE_ID_PATTERN)
#: names that mean something else where a force id goes
RESERVED_IDS = frozenset({"lfr", "platform", "national", "all", "none", "any"})

_GOVERNED = re.compile(r"^lfr\.(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)$")
_FORCE_GOVERNED = re.compile(r"^lfr\.(?P<force>[a-z0-9-]+)\.(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)$")
_INTERNAL = re.compile(r"^lfr-(?P<app>[a-z][a-z0-9]*)-[a-z0-9][a-z0-9._-]*$")
_FORCE_INTERNAL = re.compile(r"^lfr\.(?P<force>[a-z0-9-]+)\.(?P<app>[a-z][a-z0-9]*)-[a-z0-9][a-z0-9._-]*$")


class NamingError(LfrError, ValueError):
    """A force id or topic name outside the scheme (a usage error: exit 2)."""

    exit_code = 2


def platform_names(topic_names: Collection[str]) -> frozenset[str]:
    """The name segments of the platform's un-prefixed topics (``lfr.frames.v1`` -> ``frames``)."""
    return frozenset(m["name"] for m in map(_GOVERNED.match, topic_names) if m)


def check_force_id(force: str, topic_names: Collection[str] = ()) -> str:
    """``force`` if it is usable as a topic prefix; else NamingError naming the rule it breaks."""
    if not isinstance(force, str) or len(force) > 32 or not _FORCE_ID.match(force):
        raise NamingError(f"force id {force!r}: use 2-32 lowercase letters, digits and single hyphens, "
                          "starting with a letter and not ending with a hyphen (it becomes the topic prefix lfr.<id>.)")
    if force in RESERVED_IDS:
        raise NamingError(f"force id {force!r} is reserved")
    if force in platform_names(topic_names):
        raise NamingError(f"force id {force!r} is the name of a platform topic (lfr.{force}.v<N>): its prefix would cover it")
    return force


def force_topic(force: str, name: str) -> str:
    """The name of topic ``name`` (as topics.toml spells it) for ``force``."""
    if force == DEFAULT_FORCE:
        return name
    return rename(check_force_id(force), name)


def rename(force: str, name: str) -> str:
    """``name`` moved under ``lfr.<force>.`` without checking the id (the chart's ``{force}`` templates)."""
    if name.startswith("lfr."):
        return f"lfr.{force}.{name.removeprefix('lfr.')}"
    if name.startswith("lfr-"):
        return f"lfr.{force}.{name.removeprefix('lfr-')}"
    raise NamingError(f"topic {name!r} is outside the naming scheme (lfr.<name>.v<N> or lfr-<app>-...)")


def force_group(force: str, group: str) -> str:
    """The consumer group ``group`` (``lfr-detect``) of ``force``: ``lfr.<force>.detect``."""
    return force_topic(force, group)


def family_prefix(force: str, name: str) -> str:
    """The prefix covering every version of topic ``name`` for the force: ``lfr.<force>.alerts.``
    for ``lfr.alerts.v3`` (a new version needs no new grant; another force's never matches)."""
    renamed = rename(force, name)
    match = re.match(r"^(?P<family>.+\.)v[1-9][0-9]*$", renamed)
    if not match:
        raise NamingError(f"topic {name!r} has no version suffix .v<N>")
    return match["family"]


def force_prefix(force: str) -> str:
    """What every topic and group of a (non-default) force starts with."""
    return f"lfr.{check_force_id(force)}."


def topic_force(name: str) -> str | None:
    """The force a topic name belongs to: ``default`` for the un-prefixed forms, None outside the scheme."""
    if _GOVERNED.match(name) or _INTERNAL.match(name):
        return DEFAULT_FORCE
    match = _FORCE_GOVERNED.match(name) or _FORCE_INTERNAL.match(name)
    if match and len(match["force"]) <= 32 and _FORCE_ID.match(match["force"]) and match["force"] not in RESERVED_IDS:
        return match["force"]
    return None


def name_owner(name: str) -> str | None:
    """The force a topic or group name belongs to, as a prefix ACL sees it: anything under
    ``lfr.<force>.`` is that force's (consumer groups ``lfr.<force>.detect`` included)."""
    force = topic_force(name)
    if force is not None:
        return force
    match = re.match(r"^lfr\.([a-z0-9-]+)\.", name)
    if match and len(match[1]) <= 32 and _FORCE_ID.match(match[1]) and match[1] not in RESERVED_IDS:
        return match[1]
    return None


def check_topic_name(name: str, forces: Collection[str] | None = None, platform: Collection[str] = ()) -> str:
    """``name`` if it fits the scheme (and, when ``forces`` is given, names a registered force);
    else NamingError. ``platform``: the platform's topic names, whose segments no force may use."""
    force = topic_force(name)
    if force is None:
        raise NamingError(f"topic {name!r} is outside the naming scheme: lfr.<name>.v<N>, lfr-<app>-<rest>, "
                          "lfr.<force>.<name>.v<N> or lfr.<force>.<app>-<rest>")
    if force == DEFAULT_FORCE:
        governed = _GOVERNED.match(name)
        if governed and forces is not None and governed["name"] in forces:
            raise NamingError(f"topic {name!r}: {governed['name']!r} is a force id, so lfr.{governed['name']}. is that force's prefix")
        return name
    check_force_id(force, platform)
    if forces is not None and force not in forces:
        raise NamingError(f"topic {name!r} belongs to force {force!r}, which is not registered (lfr forces add)")
    return name
