"""Reconcile a signed topic with the audit chain: the audit-first rule's other half.

A change is written after its audit record and carries that record's hash (lfr_audit_hash).
So two things can be out of step, and this names both:
- ``unaudited``: a change in the topic whose audit hash is in no audit record (written around
  the tools; the services refuse it anyway when the header is missing);
- ``not_applied``: the latest audited change of a key that never reached the topic (the writer
  stopped between the audit record and the change): the audit says more than happened.
Compaction drops superseded changes, so only each key's latest audited change is checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .chain import Position, record_hash


@dataclass(frozen=True)
class Finding:
    kind: str  # unaudited | not_applied
    key: str
    detail: str


def reconcile(topic: str, changes: Iterable[tuple[str, str]], audit: Iterable[Position]) -> list[Finding]:
    """``changes``: (key, lfr_audit_hash header) of every record in ``topic``."""
    audited: dict[str, Mapping] = {}
    latest_by_key: dict[str, str] = {}
    for position in audit:
        record = position.record
        if record is None or "change_sha256" not in (record.get("details") or {}):
            continue
        digest = record_hash(record)
        audited[digest] = record
        if record.get("subject_id"):
            latest_by_key[str(record["subject_id"])] = digest
    applied: set[str] = set()
    findings = []
    for key, audit_hash in changes:
        applied.add(audit_hash)
        if audit_hash not in audited:
            findings.append(Finding("unaudited", key, f"a change in {topic} carries audit hash {audit_hash[:16] or '(none)'}..., "
                                                      "which no audit record has"))
    for key, digest in sorted(latest_by_key.items()):
        record = audited[digest]
        if digest not in applied and _concerns(record, topic):
            findings.append(Finding("not_applied", key, f"audit seq {record.get('seq')} ({record['action']}) has no change in {topic}"))
    return findings


def _concerns(record: Mapping, topic: str) -> bool:
    action = str(record.get("action", ""))
    return action.startswith("deployment.") if "deployments" in topic else action.startswith("watchlist.")
