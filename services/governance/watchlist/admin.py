"""Watchlist administration: add, import, remove, list, purge expired. Every change is audited."""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import QdrantClient

from services.common.errors import MessageError
from services.common.timefmt import format_time_ms, parse_time_ms

from .enrol import EnrolmentRefused, EnrolmentRequest, EnrolmentResult, Enroller
from .entry import WatchlistEntry
from .index import WatchlistIndex
from .store import WatchlistStore
from .thresholds import Thresholds

logger = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Outcome:
    subject_id: str
    status: str  # enrolled | updated | refused
    reason: str = ""
    detail: str = ""
    lookalikes: tuple = ()
    quality_flags: tuple = ()  # per photo: flags of one below the enrolment bar (enrol.QUALITY_FLAGS)

    def as_dict(self) -> dict:
        data = {"subject_id": self.subject_id, "status": self.status}
        if any(self.quality_flags):
            data["quality_flags"] = [list(flags) for flags in self.quality_flags]
        if self.reason:
            data.update(reason=self.reason, detail=self.detail)
        if self.lookalikes:
            data["lookalikes"] = [{"subject_id": x.subject_id, "score": x.score, "threshold": x.threshold} for x in self.lookalikes]
        return data


class WatchlistAdmin:
    def __init__(self, store: WatchlistStore, enroller: Enroller, thresholds: Thresholds, clock=now_ms) -> None:
        self.store = store
        self.enroller = enroller
        self.thresholds = thresholds
        self.clock = clock
        self._entries: dict[str, WatchlistEntry] | None = None
        self._index: WatchlistIndex | None = None

    def _current(self) -> tuple[dict[str, WatchlistEntry], WatchlistIndex]:
        """The listed entries and a throw-away in-memory index of them, for look-alike checks."""
        if self._entries is None or self._index is None:
            self._entries = self.store.read_all()
            self._index = WatchlistIndex(QdrantClient(location=":memory:"), self.enroller.embedder.identity)
            self._index.rebuild(self._searchable(self._entries, self._index), self.clock())
        return self._entries, self._index

    @staticmethod
    def _searchable(entries: dict[str, WatchlistEntry], index: WatchlistIndex) -> dict[str, WatchlistEntry]:
        """Entries the look-alike index can hold; one that cannot is skipped with a warning, not fatal."""
        usable = {}
        for subject_id, entry in entries.items():
            try:
                index.check(entry)
            except MessageError as exc:
                logger.warning("watchlist entry skipped for look-alike checks", extra={"error": str(exc)})
                continue
            usable[subject_id] = entry
        return usable

    def add(self, request: EnrolmentRequest) -> Outcome:
        now = self.clock()
        max_lifetime_ms = int(self.store.settings.watchlist_max_entry_lifetime_days * 86_400_000)
        if request.expires_at_ms - now > max_lifetime_ms:
            detail = f"expiry is more than the maximum lifetime of {self.store.settings.watchlist_max_entry_lifetime_days:g} days away"
            logger.info("enrolment refused", extra={"reason": "expiry_too_late"})
            return Outcome(request.subject_id, "refused", "expiry_too_late", detail)
        try:
            entry = self.enroller.build(request, now)
        except EnrolmentRefused as refusal:
            logger.info("enrolment refused", extra={"reason": refusal.reason})
            return Outcome(request.subject_id, "refused", refusal.reason, refusal.detail)
        # Who added the entry is the signing key's owner; the free-text added_by is a claim kept in the audit.
        entry = dataclasses.replace(entry, provenance=dataclasses.replace(entry.provenance, added_by=self.store.signer.owner))
        entries, index = self._current()
        result = EnrolmentResult(entry, self.enroller.lookalikes(entry, index, self.thresholds, now))
        existed = entry.subject_id in entries
        self.store.publish(
            entry,
            "watchlist.update" if existed else "watchlist.add",
            {
                "category": entry.category,
                "priority": entry.priority,
                "images": len(entry.embeddings),
                "model": str(self.enroller.embedder.identity),
                "expires_at": format_time_ms(entry.expires_at_ms),
                "deployments": ",".join(entry.deployments),
                "legal_basis": entry.provenance.legal_basis,
                "lookalikes": len(result.lookalikes),
                "quality_flags": ";".join("+".join(e.quality_flags) or "ok" for e in entry.embeddings),
            },
            requested_by=request.added_by,
        )
        for lookalike in result.lookalikes:
            self.store.audit(
                request.added_by,
                "watchlist.lookalike_flagged",
                entry.subject_id,
                {"other_subject_id": lookalike.subject_id, "score": lookalike.score, "threshold": lookalike.threshold},
            )
        entries[entry.subject_id] = entry
        index.upsert(entry)
        return Outcome(entry.subject_id, "updated" if existed else "enrolled", lookalikes=result.lookalikes,
                       quality_flags=tuple(e.quality_flags for e in entry.embeddings))

    def remove(self, subject_id: str, actor: str, reason: str) -> bool:
        entries, index = self._current()
        if subject_id not in entries:
            return False
        self.store.tombstone(subject_id, "watchlist.remove", {"reason": reason}, requested_by=actor)
        del entries[subject_id]
        index.remove(subject_id)
        return True

    def purge_expired(self, actor: str) -> list[str]:
        """Tombstone expired entries so their embeddings leave the source of truth too."""
        entries, index = self._current()
        now = self.clock()
        expired = [sid for sid, entry in entries.items() if entry.is_expired(now)]
        for sid in expired:
            self.store.tombstone(sid, "watchlist.expired", {"expired_at": format_time_ms(entries[sid].expires_at_ms)}, requested_by=actor)
            del entries[sid]
            index.remove(sid)
        return expired

    def list(self) -> list[WatchlistEntry]:
        entries, _ = self._current()
        return sorted(entries.values(), key=lambda e: e.subject_id)


def requests_from_folder(folder: Path, template: dict, max_images: int) -> Iterator[EnrolmentRequest]:
    """One subject per identity folder (folder name = subject id), its first images by name."""
    for subject_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        images = sorted(p for p in subject_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:max_images]
        yield EnrolmentRequest(
            subject_id=subject_dir.name,
            images=[p.read_bytes() for p in images],
            image_names=[p.name for p in images],
            **template,
        )


def requests_from_csv(path: Path, defaults: dict) -> Iterator[EnrolmentRequest | Outcome]:
    """Columns: subject_id, reference, category, priority, images (;-separated paths, relative to
    the CSV), image_source, image_captured_at, legal_basis, added_by, expires_at, deployments (;)."""
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            merged = {k: (v or "").strip() for k, v in row.items()}
            subject = merged.get("subject_id", "")
            try:
                image_paths = [path.parent / p.strip() for p in merged.get("images", "").split(";") if p.strip()]
                images = [p.read_bytes() for p in image_paths]
                yield EnrolmentRequest(
                    subject_id=subject,
                    reference=merged.get("reference", ""),
                    category=merged.get("category") or defaults.get("category", ""),
                    priority=merged.get("priority") or defaults.get("priority", ""),
                    image_source=merged.get("image_source") or defaults.get("image_source", ""),
                    image_captured_at_ms=parse_time_ms(merged["image_captured_at"]) if merged.get("image_captured_at") else defaults.get("image_captured_at_ms"),
                    legal_basis=merged.get("legal_basis") or defaults.get("legal_basis", ""),
                    added_by=merged.get("added_by") or defaults.get("added_by", ""),
                    expires_at_ms=parse_time_ms(merged["expires_at"]) if merged.get("expires_at") else defaults.get("expires_at_ms", 0),
                    deployments=tuple(d for d in merged.get("deployments", "").split(";") if d) or defaults.get("deployments", ()),
                    images=images,
                    image_names=[p.name for p in image_paths],
                )
            except OSError as exc:
                yield Outcome(subject, "refused", "unreadable_image", f"{type(exc).__name__}: {exc.filename}")
            except ValueError as exc:
                yield Outcome(subject, "refused", "invalid_field", str(exc))
