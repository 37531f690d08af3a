"""Adapter: what the report needs to know about a deployment (place, authorising rank, window,
watchlist size), read from lfr.deployments.v1 records when they exist.

The deployments layer (services/governance/deployments/, schema lfr.deployments.v1) owns those records;
this module is the only place the report reads them, so following a change there is a change
here. Without a record, the window falls back to the first and last activity seen (alerts and
face counts) and the rest reads "not recorded".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeploymentFacts:
    deployment_id: str
    place: str | None = None
    authorising_rank: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    watchlist_size: int | None = None
    recorded: bool = False  # True when the facts come from a deployment record


def _get(data: Mapping[str, Any], *path: str) -> Any:
    for name in path:
        if not isinstance(data, Mapping) or name not in data:
            return None
        data = data[name]
    return data


def facts_from_record(data: Mapping[str, Any]) -> DeploymentFacts:
    """One lfr.deployments.v1 body -> the facts the report prints.

    Duration: from the transition to active to the end (or cancellation) when the history has
    them, else the authorised window. Watchlist size: the subjects of the frozen snapshot.
    """
    window = _get(data, "window") or {}
    history = data.get("history") or []
    started = next((h["at_ms"] for h in history if h["state"] == "active"), None)
    ended = next((h["at_ms"] for h in history if h["state"] in ("ended", "cancelled")), None)
    subjects = _get(data, "snapshot", "subjects")
    return DeploymentFacts(
        deployment_id=data["deployment_id"],
        place=_get(data, "place", "name"),
        authorising_rank=_get(data, "authorisation", "rank"),
        start_ms=started if started is not None else window.get("start_ms"),
        end_ms=ended if ended is not None else window.get("end_ms"),
        watchlist_size=len(subjects) if isinstance(subjects, list) else None,
        recorded=True,
    )
