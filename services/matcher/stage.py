"""The matcher stage: one batched index query per batch; only candidates at or above threshold leave.

Below threshold nothing is emitted and nothing is stored: the probe embedding is dropped
with the batch. Embeddings of another model than the index's are refused, never compared.
Stale policy ``skip-stale`` (services/common/staleness.py): an embedding of a face captured more
than ``latency_budget_ms`` ago is skipped unqueried and counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.common.errors import MessageError
from services.common.stage import Message, Output
from services.common.staleness import within_budget
from services.watchlist.entry import vector_from_bytes
from services.watchlist.index import WatchlistIndex
from services.watchlist.thresholds import Thresholds

MATCH_SCHEMA = "lfr.matches.v1"


class EmbeddingRefused(MessageError):
    """Wrong model or a malformed vector: dead-lettered, never compared."""


@dataclass(frozen=True)
class MatcherDeps:
    index: WatchlistIndex
    thresholds: Thresholds
    top_k: int = 3
    output_topic: str = "lfr.matches.v1"
    latency_budget_ms: int = 1_500
    clock: Callable[[], int] = lambda: int(time.time() * 1000)


def probe_vector(data, index: WatchlistIndex) -> np.ndarray:
    model = data["model"]
    if (model["name"], model["sha256"]) != (index.model.name, index.model.sha256):
        raise EmbeddingRefused(f"embedding from model {model['name']}@{model['sha256'][:12]}, index is {index.model}")
    embedding = data["embedding"]
    try:
        vector = vector_from_bytes(embedding["data"], embedding["dim"])
    except ValueError as exc:
        raise EmbeddingRefused(str(exc)) from None
    if vector.shape[0] != index.dim or not 0.9 < float(np.linalg.norm(vector)) < 1.1:
        raise EmbeddingRefused("embedding is not an L2-normalised vector of the index dimension")
    return vector


def process(batch: Sequence[Message], deps: MatcherDeps) -> list[Output]:
    batch = within_budget(batch, lambda embedding: embedding["face"]["frame"]["captured_at_ms"], deps.latency_budget_ms, deps.clock(), "matcher")
    if not batch:
        return []
    vectors = np.stack([probe_vector(m.data, deps.index) for m in batch])
    now = deps.clock()
    deployments = [m.data["face"]["frame"]["deployment_id"] for m in batch]
    results = deps.index.search(vectors, deployments, now, limit=deps.top_k)
    outputs = []
    for message, candidates in zip(batch, results, strict=True):
        for rank, candidate in enumerate(candidates, start=1):
            threshold = deps.thresholds.for_category(candidate.category)
            if candidate.score < threshold:
                continue
            outputs.append(
                Output(
                    deps.output_topic,
                    MATCH_SCHEMA,
                    {
                        "subject_id": candidate.subject_id,
                        "reference": candidate.reference,
                        "category": candidate.category,
                        "priority": candidate.priority,
                        "score": round(candidate.score, 6),
                        "threshold": threshold,
                        "rank": rank,
                        "model": message.data["model"],
                        "face": message.data["face"],
                        "embedded_at_ms": message.data["embedded_at_ms"],
                        "matched_at_ms": now,
                    },
                    key=candidate.subject_id,
                )
            )
    return outputs
