"""A watchlist entry and its lfr.watchlist.v1 form. Embeddings carry the model that made them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.engine.face.models import ModelIdentity

from .categories import CATEGORIES, PRIORITIES
from .reference import ReferenceImage

__all__ = ["CATEGORIES", "PRIORITIES", "EMBEDDING_DTYPE", "EnrolledEmbedding", "Provenance", "WatchlistEntry"]
EMBEDDING_DTYPE = "float32le"


@dataclass(frozen=True)
class Provenance:
    image_source: str
    image_captured_at_ms: int
    legal_basis: str
    added_by: str
    added_at_ms: int


@dataclass(frozen=True, eq=False)
class EnrolledEmbedding:
    model: ModelIdentity
    vector: np.ndarray  # float32, L2-normalised
    quality_flags: tuple[str, ...] = ()  # photo below the enrolment bar (enrol.QUALITY_FLAGS)


@dataclass(frozen=True, eq=False)
class WatchlistEntry:
    subject_id: str
    reference: str
    category: str
    priority: str
    provenance: Provenance
    expires_at_ms: int
    deployments: tuple[str, ...]
    embeddings: tuple[EnrolledEmbedding, ...]
    reference_image: ReferenceImage | None = field(default=None, repr=False)

    def is_expired(self, now_ms: int) -> bool:
        return self.expires_at_ms <= now_ms

    def vectors_for(self, model: ModelIdentity) -> list[np.ndarray]:
        return [e.vector for e in self.embeddings if e.model == model]

    def to_data(self) -> dict[str, Any]:
        p = self.provenance
        data = {
            "subject_id": self.subject_id,
            "reference": self.reference,
            "category": self.category,
            "priority": self.priority,
            "provenance": {
                "image_source": p.image_source,
                "image_captured_at_ms": p.image_captured_at_ms,
                "legal_basis": p.legal_basis,
                "added_by": p.added_by,
                "added_at_ms": p.added_at_ms,
            },
            "expires_at_ms": self.expires_at_ms,
            "deployments": list(self.deployments),
            "embeddings": [
                {
                    "model": {"name": e.model.name, "sha256": e.model.sha256},
                    "dim": int(e.vector.shape[0]),
                    "dtype": EMBEDDING_DTYPE,
                    "data": vector_to_bytes(e.vector),
                    **({"quality_flags": list(e.quality_flags)} if e.quality_flags else {}),
                }
                for e in self.embeddings
            ],
        }
        if self.reference_image is not None:
            data["reference_image"] = self.reference_image.to_data()
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> WatchlistEntry:
        p = data["provenance"]
        return cls(
            subject_id=data["subject_id"],
            reference=data["reference"],
            category=data["category"],
            priority=data["priority"],
            provenance=Provenance(p["image_source"], p["image_captured_at_ms"], p["legal_basis"], p["added_by"], p["added_at_ms"]),
            expires_at_ms=data["expires_at_ms"],
            deployments=tuple(data["deployments"]),
            embeddings=tuple(
                EnrolledEmbedding(ModelIdentity(e["model"]["name"], e["model"]["sha256"]), vector_from_bytes(e["data"], e["dim"]),
                                  tuple(e.get("quality_flags", ())))
                for e in data["embeddings"]
            ),
            reference_image=ReferenceImage.from_data(data.get("reference_image")),
        )

    def describe(self) -> dict[str, Any]:
        """Everything but the embeddings: safe to print and to audit."""
        data = self.to_data()
        data["embeddings"] = [{"model": str(e.model), **({"quality_flags": list(e.quality_flags)} if e.quality_flags else {})} for e in self.embeddings]
        if self.reference_image is not None:
            data["reference_image"] = {"width": self.reference_image.width, "height": self.reference_image.height}
        return data


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes, dim: int) -> np.ndarray:
    if len(data) != 4 * dim:
        raise ValueError(f"embedding has {len(data)} bytes, expected {4 * dim} for dim {dim}")
    vector = np.frombuffer(data, dtype="<f4").astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise ValueError("embedding has non-finite values")
    return vector
