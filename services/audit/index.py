"""Which changes the audit trail vouches for: audit record hash -> the change it describes.

A signed change carries the hash of its audit record (``lfr_audit_hash``); a reader of a governed
topic asks ``confirms(hash, topic, key, value)`` before applying it, so a trusted key with a
made-up hash changes nothing. Only audit records whose signature verifies against the keyring
count. The audit record is acknowledged before its change is written (services/audit/writer.py),
so on a miss the index reads the audit topic on to its current end and asks again.
"""

from __future__ import annotations

import base64
import logging
import threading

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from services.common.jsonevents import decode_record
from services.common.kafka_config import client_config
from services.common.settings import KafkaSettings
from services.common.signing import Keyring

from .chain import CONTEXT, canonical, record_hash
from .writer import change_digest

logger = logging.getLogger(__name__)
_POLL_S = 0.2


def vouched_change(record, keyring: Keyring) -> str | None:
    """The change digest an audit record vouches for, when its signature verifies; else None."""
    if not isinstance(record, dict):
        return None
    digest = (record.get("details") or {}).get("change_sha256")
    key = keyring.get(str(record.get("key_id", "")))
    if not digest or key is None:
        return None
    try:
        key.verifier().verify(base64.b64decode(str(record["signature"])), CONTEXT + canonical(record))
    except Exception:  # noqa: BLE001 - any failure means the record vouches for nothing
        return None
    return str(digest)


class AuditIndex:
    def __init__(self, settings: KafkaSettings, topic: str, keyring: Keyring, timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.keyring = keyring
        self.timeout_s = timeout_s
        self._changes: dict[bytes, bytes] = {}  # audit record hash -> digest of the change it describes
        self._lock = threading.Lock()
        self._consumer = Consumer({**client_config(settings), "group.id": "lfr-audit-index", "enable.auto.commit": False,
                                   "enable.partition.eof": False})
        self._partitions: list[int] | None = None

    def confirms(self, audit_hash: str, topic: str, key: bytes | None, value: bytes | None) -> bool:
        try:
            wanted, expected = bytes.fromhex(audit_hash), bytes.fromhex(change_digest(topic, key, value))
        except ValueError:
            return False  # not even a hash
        with self._lock:
            if self._changes.get(wanted) != expected:
                self._read_on()
            return self._changes.get(wanted) == expected

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
                    self._take(message.value(), message.headers())
            for position in self._consumer.position([TopicPartition(self.topic, p) for p in pending]):
                if position.offset >= ends[position.partition]:
                    pending.discard(position.partition)
            idle = 0 if batch else idle + 1
            if idle * _POLL_S > self.timeout_s:
                raise TimeoutError(f"could not read {self.topic} to its end within {self.timeout_s} s")

    def _take(self, value: bytes, headers=None) -> None:
        try:
            record = decode_record(value, headers).data
        except Exception:  # noqa: BLE001 - an undecodable audit record vouches for nothing
            return
        digest = vouched_change(record, self.keyring)
        if digest is not None:
            try:  # raw digests: two 32-byte values per audited change, for a trail kept 7 years
                self._changes[bytes.fromhex(record_hash(record))] = bytes.fromhex(digest)
            except ValueError:
                return

    def close(self) -> None:
        self._consumer.close()
