"""Exact open-set search over enrolled templates, in numpy, for evaluation at watchlist sizes
(10,000 subjects, tens of thousands of searches) that would take the embedded Qdrant minutes.

It computes what WatchlistIndex.search returns for the top candidate: cosine similarity (the
vectors are L2-normalised) against every enrolled embedding, a subject's score the best of its
embeddings (the template rule), the best subject first. tests/watchlist/test_eval.py checks
the two agree on the same entries.
"""

from __future__ import annotations

import numpy as np

CHUNK = 2048


class Gallery:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.subjects: list[str] = []
        self._vectors: list[np.ndarray] = []
        self._owners: list[int] = []

    def add(self, subject: str, vectors: list[np.ndarray]) -> None:
        owner = len(self.subjects)
        self.subjects.append(subject)
        for vector in vectors:
            self._vectors.append(np.asarray(vector, dtype=np.float32))
            self._owners.append(owner)

    def __len__(self) -> int:
        return len(self.subjects)

    def top1(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(subject index, score) of the best subject per probe row; (-1, -inf) on an empty gallery."""
        count = len(probes)
        best_subject = np.full(count, -1, dtype=np.int64)
        best_score = np.full(count, -np.inf, dtype=np.float64)
        if not self._vectors or count == 0:
            return best_subject, best_score
        matrix = np.stack(self._vectors)
        owners = np.asarray(self._owners)
        for start in range(0, count, CHUNK):
            scores = probes[start : start + CHUNK].astype(np.float32) @ matrix.T
            column = np.argmax(scores, axis=1)  # a subject's best embedding is the row's best of its columns
            best_subject[start : start + CHUNK] = owners[column]
            best_score[start : start + CHUNK] = scores[np.arange(len(column)), column]
        return best_subject, best_score

    def top1_ids(self, probes: np.ndarray) -> list[tuple[str, float]]:
        subjects, scores = self.top1(probes)
        return [(self.subjects[s] if s >= 0 else "", float(v)) for s, v in zip(subjects, scores, strict=True)]
