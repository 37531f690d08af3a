"""Erasure of a bespoke watchlist a set time (default 24 h) after its deployment ends.

Entries live in lfr.watchlist.v1, from which every index the product controls is derived
(each matcher's Qdrant collection follows the topic). Erasing a snapshot therefore means, for
each subject in the manifest:
- tombstone the entry when no other deployment still needs it (no other deployment in its
  scope is draft, authorised, active, or ended less than the erasure delay ago): every
  materialiser then drops its points;
- otherwise publish it again without this deployment in its scope (the entry version, which
  excludes the scope, is unchanged, so the other deployments' snapshots still match).
The deployment record keeps its snapshot hash and version but loses the subject list
(``erased_at_ms`` set), and the manifest goes to the audit: afterwards only the audit says
who was on the list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from services.governance.watchlist.entry import WatchlistEntry

from . import snapshot as snapshots
from .lifecycle import ended_at_ms
from .record import Deployment
from .store import DeploymentStore


@dataclass(frozen=True)
class ErasurePlan:
    deployment: Deployment
    tombstone: tuple[str, ...]  # subject ids
    rescope: tuple[WatchlistEntry, ...]  # entries republished without this deployment


def _still_needed(deployment_id: str, deployments: Mapping[str, Deployment], now_ms: int, delay_ms: int) -> bool:
    d = deployments.get(deployment_id)
    if d is None:
        return False
    if d.state in ("draft", "authorised", "active"):
        return True
    stopped = ended_at_ms(d)
    return d.snapshot is not None and d.snapshot.erased_at_ms is None and stopped is not None and now_ms < stopped + delay_ms


def due(deployments: Mapping[str, Deployment], entries: Mapping[str, WatchlistEntry], now_ms: int, delay_ms: int) -> list[ErasurePlan]:
    """What to erase now (pure)."""
    plans = []
    for d in deployments.values():
        stopped = ended_at_ms(d)
        if d.state not in ("ended", "cancelled") or d.snapshot is None or d.snapshot.erased_at_ms is not None or stopped is None:
            continue
        if now_ms < stopped + delay_ms:
            continue
        tombstone, rescope = [], []
        for subject in d.snapshot.subjects:
            entry = entries.get(subject.subject_id)
            if entry is None:
                continue
            others = [x for x in entry.deployments if x != d.deployment_id]
            if any(_still_needed(x, deployments, now_ms, delay_ms) for x in others):
                rescope.append(replace(entry, deployments=tuple(others)))
            else:
                tombstone.append(entry.subject_id)
        plans.append(ErasurePlan(d, tuple(tombstone), tuple(rescope)))
    return plans


def erase_due(store: DeploymentStore, now_ms: int, actor: str = "lfr deployment sweep") -> list[ErasurePlan]:
    """Carry out every due erasure: watchlist first, then the record, then the audit."""
    settings = store.settings
    delay_ms = int(settings.deployment_erase_after_h * 3_600_000)
    plans = due(store.read_all(), store.watchlist.read_all(), now_ms, delay_ms)
    for plan in plans:
        for subject_id in plan.tombstone:
            store.watchlist.tombstone(subject_id)
        for entry in plan.rescope:
            store.watchlist.publish(entry)
        old = plan.deployment
        erased = old.next(snapshot=replace(old.snapshot, subjects=(), erased_at_ms=now_ms))
        store.publish(erased)
        store.audit(
            actor,
            "snapshot_erased",
            old.deployment_id,
            {
                "snapshot_version": old.snapshot.version,
                "snapshot_hash": old.snapshot.hash,
                "snapshot_size": len(old.snapshot.subjects),
                "manifest": snapshots.manifest_text(old.snapshot),
                "entries_erased": len(plan.tombstone),
                "entries_rescoped": len(plan.rescope),
            },
        )
    return plans
