"""The bespoke watchlist of a deployment: entries meeting its criteria, frozen at authorisation.

The snapshot is a manifest (subject ids, entry versions, a hash over them), never images or
embeddings. An entry version is a hash of the entry's content (reference, category, priority,
provenance, expiry and embeddings) but not of its deployment scope, so narrowing the scope of
an entry does not change the version other deployments froze. Any change of the person's
record or photos gives a new version, which no existing snapshot contains: a change during a
deployment needs a new authorised snapshot before it can match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from services.governance.watchlist.entry import WatchlistEntry, vector_to_bytes

from .record import Criteria, Snapshot, SnapshotSubject

PRIORITY_ORDER = {"red": 0, "amber": 1, "green": 2}


def entry_version(entry: WatchlistEntry) -> str:
    described = entry.describe()
    described.pop("deployments", None)
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, separators=(",", ":")).encode())
    for embedding in entry.embeddings:
        digest.update(str(embedding.model).encode())
        digest.update(vector_to_bytes(embedding.vector))
    return digest.hexdigest()


def manifest_hash(subjects: tuple[SnapshotSubject, ...]) -> str:
    text = "\n".join(f"{s.subject_id} {s.entry_version}" for s in subjects)
    return hashlib.sha256(text.encode()).hexdigest()


def eligible(entry: WatchlistEntry, deployment_id: str, criteria: Criteria, now_ms: int) -> str | None:
    """Why this entry may not be on the deployment's watchlist, or None when it may."""
    if deployment_id not in entry.deployments:
        return "scope"
    if entry.category not in criteria.categories:
        return "category"
    if entry.priority not in criteria.priorities:
        return "priority"
    if entry.is_expired(now_ms):
        return "expired"
    return None


def select(
    entries: Mapping[str, WatchlistEntry], deployment_id: str, criteria: Criteria, now_ms: int
) -> tuple[list[WatchlistEntry], dict[str, int]]:
    """The entries that qualify (highest priority first, then subject id) and a count per reason
    for those that do not; ``max_size`` is enforced by the caller (an oversize list is refused)."""
    chosen, refused = [], {}
    for entry in entries.values():
        reason = eligible(entry, deployment_id, criteria, now_ms)
        if reason is None:
            chosen.append(entry)
        else:
            refused[reason] = refused.get(reason, 0) + 1
    chosen.sort(key=lambda e: (PRIORITY_ORDER.get(e.priority, 9), e.subject_id))
    return chosen, refused


def freeze(entries: list[WatchlistEntry], version: int, now_ms: int) -> Snapshot:
    subjects = tuple(SnapshotSubject(e.subject_id, entry_version(e)) for e in sorted(entries, key=lambda e: e.subject_id))
    return Snapshot(version=version, hash=manifest_hash(subjects), created_at_ms=now_ms, subjects=subjects)


def manifest_text(snapshot: Snapshot) -> str:
    """The manifest as one audit string: ``subject:version`` pairs, comma separated."""
    return ",".join(f"{s.subject_id}:{s.entry_version}" for s in snapshot.subjects)
