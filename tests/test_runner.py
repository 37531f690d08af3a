"""The Kafka runner against the real embedded broker: flow, dead letters, retries, metrics."""

from __future__ import annotations

import functools

import pytest
from prometheus_client import REGISTRY

from services.common.envelope import decode, encode
from services.common.jsonevents import decode_record
from services.common.errors import TransientError
from services.common.runner import StageRunner
from services.common.settings import PassthroughSettings, load_settings
from services.common.stage import Output
from services.pipeline.passthrough.stage import process as passthrough
from tests.kafka_helpers import (
    audit_record,
    committed_total,
    create_topics,
    produce,
    running_in_thread,
    unique,
    wait_until,
)


def _setup(broker, kafka_env, monkeypatch, service: str):
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, sink, dlq)
    group = unique(service)
    monkeypatch.setenv("LFR_INPUT_TOPICS", source)
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", sink)
    monkeypatch.setenv("LFR_DLQ_TOPIC", dlq)
    monkeypatch.setenv("LFR_GROUP_ID", group)
    return load_settings(PassthroughSettings), source, sink, dlq, group


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_pass_through_n_in_n_out_and_offsets_committed(broker, kafka_env, monkeypatch, reader):
    settings, source, sink, _dlq, group = _setup(broker, kafka_env, monkeypatch, "pt")
    n = 200
    produce(broker.bootstrap_servers, source, [audit_record(i) for i in range(n)])
    runner = StageRunner("pt-test", settings, functools.partial(passthrough, output_topic=sink), [source])
    out = reader(sink)
    with running_in_thread(runner) as result:
        records = out.read_until(n)
        wait_until(lambda: committed_total(broker.bootstrap_servers, group, source) == n, 20, "offsets committed")
    assert result["code"] == 0
    seqs = sorted(decode_record(r.value(), r.headers()).data["details"]["seq"] for r in records)
    assert seqs == list(range(n))
    assert _metric("lfr_messages_consumed_total", service="pt-test", topic=source) == n
    assert _metric("lfr_messages_produced_total", service="pt-test", topic=sink) == n
    assert _metric("lfr_batch_size_messages_count", service="pt-test") >= 1


def test_poison_messages_are_dead_lettered_with_headers_and_flow_continues(broker, kafka_env, monkeypatch, reader):
    settings, source, sink, dlq, _group = _setup(broker, kafka_env, monkeypatch, "dlq")
    schema_invalid = b"LFR\x01" + (b'{"schema":"lfr.audit.v2","data":{"actor":"x"}}'.__len__()).to_bytes(4, "big") + b'{"schema":"lfr.audit.v2","data":{"actor":"x"}}'
    future_version = audit_record(99).replace(b"lfr.audit.v2", b"lfr.audit.v9")
    values = [audit_record(0), b"\x00garbage", schema_invalid, future_version, None] + [audit_record(i) for i in range(1, 6)]
    produce(broker.bootstrap_servers, source, values, keys=[b"k"] * len(values))  # one partition, in order
    runner = StageRunner("dlq-test", settings, functools.partial(passthrough, output_topic=sink), [source])
    out, dead = reader(sink), reader(dlq)
    with running_in_thread(runner):
        assert len(out.read_until(6)) == 6
        dead_records = dead.read_until(4)
    reasons = []
    for record in dead_records:
        headers = {k: v.decode() for k, v in record.headers()}
        assert headers["lfr_dlq_topic"] == source
        assert headers["lfr_dlq_service"] == "dlq-test"
        assert int(headers["lfr_dlq_partition"]) >= 0 and int(headers["lfr_dlq_offset"]) >= 0
        assert headers["lfr_dlq_error_class"] and headers["lfr_dlq_error"]
        reasons.append(headers["lfr_dlq_reason"])
    assert sorted(reasons) == ["decode_error", "decode_error", "schema_invalid", "unknown_schema"]
    # The original bytes are kept so the record can be replayed once the cause is fixed.
    assert {r.value() for r in dead_records} == {b"\x00garbage", schema_invalid, future_version, None}
    assert _metric("lfr_messages_dead_lettered_total", service="dlq-test", topic=source, reason="unknown_schema") == 1


def test_stage_error_isolates_the_failing_message(broker, kafka_env, monkeypatch, reader):
    settings, source, sink, dlq, _group = _setup(broker, kafka_env, monkeypatch, "iso")

    def stage(batch):
        for message in batch:
            if message.data["details"]["seq"] == 3:
                raise ValueError("cannot handle seq 3")
        return [Output(sink, m.schema, m.data, key=m.key) for m in batch]

    produce(broker.bootstrap_servers, source, [audit_record(i) for i in range(8)], keys=[b"k"] * 8)
    out, dead = reader(sink), reader(dlq)
    with running_in_thread(StageRunner("iso-test", settings, stage, [source])):
        seqs = sorted(decode_record(r.value(), r.headers()).data["details"]["seq"] for r in out.read_until(7))
        dead_records = dead.read_until(1)
    assert seqs == [0, 1, 2, 4, 5, 6, 7]
    headers = dict(dead_records[0].headers())
    assert headers["lfr_dlq_reason"] == b"stage_error" and headers["lfr_dlq_error_class"] == b"ValueError"
    assert decode(dead_records[0].value()).data["details"]["seq"] == 3


def test_invalid_output_is_dead_lettered_not_sent(broker, kafka_env, monkeypatch, reader):
    settings, source, sink, dlq, _group = _setup(broker, kafka_env, monkeypatch, "outv")

    def stage(batch):
        return [Output(sink, "lfr.audit.v2", {**m.data, "at_ms": -1 if m.data["at_ms"] == 1 else m.data["at_ms"]}) for m in batch]

    produce(broker.bootstrap_servers, source, [audit_record(i) for i in range(3)], keys=[b"k"] * 3)
    out, dead = reader(sink), reader(dlq)
    with running_in_thread(StageRunner("outv-test", settings, stage, [source])):
        assert len(out.read_until(2)) == 2
        assert dict(dead.read_until(1)[0].headers())["lfr_dlq_reason"] == b"output_invalid"


def test_transient_errors_are_retried_not_dead_lettered(broker, kafka_env, monkeypatch, reader):
    settings, source, sink, dlq, _group = _setup(broker, kafka_env, monkeypatch, "tr")
    failures = {"left": 3}

    def flaky(batch):
        if failures["left"]:
            failures["left"] -= 1
            raise TransientError("qdrant unavailable")
        return [Output(sink, m.schema, m.data, key=m.key) for m in batch]

    produce(broker.bootstrap_servers, source, [audit_record(i) for i in range(5)])
    out, dead = reader(sink), reader(dlq)
    with running_in_thread(StageRunner("tr-test", settings.model_copy(update={"retry_backoff_initial_s": 0.05}), flaky, [source])):
        out.read_until(5)
    assert dead.poll() == []
    assert _metric("lfr_transient_retries_total", service="tr-test") == 3


def test_transient_errors_beyond_budget_rewind_and_redeliver(broker, kafka_env, monkeypatch, reader):
    settings, source, sink, dlq, _group = _setup(broker, kafka_env, monkeypatch, "rw")
    calls = {"n": 0}

    def down_for_a_while(batch):
        calls["n"] += 1
        if calls["n"] <= 4:
            raise ConnectionError("dependency down")
        return [Output(sink, m.schema, m.data, key=m.key) for m in batch]

    # Budget is half of max.poll.interval: 10 s -> 5 s; backoff 2 s quickly exhausts it.
    tight = settings.model_copy(update={"max_poll_interval_ms": 10_000, "retry_backoff_initial_s": 2.0})
    produce(broker.bootstrap_servers, source, [audit_record(i) for i in range(4)], keys=[b"k"] * 4)
    out, dead = reader(sink), reader(dlq)
    with running_in_thread(StageRunner("rw-test", tight, down_for_a_while, [source])):
        records = out.read_until(4, timeout_s=60)
    assert sorted(decode_record(r.value(), r.headers()).data["details"]["seq"] for r in records) == [0, 1, 2, 3]
    assert dead.poll() == []
    assert _metric("lfr_batch_redeliveries_total", service="rw-test") >= 1


def test_consumer_lag_is_reported_per_partition(broker, kafka_env, monkeypatch, reader):
    settings, source, sink, _dlq, _group = _setup(broker, kafka_env, monkeypatch, "lag")
    produce(broker.bootstrap_servers, source, [audit_record(i) for i in range(30)])
    runner = StageRunner("lag-test", settings.model_copy(update={"lag_report_interval_s": 0.2}), functools.partial(passthrough, output_topic=sink), [source])
    with running_in_thread(runner):
        reader(sink).read_until(30)
        wait_until(
            lambda: [_metric("lfr_consumer_lag_messages", service="lag-test", topic=source, partition=str(p)) for p in range(3)] == [0.0] * 3
            and REGISTRY.get_sample_value("lfr_consumer_lag_messages", {"service": "lag-test", "topic": source, "partition": "0"}) is not None,
            15,
            "lag gauges at zero for every partition",
        )


@pytest.mark.parametrize("field", ["input_topics", "output_topic"])
def test_missing_required_setting_names_the_variable(monkeypatch, field):
    from services.common.errors import SettingsError

    monkeypatch.setenv("LFR_INPUT_TOPICS", "a")
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", "b")
    monkeypatch.delenv("LFR_" + field.upper())
    with pytest.raises(SettingsError, match="LFR_" + field.upper()):
        load_settings(PassthroughSettings)


def test_envelope_carries_binary_as_bytes_not_base64():
    import base64

    jpeg = bytes(range(256)) * 40
    value = encode(
        "lfr.frames.v1",
        {"camera_id": "c1", "deployment_id": "d1", "seq": 0, "captured_at_ms": 1, "width": 4, "height": 4, "media_type": "image/jpeg", "image": jpeg},
    )
    assert jpeg in value and base64.b64encode(jpeg)[:64] not in value
    assert decode(value).data["image"] == jpeg
    assert len(value) < len(jpeg) + 400


def test_assigned_partitions_gauge_counts_cooperative_increments(broker, kafka_env, monkeypatch, reader):
    """Regression: with cooperative-sticky, assignment() lags the on_assign increment, so the gauge read 0."""
    settings, source, sink, _dlq, _group = _setup(broker, kafka_env, monkeypatch, "asg")
    runner = StageRunner("asg-test", settings, functools.partial(passthrough, output_topic=sink), [source])
    with running_in_thread(runner):
        wait_until(lambda: _metric("lfr_assigned_partitions", service="asg-test") == 3, 20, "3 partitions assigned")


class _SendsEachKeyOnce:
    """A ResendingStage: like detect's tracks, it holds back what it believes it already sent."""

    def __init__(self, output_topic: str) -> None:
        self.output_topic = output_topic
        self.sent: set[bytes | None] = set()
        self.lost: list[str] = []

    def __call__(self, batch):
        fresh = [m for m in batch if m.key not in self.sent]
        self.sent |= {m.key for m in fresh}
        return [Output(self.output_topic, m.schema, m.data, key=m.key) for m in fresh]

    def outputs_delivered(self) -> None:
        pass  # what was sent stays sent

    def outputs_lost(self, reason: str) -> None:
        self.lost.append(reason)
        self.sent.clear()


def test_a_rewound_batch_is_sent_again_by_a_stage_that_remembers_what_it_sent(broker, kafka_env, monkeypatch, reader):
    """A produce that fails (the output topic is missing, as after a broker lost it) rewinds the
    batch; the runner tells the stage its outputs were lost, so the re-delivered records go out
    once the topic is back instead of being held back as already sent."""
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, dlq)  # the output topic does not exist yet
    monkeypatch.setenv("LFR_INPUT_TOPICS", source)
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", sink)
    monkeypatch.setenv("LFR_DLQ_TOPIC", dlq)
    monkeypatch.setenv("LFR_GROUP_ID", unique("resend"))
    # Deliveries time out after half of max.poll.interval (capped): 5 s here.
    settings = load_settings(PassthroughSettings).model_copy(update={"max_poll_interval_ms": 10_000, "retry_backoff_initial_s": 0.5})
    stage = _SendsEachKeyOnce(sink)
    produce(broker.bootstrap_servers, source, [audit_record(i) for i in range(3)], keys=[b"a", b"b", b"c"])
    with running_in_thread(StageRunner("resend-test", settings, stage, [source])):
        wait_until(lambda: "rewind" in stage.lost, 30, "a failed produce to rewind the batch")
        create_topics(broker.bootstrap_servers, sink)
        out = reader(sink)
        # At least once: a record from a timed-out attempt may arrive as well as its re-send.
        wait_until(lambda: {decode_record(r.value(), r.headers()).data["details"]["seq"] for r in out.poll()} == {0, 1, 2}, 60, "every record once the topic is back")
    assert _metric("lfr_batch_redeliveries_total", service="resend-test") >= 1
