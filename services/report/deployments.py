"""Adapter: what the report needs to know about a deployment (place, authorising rank, window,
watchlist size), read from lfr.deployments.v1 records when they exist.

The deployments layer (services/deployments/, schema lfr.deployments.v1) owns those records;
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
    """One lfr.deployments.v1 body -> the facts the report prints (tolerant of missing parts)."""
    window = _get(data, "window") or {}
    snapshot = _get(data, "snapshot") or _get(data, "watchlist_snapshot") or {}
    size = _get(snapshot, "size")
    if size is None and isinstance(_get(snapshot, "subjects"), list):
        size = len(snapshot["subjects"])
    return DeploymentFacts(
        deployment_id=data.get("id") or data.get("deployment_id"),
        place=_get(data, "place", "name"),
        authorising_rank=_get(data, "authorising_officer", "rank") or _get(data, "authoriser", "rank"),
        start_ms=_get(window, "start_ms") or _get(data, "start_ms"),
        end_ms=_get(window, "end_ms") or _get(data, "end_ms"),
        watchlist_size=size,
        recorded=True,
    )
