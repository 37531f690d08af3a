"""`lfr run intake`: the core's side of the vans' links, as a process (stops cleanly on SIGTERM).

Consumes the landing topic the links write to, checks each record (services/van/fleet/intake.py),
writes an accepted one to its own topic at the core with its value, key and headers unchanged
(the van's ``ce_id`` and ``lfr_link_id`` travel on), dead-letters a refused one without its
value, drops a duplicate, feeds accepted heartbeats to the fleet view (services/van/fleet/fleetview.py);
then, once the core's broker acknowledged every write of the batch, commits its offsets.
A failed write rewinds the batch (nothing committed, ids not remembered): at least once, and
the de-duplication by ``lfr_link_id`` keeps what reaches the core's topics to once, across a
restart too: at start the ids are read back from the core's output topics (intake_memory.py).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from prometheus_client import Counter

from services.common.kafka_config import client_config, producer_config
from services.common.schemas import default_registry
from services.common.service import EXIT_BAD_SETTINGS, start_service
from services.governance.privacy.payload import PAYLOAD_HEADER

from .fleetview import FleetView
from . import intake_memory
from .intake import check_forwarded
from .register import RegisterError, load_register
from .settings import IntakeSettings

logger = logging.getLogger(__name__)
SERVICE = "intake"

ACCEPTED = Counter("lfr_intake_records_accepted_total", "Forwarded records written to their topic at the core", ["topic"])
REFUSED = Counter("lfr_intake_records_refused_total", "Forwarded records dead-lettered at the core (value dropped)", ["reason"])
HELD = Counter("lfr_intake_records_held_total", "Valid forwarded records kept on the landing topic, not written on (policy: van audit records await re-chaining)", ["topic"])
PRODUCER_REBUILT = Counter("lfr_intake_producer_rebuilt_total", "Core producers replaced after a fatal error (the batch is read again)")
DUPLICATES = Counter("lfr_intake_records_duplicate_total", "Forwarded records dropped as already accepted (same lfr_link_id)")


def dead_letter_headers(record, reason: str, detail: str) -> list[tuple[str, bytes]]:
    """The lfr.dlq.v1 headers of a refused forwarded record; its value is never kept."""
    added = {
        "lfr_dlq_topic": record.topic(), "lfr_dlq_partition": str(record.partition()), "lfr_dlq_offset": str(record.offset()),
        "lfr_dlq_service": SERVICE, "lfr_dlq_reason": "schema_invalid" if reason == "schema" else "forward_refused",
        "lfr_dlq_error_class": "ForwardRefused", "lfr_dlq_error": f"{reason}: {detail}"[:500], "lfr_dlq_at_ms": str(int(time.time() * 1000)), PAYLOAD_HEADER: "withheld",
    }
    default_registry().validate("lfr.dlq.v1", added)
    kept = [(n, v) for n, v in record.headers() or () if v is not None and n in ("lfr_van", "lfr_link_id", "lfr_topic")]
    return kept + [(name, text.encode()) for name, text in added.items()]


class Intake:
    def __init__(self, settings: IntakeSettings, consumer, producer, vans: dict[str, str], view: FleetView | None = None,
                 output_topics: list[str] | None = None, new_producer=None) -> None:
        """``output_topics``: where accepted records can go, read back at start for the ids already
        written (intake_memory.py); default every outcome topic of the register's forces."""
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.new_producer = new_producer  # a fresh core producer after a fatal error (e.g. a core broker that lost its state)
        self.vans = vans
        self.view = view or FleetView()
        self.seen = intake_memory.memory(settings.intake_seen_ids)
        self.output_topics = intake_memory.output_topics(vans) if output_topics is None else output_topics
        self._remember_written()
        consumer.subscribe([settings.intake_topic])

    def step(self, timeout_s: float) -> int:
        records = [r for r in self.consumer.consume(self.settings.intake_batch_max, timeout_s) if r.error() is None]
        if not records:
            return 0
        failures: list[str] = []
        pending: set[str] = set()
        beats = []

        def report(error, _message) -> None:
            if error is not None:
                failures.append(error.str())

        try:
            for record in records:
                verdict = check_forwarded(record.value(), record.headers(), self.vans,
                                          lambda rid: rid in self.seen or rid in pending)
                if verdict.reason == "duplicate":
                    DUPLICATES.inc()
                elif verdict.reason == "held":
                    HELD.labels(dict(record.headers() or ()).get("lfr_topic", b"").decode("utf-8", "replace")).inc()
                elif verdict.accepted:
                    pending.add(verdict.record_id)
                    self.producer.produce(verdict.topic, key=record.key(), value=record.value(), headers=list(verdict.headers),
                                          on_delivery=report)
                    if verdict.schema == "lfr.heartbeats.v1":
                        beats.append(verdict.data)
                else:
                    logger.warning("forwarded record refused", extra={"reason": verdict.reason, "van": verdict.van_id or "",
                                                                      "offset": record.offset(), "detail": verdict.detail[:200]})
                    self.producer.produce(self.settings.dlq_topic, key=None, value=None,
                                          headers=dead_letter_headers(record, verdict.reason, verdict.detail), on_delivery=report)
                    REFUSED.labels(verdict.reason).inc()
            flushed = self.producer.flush(30)
        except KafkaException as exc:  # a fatal producer error: the batch is read again by a new producer
            self._replace_producer(exc)
            self._rewind(records)
            return 0
        if flushed != 0 or failures:
            logger.warning("core writes failed; the batch is read again", extra={"error": (failures or ["flush timeout"])[0]})
            self._rewind(records)
            return 0
        for record_id in pending:
            self.seen.first_time(record_id)
        intake_memory.SIZE.set(len(self.seen))
        now_ms = int(time.time() * 1000)
        for body in beats:
            self.view.update(body, now_ms)
        self.consumer.commit(offsets=self._next_offsets(records), asynchronous=False)
        return len(records)

    def _remember_written(self) -> None:
        intake_memory.rebuild(self.seen, client_config(self.settings), self.output_topics,
                              per_partition=self.settings.intake_rebuild_records, window_s=self.settings.intake_dedup_window_s)

    def _replace_producer(self, exc) -> None:
        PRODUCER_REBUILT.inc()
        logger.warning("core producer failed; a new one takes the batch again", extra={"error": str(exc)[:300]})
        if self.new_producer is None:
            raise exc
        self.producer = self.new_producer()
        self._remember_written()  # part of the batch may have been written before the failure: not again

    @staticmethod
    def _next_offsets(records: Iterable) -> list:
        from confluent_kafka import TopicPartition  # noqa: PLC0415

        last: dict[tuple[str, int], int] = {}
        for record in records:
            last[(record.topic(), record.partition())] = record.offset()
        return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]

    def _rewind(self, records) -> None:
        from confluent_kafka import TopicPartition  # noqa: PLC0415

        first: dict[tuple[str, int], int] = {}
        for record in records:
            first.setdefault((record.topic(), record.partition()), record.offset())
        for (topic, partition), offset in first.items():
            self.consumer.seek(TopicPartition(topic, partition, offset))

    def close(self) -> None:
        self.producer.flush(10)
        self.consumer.close()


def build(settings: IntakeSettings, vans: dict[str, str], output_topics: list[str] | None = None) -> Intake:
    from confluent_kafka import Consumer, Producer  # noqa: PLC0415

    consumer = Consumer({
        **client_config(settings), "group.id": settings.intake_group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms, "heartbeat.interval.ms": settings.heartbeat_interval_ms,
    })
    def new_producer():
        return Producer({**producer_config(settings), "client.id": "lfr-intake"})

    return Intake(settings, consumer, new_producer(), vans, output_topics=output_topics, new_producer=new_producer)


def main() -> int:
    settings = start_service(SERVICE, IntakeSettings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    try:
        vans = load_register(settings.intake_vans_file)
    except RegisterError as exc:
        logger.error("cannot start", extra={"error": str(exc)})
        return EXIT_BAD_SETTINGS
    intake = build(settings, vans)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    logger.info("intake ready", extra={"topic": settings.intake_topic, "vans": len(vans)})
    while not stop.is_set():
        intake.step(settings.intake_poll_timeout_ms / 1000)
    intake.close()
    return 0
