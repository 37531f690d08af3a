"""The start-up check every service makes: each topic and group its settings name is one its
principal (services/common/access.toml, for its force) holds a grant on; else it refuses to start.

The broker enforces the same table through the generated KafkaUsers on a real cluster; the
embedded broker (Tansu) enforces no ACL at all, so this check is what holds there.
"""

from __future__ import annotations

import logging

from services.common.access import Principal, service_principal
from services.common.errors import SettingsError

from .naming import DEFAULT_FORCE, name_owner

logger = logging.getLogger(__name__)
#: services with no row in access.toml: a development tool, run by hand, never deployed by the chart
NO_PRINCIPAL = frozenset({"passthrough"})


def topic_fields(settings: object) -> dict[str, str]:
    """Settings field -> the topic it names (every ``*_topic`` field)."""
    fields = type(settings).model_fields
    return {name: getattr(settings, name) for name in fields if name.endswith("_topic") and getattr(settings, name)}


def refusals(principal: Principal, settings: object) -> list[str]:
    """One line per topic or group of ``settings`` that ``principal`` holds no grant on.

    Force ``default`` (today's single-force installations, the tests and the demo, which name
    topics of their own) is refused only another force's names; every other force is held to
    its grants exactly."""
    def outside(name: str, granted: bool) -> bool:
        if principal.force is None:  # force default: the rows as written
            return name_owner(name) not in (DEFAULT_FORCE, None)
        return not granted

    problems = [f"LFR_{name.upper()}={topic}" for name, topic in sorted(topic_fields(settings).items())
                if outside(topic, principal.may(topic, "Read") or principal.may(topic, "Write"))]
    group = getattr(settings, "group_id", None)
    if group and (principal.groups or principal.group_prefixes) and outside(group, principal.may_group(group)):
        problems.append(f"LFR_GROUP_ID={group}")
    return problems


def check_service_grants(service: str, settings: object) -> Principal | None:
    """The principal ``service`` runs as, for ``settings.force``; SettingsError naming every topic
    or group outside its grants (a service of one force pointed at another force's topics)."""
    force = getattr(settings, "force", "default")
    principal = service_principal(service, force)
    if principal is None:
        if service not in NO_PRINCIPAL:
            raise SettingsError(f"service {service} has no principal in access.toml")
        return None
    problems = refusals(principal, settings)
    if problems:
        raise SettingsError(f"force {force}: principal {principal.user} holds no grant on " + ", ".join(problems)
                            + " (services/common/access.toml; LFR_FORCE moves every name under lfr.<force>.)")
    logger.info("topics within the principal's grants", extra={"principal": principal.user, "force": force})
    return principal
