"""Who may do what: the console's one authorisation policy, called by every route.

- operator: sees and adjudicates alerts of their own deployments only;
- supervisor: sees and adjudicates every deployment, reads reports;
- auditor: reads reports only (no alerts, no images);
- admin: everything a supervisor can;
- national: the national roll-up only (counts by force; never an alert, image, subject or place).

Every role but national sees only its own force (services/governance/forces): a record of another force
is as if it did not exist (404), whatever the role.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.governance.forces.place import record_force

from .users import User

REVIEWERS = ("operator", "supervisor", "admin")
REPORT_READERS = ("supervisor", "auditor", "admin")


def same_force(user: User, data: Mapping[str, Any] | None) -> bool:
    """The record (an alert, an adjudication) is of the user's force."""
    return user.role != "national" and record_force(data) == user.force


def may_see_alert(user: User, data: Mapping[str, Any]) -> bool:
    return same_force(user, data) and may_see_deployment(user, str(data.get("deployment_id", "")))


def may_read_national(user: User) -> bool:
    return user.role == "national"


def may_see_deployment(user: User, deployment_id: str) -> bool:
    if user.role == "operator":
        return deployment_id in user.deployments
    return user.role in REVIEWERS


def may_adjudicate(user: User, deployment_id: str) -> bool:
    return may_see_deployment(user, deployment_id)


def may_read_reports(user: User) -> bool:
    return user.role in REPORT_READERS
