"""Poison records of each hostile kind (issue #14), written to the topics the pipeline reads.

Every kind goes to every topic a service reads; lfr.watchlist.v1 also gets a schema-valid entry
with a 64-dim vector for a person on the watchlist (the record that used to kill the loader
after deleting that person's points). Watchlist and deployment records are written audited and
signed, as a trusted operator's broken tool would: an unsigned one is refused before it is read
at all (a dead letter too, `signature_refused`), which would not reach the decoder.
"""

from __future__ import annotations

import struct
import time

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from services.common.delivery import MAX_RECORD_BYTES
from services.common.envelope import encode
from services.common.settings import WatchlistSettings, load_settings
from services.governance.audit.writer import change_digest
from services.tools.demo.run import DEPLOYMENT
from services.engine.face.models import SFACE, ModelIdentity
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.governance.watchlist.store import WatchlistStore
from tests.kafka_helpers import unique

from .harness import CrowdRun, Injected

SCHEMAS = {topic: topic for topic in ("lfr.frames.v1", "lfr.faces.v1", "lfr.embeddings.v1", "lfr.matches.v1",
                                      "lfr.watchlist.v1", "lfr.deployments.v1")}
KINDS = ("deep_nesting", "huge_number", "wrong_types", "truncated_attachment", "bad_utf8", "oversized", "random_bytes")


def _envelope(header: bytes, blobs: bytes = b"") -> bytes:
    return b"LFR\x01" + struct.pack(">I", len(header)) + header + blobs


def hostile(schema: str, sample: bytes | None) -> dict[str, bytes]:
    """One record of each kind for a topic of ``schema``; ``sample`` is a real record to truncate."""
    head = b'{"schema":"' + schema.encode() + b'","data":'
    truncated = sample[:-5] if sample and len(sample) > 16 else _envelope(head + b'{"image":{"$bytes":[0,4096]}}}', b"\x00" * 10)
    return {
        "deep_nesting": _envelope(head + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        "huge_number": _envelope(head + b'{"seq":' + b"9" * 50_000 + b',"score":1e999}}'),
        "wrong_types": _envelope(head + b'{"seq":"ten","camera_id":[1],"score":"high","subject_id":{}}}'),
        "truncated_attachment": truncated,
        "bad_utf8": _envelope(head + b'{"camera_id":"\xff\xfe\xc3","subject_id":"\xed\xa0\x80"}}'),
        # Near the 8 MiB record limit: the dead letter (its headers added) cannot carry it whole.
        "oversized": _envelope(head + b'{"seq":1}}', b"\x00" * (MAX_RECORD_BYTES - 4096)),
        "random_bytes": np.random.default_rng(14).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }


def first_record(bootstrap: str, topic: str) -> bytes | None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("sample"), "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for record in consumer.consume(10, 0.5):
                if record.error() is None and record.value():
                    return record.value()
        return None
    finally:
        consumer.close()


def produce_raw(bootstrap: str, topic: str, records: dict[str, bytes]) -> list[Injected]:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": MAX_RECORD_BYTES + 65536,
                         "allow.auto.create.topics": False})
    landed: list[Injected] = []
    errors: list[str] = []

    def delivered(err, msg, kind: str) -> None:
        if err is not None:
            errors.append(f"{kind}: {err}")
        else:
            landed.append(Injected(msg.topic(), msg.partition(), msg.offset(), kind))

    for kind, value in records.items():
        producer.produce(topic, key=f"poison-{kind}".encode(), value=value, on_delivery=lambda e, m, k=kind: delivered(e, m, k))
    assert producer.flush(60) == 0 and not errors, errors
    return landed


def sixty_four_dim_entry(subject_id: str) -> bytes:
    vector = np.random.default_rng(64).standard_normal(64).astype(np.float32)
    entry = WatchlistEntry(
        subject_id=subject_id, reference="POISON-64", category="suspect", priority="red",
        provenance=Provenance("poison", 1, "fault injection", "tests/faults", 1), expires_at_ms=int(time.time() * 1000) + 86_400_000,
        deployments=("demo-van-1",), embeddings=(EnrolledEmbedding(ModelIdentity(SFACE.name, SFACE.sha256), vector / np.linalg.norm(vector)),),
    )
    return encode("lfr.watchlist.v1", entry.to_data())


def write_signed(run: CrowdRun, topic: str, records: dict[str, tuple[str, bytes]]) -> list[Injected]:
    """Write (key, value) per kind as a trusted operator's broken tool would: audited first, then
    signed with the operator's key (the path WatchlistStore and DeploymentStore write through)."""
    signing = {name.removeprefix("LFR_").lower(): value for name, value in run.pipeline.signing_env.items()}
    store = WatchlistStore(load_settings(WatchlistSettings, kafka_bootstrap_servers=run.pipeline.bootstrap, **signing))
    producer = Producer({"bootstrap.servers": run.pipeline.bootstrap, "message.max.bytes": MAX_RECORD_BYTES + 65536,
                         "allow.auto.create.topics": False})
    landed: list[Injected] = []
    errors: list[str] = []

    def delivered(err, msg, kind: str) -> None:
        if err is not None:
            errors.append(f"{kind}: {err}")
        else:
            landed.append(Injected(msg.topic(), msg.partition(), msg.offset(), kind))

    for kind, (key, value) in records.items():
        digest = change_digest(topic, key.encode(), value)
        _record, audit_hash = store.audit_writer.write("test.fault_injection", key, {"change_sha256": digest})
        producer.produce(topic, key=key.encode(), value=value, headers=store.signer.record_headers(topic, key.encode(), value, audit_hash=audit_hash),
                         on_delivery=lambda e, m, k=kind: delivered(e, m, k))
    assert producer.flush(60) == 0 and not errors, errors
    return landed


def poison(run: CrowdRun, topic: str) -> list[Injected]:
    """Every hostile kind into ``topic``; returns where each record landed."""
    sample = first_record(run.pipeline.bootstrap, topic)
    records = hostile(SCHEMAS[topic], sample)
    if topic not in ("lfr.watchlist.v1", "lfr.deployments.v1"):
        return produce_raw(run.pipeline.bootstrap, topic, records)
    if topic == "lfr.deployments.v1":
        # Keyed by the running deployment: a bad record must leave its last valid state in force.
        return write_signed(run, topic, {kind: (DEPLOYMENT, value) for kind, value in records.items()})
    subject = run.cast.watchlist[0][0]  # a listed person: their entry must survive the bad update
    signed = {kind: (f"poison-{kind}", value) for kind, value in records.items()}
    signed["vector_64"] = (subject, sixty_four_dim_entry(subject))
    return write_signed(run, topic, signed)
