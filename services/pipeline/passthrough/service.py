"""Wires the pass-through stage to Kafka."""

from __future__ import annotations

import functools

from services.common.service import run_service
from services.common.settings import PassthroughSettings

from .stage import process

SERVICE = "passthrough"


def main() -> int:
    return run_service(
        SERVICE,
        PassthroughSettings,
        lambda settings: (functools.partial(process, output_topic=settings.output_topic), settings.input_topics),
    )
