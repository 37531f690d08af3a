"""The runner under hostile records and produce failures, against the real embedded broker (issue #14)."""

from __future__ import annotations

import functools
import struct

from confluent_kafka import Producer
from prometheus_client import REGISTRY

from services.common.jsonevents import decode_record
from services.common.runner import StageRunner
from services.common.schemas import SchemaRegistry, schemas_dir
from services.common.settings import PassthroughSettings, load_settings
from services.pipeline.passthrough.stage import process as passthrough
from tests.kafka_helpers import audit_record, create_topics, produce, running_in_thread, unique

BIG = 8 * 1024 * 1024


def _setup(broker, monkeypatch, service: str):
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, sink, dlq, partitions=1)
    monkeypatch.setenv("LFR_INPUT_TOPICS", source)
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", sink)
    monkeypatch.setenv("LFR_DLQ_TOPIC", dlq)
    monkeypatch.setenv("LFR_GROUP_ID", unique(service))
    return load_settings(PassthroughSettings), source, sink, dlq


def _headers(record) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers() or ()}


def test_deeply_nested_header_is_dead_lettered_and_the_partition_flows(broker, kafka_env, monkeypatch, reader):
    settings, source, sink, dlq = _setup(broker, monkeypatch, "deep")
    header = ('{"schema":"lfr.audit.v2","data":' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    deep = b"LFR\x01" + struct.pack(">I", len(header)) + header
    produce(broker.bootstrap_servers, source, [audit_record(0), deep, audit_record(1)], keys=[b"k"] * 3)
    runner = StageRunner("deep-test", settings, functools.partial(passthrough, output_topic=sink), [source])
    out, dead = reader(sink), reader(dlq)
    with running_in_thread(runner) as result:
        assert len(out.read_until(2)) == 2
        dead_records = dead.read_until(1)
    assert result["code"] == 0
    headers = _headers(dead_records[0])
    assert headers["lfr_dlq_reason"] == "decode_error" and "deep" in headers["lfr_dlq_error"]


class _ExplodingRegistry(SchemaRegistry):
    """A real registry whose validator meets an error nobody planned for on one message type."""

    def validate(self, name, body):
        if name == "lfr.audit.v2" and body.get("actor") == "explode":
            raise RecursionError("validator recursed")
        return super().validate(name, body)


def test_unexpected_decode_exception_is_dead_lettered_not_fatal(broker, kafka_env, monkeypatch, reader):
    from services.common.envelope import encode

    settings, source, sink, dlq = _setup(broker, monkeypatch, "unexp")
    explode = encode("lfr.audit.v2", {"actor": "explode", "action": "x", "at_ms": 1, "service": "s", "details": {}})
    produce(broker.bootstrap_servers, source, [explode, audit_record(1)], keys=[b"k"] * 2)
    runner = StageRunner(
        "unexp-test", settings, functools.partial(passthrough, output_topic=sink), [source], registry=_ExplodingRegistry(schemas_dir())
    )
    out, dead = reader(sink), reader(dlq)
    with running_in_thread(runner) as result:
        (record,) = out.read_until(1)
        assert decode_record(record.value(), record.headers()).data["details"]["seq"] == 1
        headers = _headers(dead.read_until(1)[0])
    assert result["code"] == 0
    assert headers["lfr_dlq_reason"] == "decode_error" and headers["lfr_dlq_error_class"] == "RecursionError"


def test_record_too_big_to_dead_letter_whole_is_dead_lettered_truncated(broker, kafka_env, monkeypatch, reader):
    """Regression: the dead-letter headers pushed a near-limit record over message.max.bytes and the runner died."""
    settings, source, sink, dlq = _setup(broker, monkeypatch, "huge")
    near_limit = b"\x00not an envelope" + b"x" * (BIG - 400)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "message.max.bytes": BIG + 4096})
    producer.produce(source, value=near_limit, key=b"k", headers=[("trace", b"t" * 200)])
    producer.produce(source, value=audit_record(7), key=b"k")
    assert producer.flush(30) == 0
    runner = StageRunner("huge-test", settings, functools.partial(passthrough, output_topic=sink), [source])
    out, dead = reader(sink), reader(dlq)
    with running_in_thread(runner) as result:
        (record,) = out.read_until(1, timeout_s=60)
        assert decode_record(record.value(), record.headers()).data["details"]["seq"] == 7
        record = dead.read_until(1)[0]
    assert result["code"] == 0
    headers = _headers(record)
    assert headers["lfr_dlq_payload"] == "truncated"
    assert headers["lfr_dlq_reason"] == "decode_error" and headers["lfr_dlq_topic"] == source
    assert record.value() is None
    assert (REGISTRY.get_sample_value("lfr_messages_dead_lettered_total", {"service": "huge-test", "topic": source, "reason": "decode_error"}) or 0) == 1


def test_small_dead_letter_says_its_payload_is_the_original(broker, kafka_env, monkeypatch, reader):
    settings, source, sink, dlq = _setup(broker, monkeypatch, "orig")
    produce(broker.bootstrap_servers, source, [b"\x00garbage"], keys=[b"k"])
    runner = StageRunner("orig-test", settings, functools.partial(passthrough, output_topic=sink), [source])
    dead = reader(dlq)
    with running_in_thread(runner):
        record = dead.read_until(1)[0]
    assert _headers(record)["lfr_dlq_payload"] == "original" and record.value() == b"\x00garbage"
