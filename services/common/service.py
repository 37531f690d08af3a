"""Process entry for a runner-based service: settings, logs, metrics, then the poll loop."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from services.governance.privacy.retention import verify_at_start

from .errors import SettingsError
from .kafka_config import client_config
from .logs import configure_logging
from .metrics import start_metrics_server
from .runner import StageRunner
from .settings import KafkaSettings, LfrSettings, RunnerSettings, load_settings
from .stage import Stage

logger = logging.getLogger(__name__)
S = TypeVar("S", bound=LfrSettings)


EXIT_BAD_SETTINGS = 2


def start_service(service: str, settings_class: type[S]) -> S | None:
    """Every service's start: settings read once (a bad one is named, and the caller exits 2),
    JSON logs, then /metrics. None means the settings were refused."""
    from services.governance.forces.grants import check_service_grants  # noqa: PLC0415

    try:
        settings = load_settings(settings_class)
        check_service_grants(service, settings)  # its force's principal holds every topic it names
    except SettingsError as exc:
        print(f"lfr {service}: {exc}", file=sys.stderr)
        return None
    configure_logging(service, settings.log_level)
    start_metrics_server(settings.metrics_port)
    if isinstance(settings, KafkaSettings):
        # Can biometric data outlive its promise on this broker? Logged, and lfr_retention_verdict.
        verify_at_start(service, client_config(settings))
    return settings


def run_service(
    service: str,
    settings_class: type[RunnerSettings],
    build: Callable[[RunnerSettings], tuple[Stage, Sequence[str]]],
    **runner_options: object,
) -> int:
    """Start, build the stage, run until stopped."""
    settings = start_service(service, settings_class)
    if settings is None:
        return EXIT_BAD_SETTINGS
    from services.common.settings import DeploymentEnforcementSettings  # noqa: PLC0415

    if not isinstance(settings, DeploymentEnforcementSettings):
        stage, topics = build(settings)
        return StageRunner(service, settings, stage, topics, **runner_options).run()
    # Pipeline stages enforce deployments: nothing is consumed before the view is loaded.
    from services.governance.deployments.enforcement import record_gate, start_enforcement  # noqa: PLC0415

    try:
        view, policy = start_enforcement(settings, service)
    except (TimeoutError, RuntimeError) as exc:  # e.g. the topic is missing: say so, exit 1
        logger.error("cannot start: deployments not loaded", extra={"service": service, "error": str(exc.__cause__ or exc)})
        return 1
    try:
        stage, topics = build(settings)
        return StageRunner(service, settings, stage, topics, admit=record_gate(policy, service), **runner_options).run()
    finally:
        view.stop()
