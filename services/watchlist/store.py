"""Reads and writes the watchlist's source of truth (lfr.watchlist.v1) and its audit trail."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from services.common.audit import audit_record
from services.common.envelope import decode, encode
from services.common.kafka_config import client_config, producer_config
from services.common.settings import WatchlistSettings

from .entry import WatchlistEntry

logger = logging.getLogger(__name__)
AUDIT_SERVICE = "watchlist"


class StoreWriteError(RuntimeError):
    """The broker did not acknowledge a write in time (a RuntimeError, as before)."""

    exit_code = 4  # services.common.cli_support.EXIT_KAFKA


class WatchlistStore:
    def __init__(self, settings: WatchlistSettings) -> None:
        self.settings = settings
        self._producer = Producer(producer_config(settings))
        self._batching = False
        self._errors: list = []

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
                    key = (record.key() or b"").decode()
                    if record.value() is None:
                        entries.pop(key, None)
                    else:
                        entry = WatchlistEntry.from_data(decode(record.value()).data)
                        entries[entry.subject_id] = entry
            return entries
        finally:
            consumer.close()

    def publish(self, entry: WatchlistEntry) -> None:
        self._send(self.settings.watchlist_topic, entry.subject_id, encode("lfr.watchlist.v1", entry.to_data()))

    def tombstone(self, subject_id: str) -> None:
        self._send(self.settings.watchlist_topic, subject_id, None)

    def audit(self, actor: str, action: str, subject_id: str | None, details: dict[str, Any] | None = None) -> None:
        key, value = audit_record(AUDIT_SERVICE, actor, action, subject_id, details)
        self._send(self.settings.audit_topic, key.decode(), value)

    def _send(self, topic: str, key: str, value: bytes | None) -> None:
        if not self._batching:
            self._errors = []
        while True:
            try:
                self._producer.produce(topic, key=key.encode(), value=value,
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
