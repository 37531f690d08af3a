"""Process entry for a runner-based service: settings, logs, metrics, then the poll loop."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from .errors import SettingsError
from .logs import configure_logging
from .metrics import start_metrics_server
from .runner import StageRunner
from .settings import RunnerSettings, load_settings
from .stage import Stage

logger = logging.getLogger(__name__)


def run_service(
    service: str,
    settings_class: type[RunnerSettings],
    build: Callable[[RunnerSettings], tuple[Stage, Sequence[str]]],
    **runner_options: object,
) -> int:
    """Load settings (failing fast with the variable's name), build the stage, run until stopped."""
    try:
        settings = load_settings(settings_class)
    except SettingsError as exc:
        print(f"lfr {service}: {exc}", file=sys.stderr)
        return 2
    configure_logging(service, settings.log_level)
    stage, topics = build(settings)
    start_metrics_server(settings.metrics_port)
    return StageRunner(service, settings, stage, topics, **runner_options).run()
