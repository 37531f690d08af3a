"""The sealing side's view of lfr.evidence_keys.v1: the newest public key valid now.

Used by the dispatcher. A background thread reads the compacted topic from its start (no
consumer group, nothing committed) and keeps the public keys in memory; they are not secret.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from services.common.envelope import decode

logger = logging.getLogger(__name__)
KEYS_SCHEMA = "lfr.evidence_keys.v1"


@dataclass(frozen=True)
class TransitKey:
    key_id: str
    public_key: bytes
    not_before_ms: int
    not_after_ms: int


def current_key(keys: dict[str, TransitKey], now_ms: int) -> TransitKey | None:
    """The valid key that started last; None when the review service has published none valid."""
    valid = [k for k in keys.values() if k.not_before_ms <= now_ms < k.not_after_ms]
    return max(valid, key=lambda k: k.not_before_ms) if valid else None


class PublicKeyring:
    def __init__(self, client_config: dict, topic: str, clock: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._config = {**client_config, "group.id": "lfr-evidence-keyring", "enable.auto.commit": False}
        self._topic = topic
        self._clock = clock
        self._keys: dict[str, TransitKey] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evidence-keyring", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def current(self) -> TransitKey | None:
        with self._lock:
            return current_key(self._keys, self._clock())

    def _run(self) -> None:
        consumer = Consumer(self._config)
        try:
            while not self._stop.is_set():
                try:
                    partitions = consumer.list_topics(self._topic, timeout=5).topics[self._topic].partitions
                    if partitions:
                        break
                except Exception:  # noqa: BLE001 - broker or topic not there yet
                    pass
                self._stop.wait(1.0)
            else:
                return
            consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions])
            while not self._stop.is_set():
                for record in consumer.consume(100, 0.5):
                    if record.error() is not None:
                        continue
                    self._apply(record.key(), record.value())
        finally:
            consumer.close()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        with self._lock:
            if value is None:
                self._keys.pop((key or b"").decode(), None)
                return
            try:
                data = decode(value).data
                if decode(value).schema != KEYS_SCHEMA:
                    raise ValueError("not a transit key")
            except Exception as exc:  # noqa: BLE001 - a bad key record is skipped, never used
                logger.warning("evidence key record ignored", extra={"error_class": type(exc).__name__})
                return
            self._keys[data["key_id"]] = TransitKey(data["key_id"], bytes(data["public_key"]), data["not_before_ms"], data["not_after_ms"])
            now = self._clock()
            for key_id in [k for k, v in self._keys.items() if v.not_after_ms < now]:
                del self._keys[key_id]
