"""Wiring of the deployment policy into a service: start the view, wait for it, build the gate.

Services call ``start_enforcement`` once at start (before consuming): it returns the loaded
view and the policy bound to it. ``record_gate`` is the runner's ``admit`` hook: it drops, and
counts, every record whose deployment is not active.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from services.common.errors import SettingsError
from services.common import health
from services.common.settings import DeploymentEnforcementSettings, KafkaSettings
from services.common.stage import Message

from services.governance.audit.index import AuditIndex
from services.governance.audit.refusals import deployment_signature_checks

from .policy import DeploymentPolicy, frame_deployment
from .view import DeploymentView

logger = logging.getLogger(__name__)
_VIEWS: list[DeploymentView] = []  # this process's views, for the health endpoint


def ready() -> bool:
    """For /readyz (services/common/health.py): True once this process's deployment view is
    loaded and its reader is alive; False before, after a failure, and after stop."""
    return bool(_VIEWS) and all(view.ready for view in _VIEWS)


def start_enforcement(settings: DeploymentEnforcementSettings, service: str) -> tuple[DeploymentView, DeploymentPolicy]:
    assert isinstance(settings, KafkaSettings)
    try:
        keyring, on_refused = deployment_signature_checks(settings, service)
    except SettingsError as exc:  # no keyring: the service would trust anything, so it does not start
        raise RuntimeError(str(exc)) from exc
    # A change applies only when its audit record exists and matches (held up to audit_link_wait_s).
    audit = AuditIndex(settings, settings.audit_topic, keyring, wait_s=settings.audit_link_wait_s)
    view = DeploymentView(settings, settings.deployments_topic, dlq_topic=getattr(settings, "dlq_topic", "lfr.dlq.v1"), service=service,
                          keyring=keyring, on_refused=on_refused, audit_index=audit)
    health.add_check("deployments", lambda: (view.ready, f"{len(view.all())} deployment(s) loaded" if view.ready else "loading"))
    view.start()
    _VIEWS.append(view)
    try:
        view.wait_ready(settings.deployments_load_timeout_s)
    except BaseException:
        view.stop()
        raise
    return view, DeploymentPolicy(view, skew_ms=settings.deployment_clock_skew_ms)


def record_gate(policy: DeploymentPolicy, service: str) -> Callable[[Message], bool]:
    def admit(message: Message) -> bool:
        deployment_id, captured_at_ms = frame_deployment(message.data)
        return policy.admit(service, deployment_id, captured_at_ms)

    return admit
