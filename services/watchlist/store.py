"""Reads and writes the watchlist's source of truth (lfr.watchlist.v1) and its audit trail."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from services.common.envelope import decode, encode
from services.common.kafka_config import client_config, producer_config
from services.common.settings import WatchlistSettings

from .entry import WatchlistEntry

logger = logging.getLogger(__name__)
AUDIT_SERVICE = "watchlist"


class WatchlistStore:
    def __init__(self, settings: WatchlistSettings) -> None:
        self.settings = settings
        self._producer = Producer(producer_config(settings))

    def read_all(self, timeout_s: float = 30.0) -> dict[str, WatchlistEntry]:
        """Current entries: the last record per subject, tombstones applied."""
        consumer = Consumer({**client_config(self.settings), "group.id": "lfr-watchlist-cli", "enable.auto.commit": False})
        try:
            topic = self.settings.watchlist_topic
            partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
            targets = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in partitions}
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            entries: dict[str, WatchlistEntry] = {}
            deadline = time.monotonic() + timeout_s
            while any(h > 0 for h in targets.values()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
                for record in consumer.consume(500, 0.2):
                    if record.error() is not None:
                        continue
                    if record.offset() + 1 >= targets.get(record.partition(), 0):
                        targets[record.partition()] = 0
                    key = (record.key() or b"").decode("utf-8", "replace")
                    if record.value() is None:
                        entries.pop(key, None)
                        continue
                    try:
                        entry = WatchlistEntry.from_data(decode(record.value()).data)
                    except Exception as exc:  # noqa: BLE001 - list and remove must work past any bad record
                        logger.warning(
                            "unreadable watchlist record skipped",
                            extra={"partition": record.partition(), "offset": record.offset(), "error_class": type(exc).__name__},
                        )
                        continue
                    entries[entry.subject_id] = entry
            return entries
        finally:
            consumer.close()

    def publish(self, entry: WatchlistEntry) -> None:
        self._send(self.settings.watchlist_topic, entry.subject_id, encode("lfr.watchlist.v1", entry.to_data()))

    def tombstone(self, subject_id: str) -> None:
        self._send(self.settings.watchlist_topic, subject_id, None)

    def audit(self, actor: str, action: str, subject_id: str | None, details: dict[str, Any] | None = None) -> None:
        record: dict[str, Any] = {"actor": actor, "action": action, "at_ms": int(time.time() * 1000), "service": AUDIT_SERVICE}
        if subject_id:
            record["subject_id"] = subject_id
        if details:
            record["details"] = details
        self._send(self.settings.audit_topic, subject_id or actor, encode("lfr.audit.v1", record))

    def _send(self, topic: str, key: str, value: bytes | None) -> None:
        errors: list = []
        self._producer.produce(topic, key=key.encode(), value=value, on_delivery=lambda err, _msg: err and errors.append(err))
        if self._producer.flush(30) or errors:
            raise RuntimeError(f"could not write to {topic}: {errors[0].str() if errors else 'timed out'}")
