"""The matcher stage: one batched index query per batch; at most one match per face, its best
candidate at or above threshold (others above theirs travel inside it as ids and scores).

Below threshold nothing is emitted and nothing is stored: the probe embedding is dropped
with the batch. Embeddings of another model than the index's are refused, never compared.
Stale policy ``skip-stale/keep-first-shots`` (services/common/staleness.py): an embedding of a
face captured more than ``latency_budget_ms`` ago is skipped unqueried and counted, unless it is
its track's first shot and at most ``first_shot_budget_ms`` old.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.common.errors import FatalError, MessageError, TransientError
from services.common.stage import Message, Output
from services.common.staleness import is_first_shot, within_budget
from services.governance.deployments.policy import MatchScope
from services.governance.watchlist.entry import vector_from_bytes
from services.governance.watchlist.index import WatchlistIndex
from services.governance.watchlist.thresholds import Thresholds

MATCH_SCHEMA = "lfr.matches.v1"


class EmbeddingRefused(MessageError):
    """A malformed vector: dead-lettered (without its value), never compared."""


class ModelMismatch(FatalError):
    """Embeddings of another model than the index's: every probe would be refused alike (an
    upgrade half done), so the matcher stops instead of dead-lettering a stream of faces."""

    reason = "model_mismatch"


class WatchlistNotCurrent(TransientError):
    """The watchlist loader has stopped: the batch waits (never dead-lettered, never matched)."""


@dataclass(frozen=True)
class MatcherDeps:
    index: WatchlistIndex
    thresholds: Thresholds
    top_k: int = 3
    output_topic: str = "lfr.matches.v1"
    latency_budget_ms: int = 1_500
    first_shot_budget_ms: int = 4_000
    clock: Callable[[], int] = lambda: int(time.time() * 1000)
    # The deployment's active snapshot and threshold (services/governance/deployments/policy.py); the
    # service always sets it. A probe whose deployment has no active snapshot matches nothing.
    scope: Callable[[str], MatchScope | None] | None = None
    # False once the watchlist loader has stopped: a stale watchlist must never alert.
    watchlist_current: Callable[[], bool] = lambda: True


def probe_vector(data, index: WatchlistIndex) -> np.ndarray:
    model = data["model"]
    if (model["name"], model["sha256"]) != (index.model.name, index.model.sha256):
        raise ModelMismatch(f"embedding from model {model['name']}@{model['sha256'][:12]}, index is {index.model}")
    embedding = data["embedding"]
    try:
        vector = vector_from_bytes(embedding["data"], embedding["dim"])
    except ValueError as exc:
        raise EmbeddingRefused(str(exc)) from None
    if vector.shape[0] != index.dim or not 0.9 < float(np.linalg.norm(vector)) < 1.1:
        raise EmbeddingRefused("embedding is not an L2-normalised vector of the index dimension")
    return vector


def process(batch: Sequence[Message], deps: MatcherDeps) -> list[Output]:
    if not deps.watchlist_current():
        raise WatchlistNotCurrent("the watchlist loader has stopped; not matching against a stale watchlist")
    batch = within_budget(batch, lambda embedding: embedding["face"]["frame"]["captured_at_ms"], deps.latency_budget_ms, deps.clock(), "matcher",
                          first_shot=lambda embedding: is_first_shot(embedding["face"]), first_shot_budget_ms=deps.first_shot_budget_ms)
    if not batch:
        return []
    vectors = np.stack([probe_vector(m.data, deps.index) for m in batch])
    now = deps.clock()
    deployments = [m.data["face"]["frame"]["deployment_id"] for m in batch]
    scopes = [deps.scope(d) for d in deployments] if deps.scope is not None else None
    versions = [s.entry_versions if s is not None else frozenset() for s in scopes] if scopes is not None else None
    results = deps.index.search(vectors, deployments, now, limit=deps.top_k, versions=versions)
    outputs = []
    for i, (message, candidates) in enumerate(zip(batch, results, strict=True)):
        # One face, at most one match: its best candidate at or above that candidate's own
        # threshold. Other candidates above theirs ride along as ids and scores for the officer,
        # never as matches (and so never as alerts) of their own.
        floor = scopes[i].threshold if scopes is not None and scopes[i] is not None else None
        above = []
        for rank, candidate in enumerate(candidates, start=1):
            threshold = deps.thresholds.for_category(candidate.category)
            if floor is not None:
                threshold = max(threshold, floor)  # the authorised threshold is a floor
            if candidate.score >= threshold:
                above.append((rank, candidate, threshold))
        if not above:
            continue
        (rank, best, threshold), others = above[0], above[1:]  # candidates come best first
        outputs.append(
            Output(
                deps.output_topic,
                MATCH_SCHEMA,
                {
                    "subject_id": best.subject_id,
                    "reference": best.reference,
                    "category": best.category,
                    "priority": best.priority,
                    "score": round(best.score, 6),
                    "threshold": threshold,
                    "rank": rank,
                    "other_candidates": [
                        {"subject_id": c.subject_id, "score": round(c.score, 6), "threshold": t} for _, c, t in others
                    ],
                    "model": message.data["model"],
                    "face": message.data["face"],
                    "embedded_at_ms": message.data["embedded_at_ms"],
                    "matched_at_ms": now,
                },
                key=best.subject_id,
            )
        )
    return outputs

