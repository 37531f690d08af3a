"""Measure whether the embedded broker (Tansu, memory storage) enforces retention.ms and DeleteRecords.

Produces 50 records to a topic with retention.ms=5000 (segment.ms=1000, LogAppendTime), reads
them back after more than 5 s and again later, then asks for DeleteRecords. Figures go to
benchmarks/results/tansu_retention.json and are quoted in the README's privacy section.

    .venv/bin/python benchmarks/tansu_retention.py [--out FILE] [--smoke]

``--smoke`` reads back after 1 and 2 s instead of 8 and 25 (in make test; it shows the script
runs, not what the broker enforces).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.common.broker import EmbeddedBroker  # noqa: E402

TOPIC = "retention-probe"
COUNT = 50


def readable(bootstrap: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{time.monotonic_ns()}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    seen, empty = 0, 0
    while empty < 3:
        batch = [m for m in consumer.consume(500, 0.5) if m.error() is None]
        seen += len(batch)
        empty = 0 if batch else empty + 1
    consumer.close()
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tansu_retention.json")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    result: dict = {"topic_config": {"retention.ms": "5000", "segment.ms": "1000", "message.timestamp.type": "LogAppendTime"}}
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(TOPIC, 1, 1, config=result["topic_config"])]).values():
            future.result(30)
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(COUNT):
            producer.produce(TOPIC, value=f"record {i}".encode())
        assert producer.flush(30) == 0
        produced_at = time.monotonic()
        result["produced"] = COUNT
        result["readable"] = []
        for wait_s in (1, 2) if args.smoke else (8, 25):
            time.sleep(max(0.0, produced_at + wait_s - time.monotonic()))
            result["readable"].append({"after_s": round(time.monotonic() - produced_at, 1), "records": readable(bootstrap)})
        try:
            futures = admin.delete_records([TopicPartition(TOPIC, 0, COUNT)], request_timeout=15)
            for future in futures.values():
                future.result(20)
            result["delete_records"] = "accepted"
        except Exception as exc:  # noqa: BLE001 - the outcome is the measurement
            result["delete_records"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
        try:
            result["readable_after_delete_records"] = readable(bootstrap)
        except Exception as exc:  # noqa: BLE001
            result["readable_after_delete_records"] = f"failed: {type(exc).__name__}"
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
