"""The one verified reader of lfr.watchlist.v1: every consumer (matcher, `lfr watchlist list`, the
snapshot `lfr deployment authorise` freezes, the review console's reference images, the report)
turns records into watchlist changes here, so none applies a record the others would refuse.

A record changes the watchlist only if the SignatureGate admits it (services/common/signing.py):
signed by a trusted, unrevoked key, its signature covering the exact bytes, carrying the hash of
its audit record (which exists and names this change, when an audit index is given) and not a
replay of an older change to the same subject. Refused records change nothing and are reported
through ``on_refused`` (the matcher audits and dead-letters them; one-shot readers count and log).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from services.common.envelope import decode
from services.common.errors import MessageError
from services.common.signing import Keyring, SignatureGate, SignatureRefused
from services.governance.forces import place
from services.governance.forces.keys import foreign_key
from services.governance.forces.naming import DEFAULT_FORCE, topic_force

from .entry import WatchlistEntry

logger = logging.getLogger(__name__)

Change = tuple[str, WatchlistEntry | None]  # (subject id, entry; None = removed)


class UnreadableEntry(MessageError):
    reason = "schema_invalid"


class VerifiedWatchlist:
    """``change(record, live)``: the verified change a record makes, None when refused (reported
    through ``on_refused(record, refusal, live)``); raises MessageError for a verified record whose
    value is not a watchlist entry (the caller skips and reports it)."""

    def __init__(self, keyring: Keyring, topic: str, on_refused: Callable[[object, SignatureRefused, bool], None] | None = None,
                 audit_index=None) -> None:
        self.topic = topic
        self.gate = SignatureGate(keyring, topic, on_refused, audit_index=audit_index)

    def change(self, record, live: bool) -> Change | None:
        verified = self.gate.admit(record, live)
        if verified is None:
            return None
        key = (record.key() or b"").decode("utf-8", "replace")
        if record.value() is None:
            return (key, None) if self._of_this_force(record, None, verified.key_id, live) else None
        try:
            data = decode(record.value()).data
            if not self._of_this_force(record, data, verified.key_id, live):
                return None
            entry = WatchlistEntry.from_data(data)
        except MessageError:
            raise  # undecodable or off-schema: named by its own reason
        except Exception as exc:  # noqa: BLE001 - any other shape error means "not a watchlist entry"
            raise UnreadableEntry(f"not a watchlist entry ({type(exc).__name__})") from None
        if entry.subject_id != key:
            raise UnreadableEntry(f"entry for {entry.subject_id} under key {key}")
        return entry.subject_id, entry

    def _of_this_force(self, record, data, key_id: str, live: bool) -> bool:
        """The entry names this topic's force and is signed by no other force's key (services/governance/forces);
        else refused like a bad signature (counted, reported, changes nothing)."""
        problem = place.mismatch(self.topic, data) if data is not None else None  # a removal names no force: its topic's
        force = place.record_force(data) if data is not None else (topic_force(self.topic) or DEFAULT_FORCE)
        reason = "force_mismatch"
        if problem is not None:
            place.FORCE_MISMATCHES.labels("watchlist-reader", self.topic, "topic").inc()
        elif foreign_key(self.gate.keyring, key_id, force, judge=_judge(self.gate.audit_index)) is not None:
            reason = "key_force"
        else:
            return True
        if self.gate.on_refused is not None:
            self.gate.on_refused(record, SignatureRefused(reason, key_id), live)
        return False


def fold(records: Iterable, reader: VerifiedWatchlist) -> dict[str, WatchlistEntry]:
    """Current entries from a one-shot read: verified changes applied in order, the rest skipped."""
    entries: dict[str, WatchlistEntry] = {}
    for record in records:
        try:
            changed = reader.change(record, live=False)
        except MessageError as exc:
            logger.warning("unreadable watchlist record skipped",
                           extra={"partition": record.partition(), "offset": record.offset(), "error_class": type(exc).__name__})
            continue
        if changed is None:
            continue
        subject_id, entry = changed
        if entry is None:
            entries.pop(subject_id, None)
        else:
            entries[subject_id] = entry
    return entries


def _judge(audit_index):
    """A registration judged by its audit position where the reader has the audit index (issue #23):
    a key revoked later still belongs to the force it was registered for."""
    return audit_index.registration_valid if audit_index is not None else None
