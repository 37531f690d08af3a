"""The embed stage: one batched embedding run per consumed batch; the chip travels as evidence.

Stale policy ``skip-stale/keep-first-shots`` (services/common/staleness.py): a face captured more
than ``latency_budget_ms`` ago is skipped unembedded and counted, unless it is its track's first
shot and at most ``first_shot_budget_ms`` old.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.common.errors import MessageError
from services.common.stage import Message, Output
from services.common.staleness import is_first_shot, within_budget
from services.engine.face import CHIP_SIZE, FaceEmbedder, decode_image
from services.engine.face.errors import ImageError
from services.governance.watchlist.entry import EMBEDDING_DTYPE, vector_to_bytes

EMBEDDINGS_SCHEMA = "lfr.embeddings.v1"


class ChipRejected(MessageError):
    """The chip is unreadable or not an aligned 112x112 face."""


@dataclass(frozen=True)
class EmbedDeps:
    embedder: FaceEmbedder
    output_topic: str = "lfr.embeddings.v1"
    latency_budget_ms: int = 1_500
    first_shot_budget_ms: int = 4_000
    clock: Callable[[], int] = lambda: int(time.time() * 1000)


def _chip(message: Message) -> np.ndarray:
    try:
        # The header must say CHIP_SIZE square: a chip declaring a large canvas is never decoded.
        chip = decode_image(message.data["chip"]["data"], expect_size=(CHIP_SIZE, CHIP_SIZE))
    except ImageError as exc:
        raise ChipRejected(f"face chip unreadable: {exc}") from None
    if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ChipRejected(f"face chip is {chip.shape[1]}x{chip.shape[0]}, expected {CHIP_SIZE}x{CHIP_SIZE}")
    return chip


def process(batch: Sequence[Message], deps: EmbedDeps) -> list[Output]:
    batch = within_budget(batch, lambda face: face["frame"]["captured_at_ms"], deps.latency_budget_ms, deps.clock(), "embed",
                          first_shot=is_first_shot, first_shot_budget_ms=deps.first_shot_budget_ms)
    if not batch:
        return []
    chips = np.stack([_chip(message) for message in batch])
    vectors = deps.embedder.embed(chips)
    model = deps.embedder.identity
    now = deps.clock()
    return [
        Output(
            deps.output_topic,
            EMBEDDINGS_SCHEMA,
            {
                "face": message.data,
                "model": {"name": model.name, "sha256": model.sha256},
                "embedding": {"dtype": EMBEDDING_DTYPE, "dim": int(vector.shape[0]), "data": vector_to_bytes(vector)},
                "embedded_at_ms": now,
            },
            key=message.data["frame"]["camera_id"],
        )
        for message, vector in zip(batch, vectors, strict=True)
    ]
