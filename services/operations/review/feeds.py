"""The review service's Kafka edges: one reader thread (alerts, adjudications, watchlist,
evidence, all from their start, no consumer group: a materialised view), one writer, and the
sweeper that publishes transit keys, destroys old ones and erases evidence."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from services.governance.audit.identity import load_keyring, load_signer
from services.governance.audit.index import AuditIndex
from services.governance.audit.refusals import RefusalTally
from services.governance.audit.writer import AuditWriter
from services.common import health, jsonevents
from services.common.envelope import decode, encode
from services.common.kafka_config import client_config, producer_config
from services.common.settings import ReviewSettings
from services.governance.evidence.sealing import ALGORITHM, SealError, associated_data, open_sealed
from services.governance.forces import place
from services.governance.forces.place import force_of_topic, stamp
from services.governance.watchlist.verified import VerifiedWatchlist

from . import metrics
from .board import Board
from .custody import Evidence, EvidenceCustody, TransitKeyStore

logger = logging.getLogger(__name__)
SERVICE = "review"


def now_ms() -> int:
    return int(time.time() * 1000)


class Writer:
    """Every record the console writes; each call waits for the broker's acknowledgement."""

    def __init__(self, settings: ReviewSettings) -> None:
        self.settings = settings
        self._producer = Producer(producer_config(settings))
        self._lock = threading.Lock()
        self._audit: AuditWriter | None = None

    def send(self, topic: str, key: bytes, value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> None:
        errors: list = []
        with self._lock:
            self._producer.produce(topic, key=key, value=value, headers=headers or None,
                                   on_delivery=lambda err, _m: err and errors.append(err))
            if self._producer.flush(30) or errors:
                raise RuntimeError(f"could not write to {topic}: {errors[0].str() if errors else 'timed out'}")

    def adjudication(self, record: dict) -> None:
        record = stamp(dict(record), force_of_topic(self.settings.adjudications_topic))  # carries its force
        value, headers = jsonevents.encode("lfr.adjudications.v3", record)  # plain JSON CloudEvent
        self.send(self.settings.adjudications_topic, record["alert_id"].encode(), value, headers)

    def audit(self, actor: str, action: str, subject_id: str | None, details: dict) -> None:
        """Through the one chained, signed audit writer (services/governance/audit): the record's actor is the
        console's key owner; the signed-in officer is kept as details.requested_by."""
        with self._lock:
            if self._audit is None:
                self._audit = AuditWriter(self.settings, self.settings.audit_topic, load_signer(self.settings), SERVICE,
                                          partition=self.settings.audit_partition, producer=self._producer)
            self._audit.write(action, subject_id, details, requested_by=actor)

    def evidence_tombstone(self, alert_id: str) -> None:
        self.send(self.settings.evidence_topic, alert_id.encode(), None)

    def transit_key(self, key_id: str, public: bytes, not_before_ms: int, not_after_ms: int) -> None:
        self.send(self.settings.evidence_keys_topic, key_id.encode(), encode("lfr.evidence_keys.v1", {
            "key_id": key_id, "algorithm": ALGORITHM, "public_key": public, "not_before_ms": not_before_ms, "not_after_ms": not_after_ms}))

    def transit_key_tombstone(self, key_id: str) -> None:
        self.send(self.settings.evidence_keys_topic, key_id.encode(), None)


class Reader(threading.Thread):
    def __init__(self, settings: ReviewSettings, board: Board, keys: TransitKeyStore, custody: EvidenceCustody,
                 writer: Writer | None = None, fleet=None) -> None:
        super().__init__(name="review-reader", daemon=True)
        self.settings, self.board, self.keys, self.custody = settings, board, keys, custody
        # Reports another force's records arriving while the console runs (audit, dead letter);
        # those met again on each rebuild are counted only.
        self.writer = writer
        self._live_from: dict[tuple[str, int], int] = {}
        self.fleet = fleet  # services/van/fleet/fleetview.py: the latest heartbeat per van, for the fleet page
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        # Reference images come only from verified watchlist records (services/governance/watchlist/verified.py):
        # refusals are counted and logged here; the matcher audits and dead-letters each one once.
        self.refusals = RefusalTally(SERVICE)
        keyring = load_keyring(settings)
        self.watchlist = VerifiedWatchlist(keyring, settings.watchlist_topic, self.refusals,
                                           audit_index=AuditIndex(settings, settings.audit_topic, keyring,
                                                                  wait_s=settings.audit_link_wait_s))

    def run(self) -> None:
        s = self.settings
        consumer = Consumer({**client_config(s), "group.id": f"{s.group_id}-view", "enable.auto.commit": False})
        topics = [s.watchlist_topic, s.adjudications_topic, s.alerts_topic, s.evidence_topic, s.heartbeats_topic]
        try:
            partitions = self._wait_for_topics(consumer, topics)
            if partitions is None:
                return
            self._live_from = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
            consumer.assign(partitions)
            self.ready.set()
            while not self.stop_event.is_set():
                for record in consumer.consume(200, 0.3):
                    if record.error() is None:
                        self.handle(record)
        finally:
            consumer.close()
            self.watchlist.gate.audit_index.close()

    def _wait_for_topics(self, consumer: Consumer, topics: list[str]) -> list[TopicPartition] | None:
        while not self.stop_event.is_set():
            try:
                found = consumer.list_topics(timeout=5).topics
                if all(t in found and found[t].partitions for t in topics):
                    return [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in found[t].partitions]
            except Exception:  # noqa: BLE001 - broker not there yet
                pass
            self.stop_event.wait(1.0)
        return None

    def handle(self, record) -> None:
        s = self.settings
        topic, value, headers = record.topic(), record.value(), record.headers()
        try:
            if topic == s.watchlist_topic:
                changed = self.watchlist.change(record, live=False)
                if changed is not None:
                    subject, entry = changed
                    ref = entry.reference_image if entry is not None else None
                    self.board.apply_reference(subject, ref.jpeg if ref else None)
            elif value is None:
                return  # tombstones of evidence and the like
            elif topic == s.adjudications_topic:
                self.board.apply_adjudication(self._of_this_force(topic, jsonevents.decode_record(value, headers)))
            elif topic == s.alerts_topic:
                metrics.ALERTS_SEEN.inc()
                self.board.apply_alert(self._of_this_force(topic, jsonevents.decode_record(value, headers)))
            elif topic == s.evidence_topic:
                self.take_evidence(self._of_this_force(topic, decode(value)))
            elif topic == s.heartbeats_topic and self.fleet is not None:
                self.fleet.update(decode(value).data, now_ms())
        except place.ForceMismatch as exc:
            self._refuse(record, exc)
        except Exception as exc:  # noqa: BLE001 - one bad record never stops the console
            logger.warning("record skipped", extra={"topic": topic, "error_class": type(exc).__name__})

    @staticmethod
    def _of_this_force(topic: str, envelope) -> dict:
        """The record's data; ForceMismatch (counted) for another force's record (services/governance/forces/place.py)."""
        place.check_topic(topic, envelope.schema, envelope.data, SERVICE)
        return envelope.data

    def _refuse(self, record, exc: place.ForceMismatch) -> None:
        """Logged always; audited and dead-lettered without payload once, when it arrives live."""
        topic, offset = record.topic(), record.offset()
        logger.warning("record of another force refused", extra={"topic": topic, "offset": offset, "reason": exc.reason})
        if self.writer is None or offset < self._live_from.get((topic, record.partition()), 0):
            return
        added = {"lfr_dlq_topic": topic, "lfr_dlq_partition": str(record.partition()), "lfr_dlq_offset": str(offset),
                 "lfr_dlq_service": SERVICE, "lfr_dlq_reason": exc.reason, "lfr_dlq_error_class": type(exc).__name__,
                 "lfr_dlq_error": str(exc)[:500], "lfr_dlq_at_ms": str(now_ms()), "lfr_dlq_payload": "withheld"}
        try:
            self.writer.audit(SERVICE, "force.refused", None, {"topic": topic, "partition": record.partition(), "offset": offset,
                                                             "reason": exc.reason})
            self.writer.send(self.settings.dlq_topic, record.key() or b"", None,
                             [*(record.headers() or []), *((k, v.encode()) for k, v in added.items())])
        except Exception:  # noqa: BLE001 - reporting never stops the console; the count and log stand
            logger.exception("could not report a refused record", extra={"topic": topic, "offset": offset})

    def take_evidence(self, data: dict) -> None:
        alert_id = data["alert_id"]
        if self.board.decision_of(alert_id) == "rejected":
            return  # never take a rejected alert's chip back into custody
        key = self.keys.load(data["key_id"])
        if key is None:
            if self.custody.meta(alert_id) is None:
                metrics.EVIDENCE_UNREADABLE.inc()
            return
        try:
            image = open_sealed(key.private, bytes(data["sealed"]), associated_data(alert_id, data["revision"]))
        except SealError:
            metrics.EVIDENCE_UNREADABLE.inc()
            return
        view = self.board.get(alert_id)
        alert_at = view.alert_at_ms if view else data["sealed_at_ms"]
        if self.custody.put(Evidence(alert_id, data["revision"], data["deployment_id"], data["media_type"], alert_at, image)):
            metrics.EVIDENCE_HELD.inc()


class Sweeper(threading.Thread):
    """Transit keys and erasure, every ``sweep_interval_s``. Erasure is decided from the custody
    files and the adjudications alone, so it holds whatever the web handlers did or missed."""

    def __init__(self, settings: ReviewSettings, board: Board, keys: TransitKeyStore, custody: EvidenceCustody,
                 writer: Writer, clock: Callable[[], int] = now_ms) -> None:
        super().__init__(name="review-sweeper", daemon=True)
        self.settings, self.board, self.keys, self.custody, self.writer, self.clock = settings, board, keys, custody, writer, clock
        self.stop_event = threading.Event()

    def run(self) -> None:
        # /livez: erasure is a promise, so a sweeper that stops turning makes the console unhealthy.
        bound_s = max(60.0, 4 * self.settings.sweep_interval_s)
        while not self.stop_event.is_set():
            health.heartbeat("evidence_sweeper", bound_s)
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - broker down: try again next round
                logger.warning("sweep failed", extra={"error_class": type(exc).__name__})
            with health.idle("evidence_sweeper"):
                self.stop_event.wait(self.settings.sweep_interval_s)

    def sweep(self) -> None:
        created = self.keys.ensure_current()
        if created is not None:
            self.writer.transit_key(created.key_id, created.public, created.not_before_ms, created.not_after_ms)
            metrics.TRANSIT_KEYS.labels("created").inc()
            logger.info("transit key published", extra={"key_id": created.key_id})
        for key_id in self.keys.destroy_expired():
            metrics.TRANSIT_KEYS.labels("destroyed").inc()
            self.writer.transit_key_tombstone(key_id)
            logger.info("transit key destroyed", extra={"key_id": key_id})
        rejected = self.board.rejected()
        for alert_id in self.custody.held():
            if alert_id in rejected:
                self.erase(alert_id, "rejected")
        for alert_id in self.custody.expired():
            self.erase(alert_id, "retention")

    def erase(self, alert_id: str, reason: str) -> None:
        if self.custody.erase(alert_id):
            metrics.EVIDENCE_ERASED.labels(reason).inc()
            self.writer.evidence_tombstone(alert_id)
            self.writer.audit("lfr-review", "evidence.erased", None, {"alert_id": alert_id, "reason": reason})
            logger.info("evidence erased", extra={"alert_id": alert_id, "reason": reason})
