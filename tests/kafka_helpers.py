"""Helpers for tests against the real embedded broker: topics, producing, draining, polling."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from services.common import jsonevents
from services.common.envelope import encode


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, *names: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(timeout=30)


def audit_record(i: int) -> bytes:
    """A small valid envelope (lfr.audit.v2) carrying its sequence number."""
    return encode("lfr.audit.v2", {"actor": "test", "action": "test.seq", "at_ms": i, "service": "tests", "details": {"seq": i}})


def produce(bootstrap: str, topic: str, values: list[bytes | None], keys: list[bytes] | None = None,
            headers: list[list[tuple[str, bytes]]] | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=keys[i] if keys else str(i).encode(), headers=headers[i] if headers else None)
    assert producer.flush(30) == 0


def produce_events(bootstrap: str, topic: str, schema: str, bodies: list[dict], keys: list[bytes] | None = None) -> None:
    """Plain JSON CloudEvents (services/common/jsonevents.py), as the services write them."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i, body in enumerate(bodies):
        value, headers = jsonevents.encode(schema, body)
        producer.produce(topic, value=value, key=keys[i] if keys else str(i).encode(), headers=headers)
    assert producer.flush(30) == 0


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class TopicReader:
    """Reads a topic from the beginning (no group commits) and keeps everything it saw."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.records: list = []
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        )
        metadata = self._consumer.list_topics(topic, timeout=10)
        self._consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])

    def poll(self) -> list:
        for record in self._consumer.consume(500, 0.2):
            if record.error() is None:
                self.records.append(record)
        return self.records

    def read_until(self, count: int, timeout_s: float = 30.0) -> list:
        wait_until(lambda: len(self.poll()) >= count, timeout_s, f"{count} records (have {len(self.records)})")
        return self.records

    def close(self) -> None:
        self._consumer.close()


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


@contextmanager
def running_in_thread(runner):
    """Run a StageRunner in a thread; stop and join it on exit (in-process tests only)."""
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", runner.run()), daemon=True)
    thread.start()
    try:
        yield result
    finally:
        runner.request_stop()
        thread.join(30)
        assert not thread.is_alive(), "runner did not stop"


class NoValidation:
    """A schema registry that accepts anything: lets a test write the record a schema forbids."""

    def validate(self, _schema: str, _data: object) -> None:
        return None
