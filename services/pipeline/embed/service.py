"""Wires the embed stage to Kafka."""

from __future__ import annotations

import functools

from services.common.service import run_service
from services.common.settings import EmbedSettings
from services.engine.face import DEFAULT_FLIP_AUGMENT, FaceEmbedder

from .stage import EmbedDeps, process

SERVICE = "embed"


def build(settings: EmbedSettings):
    embedder = FaceEmbedder(
        flip_augment=DEFAULT_FLIP_AUGMENT if settings.flip_augment is None else settings.flip_augment,
        max_batch=settings.batch_max_messages,
        intra_op_threads=settings.intra_op_threads,
        cache_dir=settings.model_cache_dir,
    )
    return functools.partial(process, deps=EmbedDeps(embedder=embedder, output_topic=settings.output_topic, latency_budget_ms=settings.latency_budget_ms,
                                                          first_shot_budget_ms=settings.first_shot_budget_ms)), [settings.input_topic]


def main() -> int:
    return run_service(SERVICE, EmbedSettings, build, accepted_schemas={"lfr.faces.v1"})
