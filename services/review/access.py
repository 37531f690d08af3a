"""Who may do what: the console's one authorisation policy, called by every route.

- operator: sees and adjudicates alerts of their own deployments only;
- supervisor: sees and adjudicates every deployment, reads reports;
- auditor: reads reports only (no alerts, no images);
- admin: everything a supervisor can.
"""

from __future__ import annotations

from .users import User

REVIEWERS = ("operator", "supervisor", "admin")
REPORT_READERS = ("supervisor", "auditor", "admin")


def may_see_deployment(user: User, deployment_id: str) -> bool:
    if user.role == "operator":
        return deployment_id in user.deployments
    return user.role in REVIEWERS


def may_adjudicate(user: User, deployment_id: str) -> bool:
    return may_see_deployment(user, deployment_id)


def may_read_reports(user: User) -> bool:
    return user.role in REPORT_READERS
