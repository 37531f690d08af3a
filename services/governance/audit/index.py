"""Which changes the audit trail vouches for: audit record hash -> the change it describes, and where.

A signed change carries the hash of its audit record (``lfr_audit_hash``); a reader of a governed
topic asks ``link(hash, topic, key, value)`` before applying it, so a trusted key with a
made-up hash changes nothing. Only audit records whose signature verifies against the keyring
count. The audit record is acknowledged before its change is written (services/governance/audit/writer.py),
so on a miss the index reads the audit topic on to its current end and asks again.

Policy hold-then-refuse: a change whose audit record is not readable yet is held (its reader
does not move past it, so later changes keep their order) while the index re-reads the audit
topic, for at most ``wait_s``; then it is refused as unaudited. A hash that names another change
is refused at once. Every outcome is counted (lfr_audit_links_total). Only a change whose
signature already verified against the keyring is checked, so only a trusted key can make a
reader hold.

Revocation by position (issue #23): the index notes where each key's verified ``keys.revoke``
record sits. A key revoked there stays valid for what was audited at an earlier offset of the
same partition (one hash chain) and is invalid at or after it, whatever time a record claims.
Offsets of different partitions have no order, so there, as for a key revoked in the keyring
without a revocation record, every record the key signed is refused. The same rule judges the
key administrator behind a rank (``registration_valid``: at the position of the verified
``keys.register`` record of that very registration) and an authoriser's countersignature (at
the position of the deployment revision that carries it first, services/governance/deployments/verified.py).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client import Counter

from services.common.jsonevents import decode_record
from services.common.kafka_config import client_config
from services.common.settings import KafkaSettings
from services.common.signing import Keyring

from .chain import CONTEXT, REVOKE_ACTION, canonical, record_hash

REGISTER_ACTION = "keys.register"  # written by `lfr keys register` (services/governance/audit/cli.py), details.key_id, rank, role, force
from .writer import change_digest

logger = logging.getLogger(__name__)
_POLL_S = 0.2
AUDIT_LINKS = Counter("lfr_audit_links_total", "Audit links of signed changes checked (policy hold-then-refuse), by outcome: "
                      "confirmed, confirmed_after_hold, mismatch (the hash names no such change), missing (refused after the hold)",
                      ["outcome"])


def _signed_by_trusted(record: dict, keyring: Keyring) -> bool:
    """The record's signature verifies against a key of the keyring (revoked or not: its position decides)."""
    key = keyring.get(str(record.get("key_id", "")))
    if key is None:
        return False
    try:
        key.verifier().verify(base64.b64decode(str(record["signature"])), CONTEXT + canonical(record))
    except Exception:  # noqa: BLE001 - any failure means the record vouches for nothing
        return False
    return True


def vouched_change(record, keyring: Keyring) -> str | None:
    """The change digest an audit record vouches for, when its signature verifies; else None."""
    if not isinstance(record, dict) or not _signed_by_trusted(record, keyring):
        return None
    digest = (record.get("details") or {}).get("change_sha256")
    return str(digest) if digest else None


@dataclass(frozen=True)
class AuditLink:
    """Where the audit record of a change sits in the trail, and which key signed it."""

    partition: int
    offset: int
    key_id: str


class AuditIndex:
    """``link(hash, topic, key, value)``: the audit record the change names, when it exists,
    verifies and describes this very change; ``valid_at(key_id, link)``: whether the key was
    unrevoked at that place in the chain. ``wait_s``: how long a missing record is waited for."""

    def __init__(self, settings: KafkaSettings, topic: str, keyring: Keyring, timeout_s: float = 30.0, wait_s: float = 0.0) -> None:
        self.topic = topic
        self.keyring = keyring
        self.timeout_s = timeout_s
        self.wait_s = wait_s
        # audit record hash -> (digest of the change it describes, partition, offset, signing key id);
        # raw digests keep it small for a trail kept 7 years
        self._changes: dict[bytes, tuple[bytes, int, int, str]] = {}
        self._revoked_at: dict[str, tuple[int, int]] = {}  # key id -> (partition, offset) of its first verified revocation
        # registered key id -> every verified keys.register record of it: (registrar key id, rank, role, force, partition, offset)
        self._registered: dict[str, list[tuple[str, str, str, str, int, int]]] = {}
        self._lock = threading.Lock()
        self._consumer = Consumer({**client_config(settings), "group.id": "lfr-audit-index", "enable.auto.commit": False,
                                   "enable.partition.eof": False})
        self._partitions: list[int] | None = None

    def confirms(self, audit_hash: str, topic: str, key: bytes | None, value: bytes | None) -> bool:
        return self.link(audit_hash, topic, key, value) is not None

    def link(self, audit_hash: str, topic: str, key: bytes | None, value: bytes | None) -> AuditLink | None:
        try:
            wanted, expected = bytes.fromhex(audit_hash), bytes.fromhex(change_digest(topic, key, value))
        except ValueError:
            AUDIT_LINKS.labels("mismatch").inc()
            return None  # not even a hash
        with self._lock:
            found = self._changes.get(wanted)
            if found is None:
                self._read_on()
                found = self._changes.get(wanted)
            held = False
            deadline = time.monotonic() + self.wait_s
            while found is None and time.monotonic() < deadline:  # hold: the audit record may not be readable yet
                held = True
                time.sleep(_POLL_S)
                self._read_on()
                found = self._changes.get(wanted)
        if found is None:
            AUDIT_LINKS.labels("missing").inc()
            logger.warning("signed change refused: no audit record has its hash", extra={"topic": topic, "held": held})
            return None
        if found[0] != expected:
            AUDIT_LINKS.labels("mismatch").inc()
            return None
        AUDIT_LINKS.labels("confirmed_after_hold" if held else "confirmed").inc()
        return AuditLink(found[1], found[2], found[3])

    def valid_at(self, key_id: str, link: AuditLink) -> bool:
        """Whether ``key_id`` was a valid key at ``link``'s place in the chain (see the module docstring)."""
        key = self.keyring.get(key_id)
        if key is not None and key.revoked_at_ms is not None and key_id not in self._revoked_at:
            with self._lock:
                self._read_on()  # its revocation record may have landed since the index last read
        return self._valid(key_id, link)

    def may_vouch(self, key_id: str) -> bool:
        """False when no position can make ``key_id`` valid: unknown, or revoked in the keyring
        without a verified revocation record the index has read."""
        key = self.keyring.get(key_id)
        if key is None or key.revoked_at_ms is None:
            return key is not None
        if key_id not in self._revoked_at:
            with self._lock:
                self._read_on()
        return key_id in self._revoked_at

    def registration_valid(self, key) -> bool:
        """Whether the registration the keyring holds for ``key`` (a TrustedKey) was granted while its
        registrar's key was valid: a verified ``keys.register`` record of exactly this registration,
        signed by the registrar, at a position where the registrar was not yet revoked. A registrar
        revoked later still vouches for the ranks granted before (Keyring.registration's judge)."""
        wanted = (key.registered_by, key.rank, key.role, key.force)

        def found() -> bool:
            return any((registrar, rank, role, force) == wanted and self._valid(registrar, AuditLink(partition, offset, registrar))
                       for registrar, rank, role, force, partition, offset in self._registered.get(key.key_id, []))

        if found():
            return True
        with self._lock:
            self._read_on()  # the registration (or the registrar's revocation) may have landed since the index last read
        return found()

    def revoked_at(self, key_id: str) -> tuple[int, int] | None:
        """(partition, offset) of the key's verified revocation record, once the index has read it."""
        return self._revoked_at.get(key_id)

    def _valid(self, key_id: str, link: AuditLink) -> bool:
        key = self.keyring.get(key_id)
        if key is None:
            return False
        revoked = self._revoked_at.get(key_id)
        if revoked is not None:
            return revoked[0] == link.partition and link.offset < revoked[1]
        return key.revoked_at_ms is None

    def _read_on(self) -> None:
        """Read every partition on to the end it has now."""
        if self._partitions is None:
            metadata = self._consumer.list_topics(self.topic, timeout=self.timeout_s).topics.get(self.topic)
            if metadata is None or metadata.error is not None:
                raise RuntimeError(f"audit topic {self.topic} does not exist")
            self._partitions = sorted(metadata.partitions)
            self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions])
        marks = {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=self.timeout_s) for p in self._partitions}
        ends = {p: high for p, (_low, high) in marks.items()}
        pending = {p for p, (low, high) in marks.items() if high > low}
        idle = 0
        while pending:
            batch = self._consumer.consume(500, _POLL_S)
            for message in batch:
                if message.error() is None and message.value() is not None:
                    self._take(message.value(), message.headers(), message.partition(), message.offset())
            for position in self._consumer.position([TopicPartition(self.topic, p) for p in pending]):
                if position.offset >= ends[position.partition]:
                    pending.discard(position.partition)
            idle = 0 if batch else idle + 1
            if idle * _POLL_S > self.timeout_s:
                raise TimeoutError(f"could not read {self.topic} to its end within {self.timeout_s} s")

    def _take(self, value: bytes, headers=None, partition: int = 0, offset: int = 0) -> None:
        try:
            record = decode_record(value, headers).data
        except Exception:  # noqa: BLE001 - an undecodable audit record vouches for nothing
            return
        if not isinstance(record, dict) or not _signed_by_trusted(record, self.keyring):
            return
        signer = str(record["key_id"])
        details = record.get("details") or {}
        if record.get("action") == REVOKE_ACTION and details.get("key_id"):
            if self._valid(signer, AuditLink(partition, offset, signer)):  # a revocation by a key itself still valid there
                self._revoked_at.setdefault(str(details["key_id"]), (partition, offset))
        if record.get("action") == REGISTER_ACTION and details.get("key_id"):
            self._registered.setdefault(str(details["key_id"]), []).append(
                (signer, str(details.get("rank", "")), str(details.get("role", "")), str(details.get("force", "")), partition, offset))
        digest = details.get("change_sha256")
        if digest:
            try:
                self._changes[bytes.fromhex(record_hash(record))] = (bytes.fromhex(str(digest)), partition, offset, signer)
            except ValueError:
                return

    def close(self) -> None:
        self._consumer.close()
