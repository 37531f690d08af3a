"""Plain JSON CloudEvents (services/common/jsonevents.py): what goes on the wire where no image
travels, how bad records are refused, and the runner reading and writing them."""

from __future__ import annotations

import functools
import json

import pytest

from services.common import jsonevents
from services.common.envelope import encode
from services.common.errors import DecodeError, SchemaValidationError, UnknownSchemaError
from services.common.runner import StageRunner
from services.common.settings import PassthroughSettings, load_settings
from services.pipeline.passthrough.stage import process as passthrough
from tests.kafka_helpers import create_topics, produce, produce_events, running_in_thread, unique

COUNT = {"count_id": "lfr.frames.v1:0:1-4:4", "deployment_id": "van-1", "faces": 4, "counted_at_ms": 1_700_000_000_123}
ADJUDICATION = {"alert_id": "a1", "subject_id": "s1", "deployment_id": "van-1", "camera_id": "cam-1", "stage": "decision",
                "decision": "confirmed", "actor": "pc-1", "role": "operator", "alert_at_ms": 1, "decided_at_ms": 2,
                "alert_to_decision_ms": 1}


def _headers(schema: str) -> list[tuple[str, bytes]]:
    return [("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"/openlfr"), ("ce_type", b"t"),
            ("ce_dataschema", jsonevents.dataschema_for(schema).encode()), ("content-type", b"application/json")]


def test_value_is_the_message_as_json_and_attributes_are_headers():
    value, headers = jsonevents.encode("lfr.counts.v2", COUNT)
    assert json.loads(value.decode("utf-8")) == COUNT
    assert dict(headers) == {
        "ce_specversion": b"1.0", "ce_id": COUNT["count_id"].encode(), "ce_source": b"/openlfr/deployments/van-1",
        "ce_type": b"org.openlfr.faces.counted", "ce_time": b"2023-11-14T22:13:20.123Z", "ce_subject": b"van-1",
        "ce_dataschema": b"https://openlfr.org/schemas/lfr.counts.v2.json", "content-type": b"application/json"}
    assert jsonevents.decode_record(value, headers).data == COUNT
    value, headers = jsonevents.encode("lfr.adjudications.v3", ADJUDICATION)
    attrs = jsonevents.attributes_from_headers(headers)
    assert (attrs["id"], attrs["type"], attrs["subject"]) == ("a1.decision.2", "org.openlfr.adjudication.decision", "a1")
    assert jsonevents.decode_record(value, dict(headers)).schema == "lfr.adjudications.v3"


def test_envelope_records_still_decode_by_content_type():
    audit = {"actor": "t", "action": "x.y", "at_ms": 1, "service": "tests", "details": {}}
    assert jsonevents.decode_record(encode("lfr.audit.v2", audit), []).data == audit
    with pytest.raises(UnknownSchemaError):
        jsonevents.encode("lfr.faces.v1", {})  # images never travel as JSON


@pytest.mark.parametrize(("value", "headers", "error"), [
    (b'{"count_id": "x"}', _headers("lfr.counts.v2"), SchemaValidationError),
    (b"not json", _headers("lfr.counts.v2"), DecodeError),
    (b"[" * 5000 + b"]" * 5000, _headers("lfr.counts.v2"), DecodeError),
    (b'{"faces": NaN}', _headers("lfr.counts.v2"), DecodeError),
    (b'"a string"', _headers("lfr.counts.v2"), DecodeError),
    (b"", _headers("lfr.counts.v2"), DecodeError),
    (json.dumps(COUNT).encode(), _headers("lfr.faces.v1"), UnknownSchemaError),
    (json.dumps(COUNT).encode(), _headers("lfr.counts.v2")[:4] + _headers("lfr.counts.v2")[5:], DecodeError),
    (json.dumps(COUNT).encode(), [*_headers("lfr.counts.v2")[:4], ("ce_dataschema", b"https://evil.example/lfr.counts.v2.json"),
                                  ("content-type", b"application/json")], DecodeError),
])
def test_bad_json_events_are_refused_with_a_reason(value, headers, error):
    with pytest.raises(error):
        jsonevents.decode_record(value, headers)


def test_runner_reads_and_writes_json_events_and_dead_letters_bad_ones(broker, kafka_env, monkeypatch, reader):
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, sink, dlq)
    for name, value in (("LFR_INPUT_TOPICS", source), ("LFR_OUTPUT_TOPIC", sink), ("LFR_DLQ_TOPIC", dlq), ("LFR_GROUP_ID", unique("je"))):
        monkeypatch.setenv(name, value)
    settings = load_settings(PassthroughSettings)
    counts = [dict(COUNT, count_id=f"c{i}") for i in range(3)]
    produce_events(broker.bootstrap_servers, source, "lfr.counts.v2", counts, keys=[b"van-1"] * 3)
    producer_headers = _headers("lfr.counts.v2")
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    producer.produce(source, key=b"van-1", value=b'{"count_id": "x"}', headers=producer_headers)
    assert producer.flush(30) == 0
    produce(broker.bootstrap_servers, source, [b"{}"], keys=[b"van-1"])  # JSON without content-type: not an envelope
    runner = StageRunner("je-test", settings, functools.partial(passthrough, output_topic=sink), [source])
    out, dead = reader(sink), reader(dlq)
    with running_in_thread(runner):
        records = out.read_until(3)
        letters = dead.read_until(2)
    assert [json.loads(r.value()) for r in records] == counts
    for record in records:
        names = [name for name, _ in record.headers()]
        assert sorted(names) == sorted(set(names)), "the event's headers appear once"
        assert dict(record.headers())["content-type"] == b"application/json"
    reasons = sorted(dict(r.headers())["lfr_dlq_reason"] for r in letters)
    assert reasons == [b"decode_error", b"schema_invalid"]
