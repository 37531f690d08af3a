"""The one audit writer every admin path uses: appends signed, hash-chained records to an audit partition.

Crash safety without Kafka transactions (the embedded broker shows aborted records to
read_committed consumers, measured in tests/security/test_audit_chain.py): a change is written
only after its audit record is acknowledged, and the change carries that record's hash in a
signed header (``lfr_audit_hash``). A crash between the two leaves an audit record of a change
that never happened (visible, reconcilable), never a change without its audit record; readers
that verify signatures refuse a change that carries no audit hash.

Several writers may share a partition (the matcher's replicas audit the same refusal at the
same moment, officers decide while an admin edits the watchlist): the writer re-reads the tail
before each append and checks after the acknowledgement that its record landed right after it.
If another writer got in between, the chain forks there; the writer counts it
(lfr_audit_forks_total) and appends a join record (``audit.joined``) that references every
record that got in between, so each stays covered by a later hash (services/governance/audit/chain.py).
Separate partitions per writer (LFR_AUDIT_PARTITION) avoid the extra record.

Records travel as plain JSON CloudEvents (lfr.audit.v2, services/common/jsonevents.py): the
chain's hash and signature cover the record's canonical JSON, never the wire bytes, so the
wire format does not enter the proof; ``ce_id`` is the record's chain hash.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import Counter

from services.common.errors import MessageError
from services.common.jsonevents import decode_record, encode
from services.common.kafka_config import client_config, producer_config
from services.common.settings import KafkaSettings
from services.governance.forces.place import force_of_topic, stamp

from .chain import GENESIS, JOIN_ACTION, record_hash, seal

logger = logging.getLogger(__name__)
AUDIT_RECORDS = Counter("lfr_audit_records_total", "Audit records appended to the chain", ["service"])
MAX_JOINS = 8  # a join that races again is joined again; past this the fork is left for verify to report
AUDIT_SCHEMA = "lfr.audit.v2"
AUDIT_FORKS = Counter("lfr_audit_forks_total", "Audit appends that raced another writer on the same partition", ["service"])


def change_digest(topic: str, key: bytes | None, value: bytes | None) -> str:
    """What an audit record says the change was: sha256 over topic, key and value (tombstone = no value)."""
    digest = hashlib.sha256()
    for part in (topic.encode(), key or b"", b"\x00" if value is None else b"\x01" + value):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


class AuditWriteError(RuntimeError):
    """The broker did not acknowledge an audit record: the change it would record is not made."""

    exit_code = 4  # services.common.cli_support.EXIT_KAFKA


class AuditWriter:
    def __init__(self, settings: KafkaSettings, topic: str, signer, service: str, *, partition: int = 0,
                 producer: Producer | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.signer = signer
        self.service = service
        self._settings = settings
        self._producer = producer or Producer(producer_config(settings))
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()
        self._last: tuple[int, int, str] | None = None  # (offset, seq, hash) of our last append

    def write(self, action: str, subject_id: str | None = None, details: Mapping[str, Any] | None = None, *,
              requested_by: str | None = None, deployment_id: str | None = None, at_ms: int | None = None) -> tuple[dict, str]:
        """Append one record; returns it (sealed) and its hash. The actor is the signer's owner;
        a different name given by the caller is kept as details.requested_by (a claim, not proof)."""
        record: dict[str, Any] = {"action": action, "at_ms": at_ms if at_ms is not None else int(time.time() * 1000),
                                  "service": self.service}
        if subject_id:
            record["subject_id"] = subject_id
        if deployment_id:
            record["deployment_id"] = deployment_id
        stamp(record, force_of_topic(self.topic))  # the force whose chain this is (services/governance/forces)
        extra = dict(details or {})
        if requested_by and requested_by != self.signer.owner:
            extra["requested_by"] = requested_by
        if extra:
            record["details"] = extra
        with self._lock:
            offset, seq, prev = self._tail()
            sealed = seal(record, self.signer, seq + 1, prev)
            digest = record_hash(sealed)
            landed = self._append((subject_id or self.signer.owner).encode(), *encode(AUDIT_SCHEMA, sealed))
            self._last = (landed, seq + 1, digest)
            if landed != offset + 1:
                self._join(offset + 1, landed)
        AUDIT_RECORDS.labels(self.service).inc()
        return sealed, digest

    def _join(self, first: int, ours: int) -> None:
        """Our record landed at ``ours`` though it follows ``first - 1``: reference the records in
        between with a join record after ours, again until a join lands with nothing in between."""
        for _ in range(MAX_JOINS):
            AUDIT_FORKS.labels(self.service).inc()
            logger.warning("audit append raced another writer; joining the fork",
                           extra={"topic": self.topic, "partition": self.partition, "offset": ours, "raced": ours - first})
            raced = self._hashes_between(first, ours)
            _, seq, prev = self._last
            joined = seal({"action": JOIN_ACTION, "at_ms": int(time.time() * 1000), "service": self.service,
                           "details": {"joined": len(raced), "first_offset": first}}, self.signer, seq + 1, prev, raced)
            landed = self._append(self.signer.owner.encode(), *encode(AUDIT_SCHEMA, joined))
            AUDIT_RECORDS.labels(self.service).inc()
            self._last = (landed, seq + 1, record_hash(joined))
            if landed == ours + 1:
                return
            first, ours = ours + 1, landed
        logger.error("audit chain still forking after %d joins; lfr audit verify will list the unjoined records", MAX_JOINS,
                     extra={"topic": self.topic, "partition": self.partition})

    def _hashes_between(self, first: int, end: int) -> list[str]:
        """Hashes of the chained records at offsets [first, end) of our partition."""
        consumer = self._reader()
        consumer.assign([TopicPartition(self.topic, self.partition, first)])
        hashes: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None or message.offset() >= end:
                return hashes
            try:
                hashes.append(record_hash(decode_record(message.value(), message.headers()).data))
            except (MessageError, KeyError, TypeError, ValueError):
                pass  # not a chained record: nothing to reference
            if message.offset() == end - 1:
                return hashes
        raise TimeoutError(f"could not read {self.topic}[{self.partition}] offsets {first}..{end - 1} to join a fork")

    def _append(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> int:
        delivered: list = []
        self._producer.produce(self.topic, key=key, value=value, headers=headers, partition=self.partition,
                               on_delivery=lambda err, msg: delivered.append((err, msg)))
        if self._producer.flush(30) or not delivered or delivered[0][0] is not None:
            error = delivered[0][0].str() if delivered and delivered[0][0] is not None else "timed out"
            raise AuditWriteError(f"could not write the audit record to {self.topic}: {error}")
        return delivered[0][1].offset()

    def _tail(self) -> tuple[int, int, str]:
        """(offset, seq, hash) of the partition's last record; (-1, -1, zeros) when empty."""
        consumer = self._reader()
        tp = TopicPartition(self.topic, self.partition)
        low, high = consumer.get_watermark_offsets(tp, timeout=30, cached=False)
        if self._last is not None and self._last[0] == high - 1:
            return self._last  # nobody wrote since our last append
        if high <= low:
            return -1, -1, GENESIS
        start = high - 1
        while True:
            consumer.assign([TopicPartition(self.topic, self.partition, start)])
            last = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error() is not None:
                    break  # partition EOF
                try:
                    record = decode_record(message.value(), message.headers()).data
                    last = (message.offset(), int(record["seq"]), record_hash(record))
                except (MessageError, KeyError, TypeError, ValueError):
                    pass  # not a chained record; an earlier one is the tail
            else:
                raise TimeoutError(f"could not read the tail of {self.topic}[{self.partition}]")
            if last is not None:
                return last
            if start <= low:
                return high - 1, -1, GENESIS  # only unchained records: a chain starts after them
            start = max(low, start - 16)

    def _reader(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer({**client_config(self._settings), "group.id": "lfr-audit-writer",
                                       "enable.auto.commit": False, "enable.partition.eof": True})
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def audited(action: str, subject_id: str | None, details: Mapping[str, Any], service: str) -> tuple[dict, str]:
    """One audit record from a command-line tool (AuditSettings from the environment), signed by
    its operator's key; raises SettingsError or RuntimeError when it cannot be written, so the
    caller makes no change that would go unaudited."""
    from services.common.settings import AuditSettings, load_settings  # noqa: PLC0415

    from .identity import load_signer  # noqa: PLC0415

    settings = load_settings(AuditSettings)
    writer = AuditWriter(settings, settings.audit_topic, load_signer(settings), service, partition=settings.audit_partition)
    try:
        return writer.write(action, subject_id, details)
    finally:
        writer.close()
