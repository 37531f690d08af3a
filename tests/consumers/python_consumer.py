"""A downstream consumer of OpenLFR alerts in Python, as a force's integrator writes it: the Kafka
client (confluent-kafka) and the CloudEvents SDK (`cloudevents` on PyPI), no OpenLFR code.
docs/downstream.md shows it; tests/consumers/test_consumers.py runs it.

    python tests/consumers/python_consumer.py <bootstrap> lfr.alerts.v3 <group id> [count]
"""

from __future__ import annotations

import json
import sys

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event
from confluent_kafka import Consumer


def consume(bootstrap: str, topic: str, group_id: str, count: int, timeout_s: float = 30.0) -> list:
    """The first ``count`` distinct events of ``topic`` (CloudEvents SDK events, data = dict)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group_id,              # one group per downstream system: each gets every alert
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,       # commit after the work is done: at-least-once
    })
    consumer.subscribe([topic])
    events, seen = [], set()
    try:
        polls = int(timeout_s / 0.5)
        while len(events) < count and polls > 0:
            polls -= 1
            record = consumer.poll(0.5)
            if record is None or record.error() is not None:
                continue
            message = KafkaMessage(headers=dict(record.headers() or []), key=record.key(), value=record.value())
            event = from_binary_event(message)  # ce_* headers -> attributes; JSON value -> dict data
            if event.get_id() not in seen:      # a redelivery carries the same ce_id
                seen.add(event.get_id())
                events.append(event)            # ... hand it to the force's system here ...
            consumer.commit(record, asynchronous=False)
    finally:
        consumer.close()
    return events


if __name__ == "__main__":
    bootstrap, topic, group = sys.argv[1:4]
    for event in consume(bootstrap, topic, group, int(sys.argv[4]) if len(sys.argv) > 4 else 1):
        data = event.get_data()
        print(json.dumps({"id": event.get_id(), "type": event.get_type(), "subject_id": data["subject_id"],
                          "priority": data["priority"], "score": data["score"]}))
