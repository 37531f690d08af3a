"""The van's outcome forwarder: van broker -> durable outbox -> the force's core, van-initiated.

One loop, two halves:

* intake: consume the outcome topics (services/van/link/egress.py) from the van's broker; each
  record that may leave is written to the outbox (services/van/link/outbox.py) with its link id;
  only after that commit are the van-side offsets committed. A withheld record is counted and
  its offset committed too (it never blocks the queue).
* send: outbox rows, oldest first, to the core through an idempotent producer (acks=all,
  no delivery timeout: librdkafka retries until the link is back, keeping the order per
  partition, so per key); a row is marked sent only when the core acknowledged it. The cap
  (services/van/link/bandwidth.py) paces the sends; the time rows waited for it is counted.

After a kill -9 the next run resumes from the outbox's unsent rows and the van-side committed
offsets: nothing is lost; a row the core acknowledged just before the kill is sent again with
the same ``lfr_link_id``, which the core de-duplicates (services/van/link/dedup.py). Should the
producer fail for good (a fatal error), or get no acknowledgement for LFR_LINK_REBUILD_AFTER_S
(a core that forgot the producer's id: a replaced broker, or Kafka's producer-id expiry after
a van was offline for a day, answers UNKNOWN_PRODUCER_ID for ever), it is rebuilt and every
unsent row is sent again, in order.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import Counter, Gauge

from .bandwidth import TokenBucket
from .dedup import LINK_ID_HEADER, TOPIC_HEADER, VAN_HEADER, link_id
from .egress import egress_value, withhold_reason
from .outbox import Outbox, OutboxRow

logger = logging.getLogger(__name__)

FORWARDED = Counter("lfr_link_records_forwarded_total", "Outcome records the core acknowledged", ["topic"])
FORWARDED_BYTES = Counter("lfr_link_bytes_forwarded_total", "Key, value and header bytes the core acknowledged")
WITHHELD = Counter("lfr_link_records_withheld_total", "Records of outcome topics kept in the van (not outcomes, or binary)", ["topic", "reason"])
TAKEN_IN = Counter("lfr_link_records_queued_total", "Records written to the van's outbox", ["topic"])
THROTTLED = Counter("lfr_link_throttled_seconds_total", "Time sends waited for the bandwidth cap")
RESENDS = Counter("lfr_link_producer_rebuilds_total", "Times the core producer was rebuilt and unsent rows sent again")
BACKLOG = Gauge("lfr_link_backlog_records", "Outbox rows not yet acknowledged by the core")
BACKLOG_BYTES = Gauge("lfr_link_backlog_bytes", "Bytes of outbox rows not yet acknowledged by the core")
BACKLOG_AGE = Gauge("lfr_link_backlog_oldest_age_seconds", "Age of the oldest row waiting for the core (0 when none)")
OUTBOX_WRITABLE = Gauge("lfr_link_outbox_writable", "0 while the van's outbox cannot be written (disk full): intake pauses, nothing is dropped")
LINK_UP = Gauge("lfr_link_up", "1 when the core acknowledged within LFR_LINK_DOWN_AFTER_S or nothing waits, else 0")


class Forwarder:
    """The loop's state; ``step()`` does one intake and one send round."""

    def __init__(self, *, van_id: str, topics: list[str], outbox: Outbox, consumer: Consumer,
                 producer_factory: Callable[[Callable[[Any], None]], Producer], bucket: TokenBucket, batch_max: int = 500,
                 max_in_flight: int = 2000, poll_timeout_s: float = 0.2, down_after_s: float = 10.0,
                 rebuild_after_s: float = 30.0, sent_memory_s: float = 86_400.0, clock: Callable[[], float] = time.monotonic,
                 core_topic: str = "") -> None:
        self.van_id = van_id
        self.core_topic = core_topic  # the core intake's landing topic; "" = each record's own topic
        self.topics = topics
        self.outbox = outbox
        self.consumer = consumer
        self._producer_factory = producer_factory
        self.bucket = bucket
        self.batch_max = batch_max
        self.max_in_flight = max_in_flight
        self.poll_timeout_s = poll_timeout_s
        self.down_after_s = down_after_s
        self.rebuild_after_s = rebuild_after_s
        self.sent_memory_s = sent_memory_s
        self.clock = clock
        self._fatal = False
        self._producer = producer_factory(self._on_error)
        self._generation = 0
        self._in_flight: dict[int, OutboxRow] = {}
        self._last_sent_seq = 0
        self._acked: list[int] = []
        self._failed = False
        self._waiting_since = clock()  # the last acknowledgement, or when rows began to wait for one
        self._last_forget = 0.0
        self._outbox_writable = True
        consumer.subscribe(topics)

    # -- intake --------------------------------------------------------------------------

    def intake(self, timeout_s: float) -> int:
        records = self.consumer.consume(self.batch_max, timeout_s)
        rows, first, last = [], {}, {}
        for record in records:
            if record.error() is not None:
                if record.error().code() != KafkaError._PARTITION_EOF:
                    logger.warning("van broker error", extra={"error": record.error().str()})
                continue
            topic, headers = record.topic(), list(record.headers() or [])
            first.setdefault((topic, record.partition()), record.offset())
            last[(topic, record.partition())] = record.offset()
            reason = withhold_reason(topic, record.value(), headers)
            if reason is not None:
                WITHHELD.labels(topic, reason).inc()
                continue
            record_id = link_id(self.van_id, topic, record.timestamp()[1], record.key(), record.value(), headers)
            kept = [(n, v) for n, v in headers if n not in (LINK_ID_HEADER, VAN_HEADER, TOPIC_HEADER) and v is not None]
            rows.append(OutboxRow(record_id, topic, record.key(), egress_value(topic, record.value()),
                                  (*kept, (LINK_ID_HEADER, record_id.encode()), (VAN_HEADER, self.van_id.encode()))))
        if rows:
            try:
                self.outbox.enqueue(rows)
            except sqlite3.OperationalError as exc:
                # Disk full (or the file unwritable): drop nothing, commit nothing, read the batch
                # again later. The van's broker keeps the records meanwhile.
                if self._outbox_writable:  # said once per episode, not once per poll
                    logger.error("outbox cannot be written; intake paused", extra={"error": str(exc), "records": len(rows)})
                self._outbox_writable = False
                OUTBOX_WRITABLE.set(0)
                for (topic, partition), offset in first.items():
                    self.consumer.seek(TopicPartition(topic, partition, offset))
                return 0
            self._outbox_writable = True
            OUTBOX_WRITABLE.set(1)
            for row in rows:
                TAKEN_IN.labels(row.topic).inc()
        if last:  # only once the rows are on disk
            try:
                self.consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False)
            except KafkaException as exc:
                # The rows are safe on disk; a later commit covers these offsets, and a record
                # read again before that is ignored by the outbox (same link id).
                logger.warning("van offset commit failed", extra={"error": str(exc)})
        return len(rows)

    # -- send ----------------------------------------------------------------------------

    def _on_error(self, error) -> None:
        if error.fatal():
            self._fatal = True
        logger.warning("core link error", extra={"error": error.str(), "fatal": error.fatal()})

    def _delivery(self, generation: int, seq: int):
        def report(error, _message) -> None:
            if generation != self._generation:
                return  # from a producer already replaced
            if error is None:
                self._acked.append(seq)
            else:
                self._failed = True
                logger.warning("core refused a forwarded record", extra={"error": error.str(), "seq": seq})
        return report

    def send(self) -> float:
        """Produce what the cap and the in-flight bound allow; returns seconds to wait for the cap."""
        wait = 0.0
        while len(self._in_flight) < self.max_in_flight:
            rows = self.outbox.peek(min(self.batch_max, self.max_in_flight - len(self._in_flight)), after_seq=self._last_sent_seq)
            if not rows:
                break
            for row in rows:
                wait = self.bucket.wait_s(row.size, self.clock())
                if wait > 0:
                    break
                self.bucket.take(row.size, self.clock())
                if not self._in_flight:
                    self._waiting_since = self.clock()
                headers = [*row.headers, (TOPIC_HEADER, row.topic.encode())] if self.core_topic else list(row.headers)
                self._producer.produce(self.core_topic or row.topic, key=row.key, value=row.value, headers=headers,
                                       on_delivery=self._delivery(self._generation, row.seq))
                self._in_flight[row.seq] = row
                self._last_sent_seq = row.seq
            if wait > 0:
                break
        self._producer.poll(0)
        self._settle()
        return wait

    def _settle(self) -> None:
        if self._acked:
            acked, self._acked = self._acked, []
            self.outbox.ack(acked)
            for seq in acked:
                row = self._in_flight.pop(seq, None)
                if row is not None:
                    FORWARDED.labels(row.topic).inc()
                    FORWARDED_BYTES.inc(row.size)
            self._waiting_since = self.clock()
        stuck = bool(self._in_flight) and self.clock() - self._waiting_since > self.rebuild_after_s
        if self._fatal or self._failed or stuck:
            self._rebuild()

    def _rebuild(self) -> None:
        """A producer that failed for good: drop it, and send every unsent row again, in order."""
        RESENDS.inc()
        logger.warning("rebuilding the core producer", extra={"unacknowledged": len(self._in_flight)})
        self._generation += 1
        old = self._producer
        try:
            old.purge()
            old.flush(0)
        except Exception:  # noqa: BLE001 - a fatal producer may refuse anything
            pass
        self._fatal = self._failed = False
        self._in_flight.clear()
        self._last_sent_seq = 0
        self._waiting_since = self.clock()
        self._producer = self._producer_factory(self._on_error)

    # -- the loop ------------------------------------------------------------------------

    def step(self) -> None:
        wait = self.send()
        # The van-side poll is the loop's only sleep: short while the core owes acknowledgements,
        # as long as the cap asks when throttled (that time is what the metric counts).
        timeout = min(wait, self.poll_timeout_s) if wait else (min(0.05, self.poll_timeout_s) if self._in_flight else self.poll_timeout_s)
        if wait:
            THROTTLED.inc(timeout)
        self.intake(timeout)
        self._producer.poll(0)
        self._settle()
        self._report()

    def _report(self) -> None:
        backlog = self.outbox.backlog()
        BACKLOG.set(backlog.rows)
        BACKLOG_BYTES.set(backlog.bytes)
        now_ms = int(time.time() * 1000)
        BACKLOG_AGE.set(max(0.0, (now_ms - backlog.oldest_enqueued_at_ms) / 1000) if backlog.oldest_enqueued_at_ms else 0.0)
        LINK_UP.set(1 if not self._in_flight or self.clock() - self._waiting_since < self.down_after_s else 0)
        if self.clock() - self._last_forget > 60:
            self._last_forget = self.clock()
            self.outbox.forget_sent(now_ms - int(self.sent_memory_s * 1000))

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
        self._settle()
        self.consumer.close()
        self.outbox.close()
