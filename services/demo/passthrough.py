"""Pass-through pipeline demo (until the face pipeline lands): broker, topics, one service.

Starts the embedded broker, applies the topics, runs the pass-through service as its own
process copying lfr.frames.v1 to a demo topic, feeds it synthetic camera frames plus one
corrupt record, and reports what arrived, what was dead-lettered and the end-to-end latency.
Frames are generated (gradient images), never taken from a face data set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from services.common.broker import EmbeddedBroker
from services.common.envelope import decode, encode
from services.common.topics import apply_topics, load_topic_specs

DEMO_TOPIC = "lfr.demo.passthrough"


def _frame(seq: int, width: int = 640, height: int = 360) -> bytes:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    image = np.dstack([np.tile(x, (height, 1)), np.full((height, width), seq * 7 % 256, np.uint8), np.tile(x[::-1], (height, 1))])
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return jpeg.tobytes()


def _reader(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-reader-{topic}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    return consumer


def run(seconds: float = 10.0, fps: float = 10.0, as_json: bool = False) -> int:
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        apply_topics(admin, load_topic_specs())
        for future in admin.create_topics([NewTopic(DEMO_TOPIC, 8, 1)]).values():
            future.result()
        env = {
            **os.environ,
            "LFR_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LFR_INPUT_TOPICS": "lfr.frames.v1",
            "LFR_OUTPUT_TOPIC": DEMO_TOPIC,
            "LFR_GROUP_ID": "lfr-demo-passthrough",
            "LFR_SESSION_TIMEOUT_MS": "6000",
            "LFR_HEARTBEAT_INTERVAL_MS": "1000",
            "LFR_METRICS_PORT": "0",
        }
        service = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "passthrough"], env=env, stderr=subprocess.DEVNULL)
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        out, dlq = _reader(bootstrap, DEMO_TOPIC), _reader(bootstrap, "lfr.dlq.v1")
        latencies: list[float] = []
        dead = 0
        sent = 0
        started = time.time()
        try:
            while time.time() - started < seconds:
                now_ms = int(time.time() * 1000)
                frame = {"camera_id": "demo-cam-1", "deployment_id": "demo", "seq": sent, "captured_at_ms": now_ms,
                         "width": 640, "height": 360, "media_type": "image/jpeg", "image": _frame(sent)}
                producer.produce("lfr.frames.v1", key=b"demo-cam-1", value=encode("lfr.frames.v1", frame))
                sent += 1
                if sent == 5:
                    producer.produce("lfr.frames.v1", key=b"demo-cam-1", value=b"not an envelope")
                producer.poll(0)
                for record in out.consume(100, 1 / fps):
                    if record.error() is None:
                        latencies.append(time.time() * 1000 - decode(record.value()).data["captured_at_ms"])
                if not as_json and sent % int(fps * 2) == 0:
                    print(f"frames sent {sent:>4}  passed through {len(latencies):>4}", flush=True)
            producer.flush(10)
            deadline = time.time() + 30
            while (len(latencies) < sent or dead < 1) and time.time() < deadline:
                for record in out.consume(100, 0.2):
                    if record.error() is None:
                        latencies.append(time.time() * 1000 - decode(record.value()).data["captured_at_ms"])
                dead += sum(1 for r in dlq.consume(100, 0.05) if r.error() is None)
        finally:
            service.send_signal(signal.SIGTERM)
            code = service.wait(30)
            out.close()
            dlq.close()
            del producer, admin  # release client connections before the broker goes away
        summary = {
            "frames": sent,
            "passed_through": len(latencies),
            "dead_lettered": dead,
            "service_exit_code": code,
            "latency_ms": {q: round(float(np.percentile(latencies, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))} if latencies else {},
        }
        print(json.dumps(summary) if as_json else f"summary: {json.dumps(summary)}", flush=True)
        return 0 if summary["passed_through"] == sent and dead == 1 and code == 0 else 1
