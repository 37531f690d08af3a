"""helm test: every pipeline topic exists, and one record makes a produce-consume round trip.

Runs in the OpenLFR image with the release's Kafka settings (LFR_KAFKA_*, TLS and SASL
included). The round trip uses a throw-away topic (lfr-helm-test-<random>), deleted at the
end, so no pipeline topic ever sees a test record. Exit 0 on success, 1 with a reason.
"""

import os
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from services.common.kafka_config import client_config, producer_config
from services.common.settings import KafkaSettings, load_settings
from services.common.topics import describe_topics, load_topic_specs
from services.governance.forces.topics import specs_for_force


def main() -> int:
    timeout_s = float(os.environ.get("LFR_TEST_TIMEOUT_S", "60"))
    settings = load_settings(KafkaSettings)
    admin = AdminClient(client_config(settings))

    specs = specs_for_force(load_topic_specs(), settings.force)  # LFR_FORCE: that force's topics (lfr.<force>.)
    missing = [t.name for t in describe_topics(admin, specs, timeout_s) if t.partitions is None]
    if missing:
        print(f"FAIL: topics missing: {', '.join(missing)}", flush=True)
        return 1
    print("ok: every pipeline topic exists", flush=True)

    topic = f"lfr-helm-test-{uuid.uuid4().hex[:12]}"
    for future in admin.create_topics([NewTopic(topic, 1, config={"retention.ms": "600000"})],
                                      operation_timeout=timeout_s, request_timeout=timeout_s).values():
        future.result()
    try:
        payload = uuid.uuid4().bytes
        errors = []
        producer = Producer(producer_config(settings))
        producer.produce(topic, key=b"helm-test", value=payload, on_delivery=lambda err, _msg: err and errors.append(err))
        if producer.flush(timeout_s) or errors:
            print(f"FAIL: produce to {topic}: {errors[0].str() if errors else 'timed out'}", flush=True)
            return 1
        consumer = Consumer({**client_config(settings), "group.id": topic, "enable.auto.commit": False})
        try:
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                record = consumer.poll(0.5)
                if record is not None and record.error() is None and record.value() == payload:
                    print(f"ok: produce-consume round trip on {topic}", flush=True)
                    return 0
            print(f"FAIL: the record produced to {topic} was not consumed within {timeout_s} s", flush=True)
            return 1
        finally:
            consumer.close()
    finally:
        for future in admin.delete_topics([topic], operation_timeout=timeout_s, request_timeout=timeout_s).values():
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - the verdict is already known
                print(f"note: could not delete {topic}: {exc}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
