"""Per-category match thresholds (cosine similarity), one default for the rest.

A missing person at risk may warrant a lower threshold (more alerts, more human review) than
a witness; the force's policy decides, the numbers come from `lfr eval`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from .entry import CATEGORIES

# SFace on LFW dev (`lfr eval --seed 7`, see README): FPIR 1e-3 at 0.497, 2.5e-4 at 0.502.
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Thresholds:
    default: float = DEFAULT_THRESHOLD
    per_category: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.per_category) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown watchlist categories: {', '.join(sorted(unknown))}")
        for value in (self.default, *self.per_category.values()):
            if not -1.0 <= value <= 1.0:
                raise ValueError("thresholds are cosine similarities in [-1, 1]")

    def for_category(self, category: str) -> float:
        return self.per_category.get(category, self.default)

    @property
    def lowest(self) -> float:
        return min([self.default, *self.per_category.values()])

    @classmethod
    def parse(cls, default: float, per_category_json: str) -> Thresholds:
        """From the settings: a default and a JSON object of category -> threshold."""
        mapping = json.loads(per_category_json) if per_category_json.strip() else {}
        if not isinstance(mapping, dict):
            raise ValueError("per-category thresholds must be a JSON object")
        return cls(default=default, per_category={str(k): float(v) for k, v in mapping.items()})
