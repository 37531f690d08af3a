"""Reads and writes the watchlist's source of truth (lfr.watchlist.v1) and its audit trail.

Every change is signed by the operator's key and written after its audit record (services/governance/audit):
the change carries the audit record's hash, so no crash leaves a change unaudited.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Producer

from services.governance.audit.identity import load_keyring, load_signer
from services.governance.audit.refusals import RefusalTally
from services.governance.audit.writer import AuditWriter, change_digest
from services.common.envelope import encode
from services.common.kafka_config import client_config, producer_config
from services.common.topic_reader import read_to_end
from services.common.settings import WatchlistSettings
from services.governance.forces.keys import require_key_force
from services.governance.forces.place import force_of_topic, stamp

from .entry import WatchlistEntry
from .verified import VerifiedWatchlist, fold

logger = logging.getLogger(__name__)
AUDIT_SERVICE = "watchlist"


class StoreWriteError(RuntimeError):
    """The broker did not acknowledge a write in time (a RuntimeError, as before)."""

    exit_code = 4  # services.common.cli_support.EXIT_KAFKA


class WatchlistStore:
    def __init__(self, settings: WatchlistSettings) -> None:
        self.settings = settings
        self._producer = Producer(producer_config(settings))
        self._signer = None
        self._keyring = None  # for the signer's force, loaded on the first write
        self._audit_writer: AuditWriter | None = None
        self.refusals = RefusalTally("watchlist-cli")  # what read_all refused, for the command's summary
        self._batching = False
        self._errors: list = []

    @property
    def signer(self):
        """This operator's key, loaded on the first write: reading needs only the keyring."""
        if self._signer is None:
            self._signer = load_signer(self.settings)
        return self._signer

    @property
    def audit_writer(self) -> AuditWriter:
        if self._audit_writer is None:
            self._audit_writer = AuditWriter(self.settings, self.settings.audit_topic, self.signer, AUDIT_SERVICE,
                                             partition=self.settings.audit_partition, producer=self._producer)
        return self._audit_writer

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Queue every write inside the block and wait for the broker once at its end (bulk
        imports); the idempotent producer keeps each entry's record and audit records in order."""
        self._batching, self._errors = True, []
        try:
            yield
        finally:
            self._batching = False
            self._wait("the batch")

    def read_all(self, timeout_s: float = 30.0) -> dict[str, WatchlistEntry]:
        """Current entries: the verified changes only (services/governance/watchlist/verified.py), in order."""
        self.refusals = RefusalTally("watchlist-cli")  # what this read refused
        audit = self.audit_index(timeout_s)
        try:
            reader = VerifiedWatchlist(audit.keyring, self.settings.watchlist_topic, self.refusals, audit_index=audit)
            records = read_to_end(client_config(self.settings), self.settings.watchlist_topic, group_id="lfr-watchlist-cli",
                                  timeout_s=timeout_s)
            return fold(records, reader)
        finally:
            audit.close()

    def audit_index(self, timeout_s: float = 30.0):
        """The audit records a change may name (services/governance/audit/index.py)."""
        from services.governance.audit.index import AuditIndex  # noqa: PLC0415

        return AuditIndex(self.settings, self.settings.audit_topic, load_keyring(self.settings), timeout_s)

    def publish(self, entry: WatchlistEntry, action: str = "watchlist.add", details: dict[str, Any] | None = None,
                requested_by: str | None = None) -> str:
        """Audit, then write the signed entry; returns the audit hash it carries."""
        value = encode("lfr.watchlist.v1", stamp(entry.to_data(), force_of_topic(self.settings.watchlist_topic)))  # the entry carries its force
        return self._change(entry.subject_id, value, action, details, requested_by)

    def tombstone(self, subject_id: str, action: str = "watchlist.remove", details: dict[str, Any] | None = None,
                  requested_by: str | None = None) -> str:
        return self._change(subject_id, None, action, details, requested_by)

    def audit(self, actor: str, action: str, subject_id: str | None, details: dict[str, Any] | None = None, **fields: Any) -> str:
        """Append one audit record (chained, signed). ``actor`` is what the caller claims; the
        record's actor is the signing key's owner (a different claim is kept as requested_by)."""
        _record, digest = self.audit_writer.write(action, subject_id, details, requested_by=actor, **fields)
        return digest

    def _change(self, subject_id: str, value: bytes | None, action: str, details: dict[str, Any] | None,
                requested_by: str | None) -> str:
        """Audit first (the writer waits for the acknowledgement), then the signed change carrying
        the audit hash: queued inside batch(), else acknowledged before returning."""
        topic, key = self.settings.watchlist_topic, subject_id.encode()
        # A key registered for another force is refused before anything is written (exit 3).
        if self._keyring is None:
            self._keyring = load_keyring(self.settings)
        require_key_force(self._keyring, self.signer.key_id, force_of_topic(topic), f"watchlist change of {subject_id}")
        facts = {**(details or {}), "change_sha256": change_digest(topic, key, value)}
        _record, digest = self.audit_writer.write(action, subject_id, facts, requested_by=requested_by)
        self._send(topic, key, value, self.signer.record_headers(topic, key, value, audit_hash=digest))
        return digest

    def _send(self, topic: str, key: bytes, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        if not self._batching:
            self._errors = []
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, headers=headers,
                                       on_delivery=lambda err, _msg: err and self._errors.append(err))
                break
            except BufferError:
                self._producer.poll(0.1)  # local queue full: let deliveries drain
        self._producer.poll(0)
        if not self._batching:
            self._wait(topic)

    def _wait(self, what: str) -> None:
        if self._producer.flush(30) or self._errors:
            raise StoreWriteError(f"could not write {what}: {self._errors[0].str() if self._errors else 'timed out'}")
