"""The core intake (issue #26): what a van's link forwards is checked at the core before the
core's topics see it: a known van, its own force, a valid outcome, once; refused records are
dead-lettered at the core without their value and never block what comes after them."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from services.common import jsonevents
from services.common.envelope import decode, encode
from services.van.fleet.heartbeat import build_heartbeat, heartbeat_record
from services.van.fleet.intake import check_forwarded
from services.van.fleet.register import RegisterError, parse_register
from tests.kafka_helpers import create_topics, unique, wait_until

VANS = {"van-1": "default", "van-2": "gmp"}
NOW = 1_800_000_000_000


def audit(seq: int) -> bytes:
    return encode("lfr.audit.v2", {"actor": "van:van-1", "action": "test.seq", "at_ms": seq, "service": "tests", "details": {"seq": seq}})


def count(seq: int) -> tuple[bytes, list]:
    """A counts record (plain JSON CloudEvent: value and ce_* headers), as the van's dispatcher writes it."""
    return jsonevents.encode("lfr.counts.v2", {"count_id": f"c-{seq}", "deployment_id": "dep-1", "faces": seq, "counted_at_ms": NOW + seq})


def counted(seq: int, **kwargs) -> tuple[bytes, list]:
    value, ce = count(seq)
    return value, ce + headers(**{"topic": "lfr.counts.v2", **kwargs})


def headers(van="van-1", topic="lfr.counts.v2", link_id="id-1"):
    found = [("lfr_topic", topic.encode())] if topic else []
    found += [("lfr_van", van.encode())] if van else []
    return found + ([("lfr_link_id", link_id.encode())] if link_id else [])


def beat(van="van-1", force="default", tmp_path=None) -> bytes:
    return heartbeat_record(build_heartbeat(van_id=van, force=force, now_ms=NOW, held={}, cameras={"cam-1": 10.0}, disk_path=tmp_path))[1]


def never(_record_id):
    return False


def test_an_outcome_from_a_known_van_of_its_own_force_is_accepted_and_goes_on_to_its_topic():
    verdict = check_forwarded(*counted(1), VANS, never)
    assert verdict.accepted and verdict.topic == "lfr.counts.v2" and verdict.record_id == "id-1"
    assert ("lfr_topic", b"lfr.counts.v2") not in verdict.headers and ("lfr_van", b"van-1") in verdict.headers
    assert ("ce_id", dict(count(1)[1])["ce_id"]) in verdict.headers  # the van's CloudEvents id travels on


def test_a_van_s_audit_record_is_checked_but_held_off_the_core_s_audit_chain():
    assert check_forwarded(audit(1), headers(topic="lfr.audit.v2"), VANS, never).reason == "held"
    assert check_forwarded(audit(1), headers(topic="lfr.audit.v2", van="van-99"), VANS, never).reason == "unknown_van"


@pytest.mark.parametrize(("value", "found", "reason"), [
    counted(1, van=None) + ("no_van",),
    counted(1, van="van-99") + ("unknown_van",),
    counted(1, topic="lfr.frames.v1") + ("not_an_outcome",),
    counted(1, topic="lfr.embeddings.v1") + ("not_an_outcome",),
    counted(1, topic=None) + ("not_an_outcome",),
    counted(1, topic="lfr.gmp.counts.v2") + ("wrong_force",),  # van-1 serves default
    counted(1, van="van-2") + ("wrong_force",),  # van-2 (gmp) writing force default's topic
    counted(1, link_id=None) + ("no_link_id",),
    (b"{not an envelope", headers(topic="lfr.audit.v2"), "schema"),
    (count(1)[0][:-3], counted(1)[1], "schema"),  # truncated JSON
    (b'{"count_id": "c-1"}', counted(1)[1], "schema"),  # fields missing
    (audit(1), headers(topic="lfr.alerts.v3"), "schema"),  # an audit record on the alerts topic
])
def test_bad_forwarded_records_are_refused_with_a_reason(value, found, reason):
    verdict = check_forwarded(value, found, VANS, never)
    assert not verdict.accepted and verdict.reason == reason, verdict


def test_a_heartbeat_naming_another_force_or_another_van_is_refused(tmp_path):
    assert check_forwarded(beat(tmp_path=tmp_path), headers(topic="lfr.heartbeats.v1"), VANS, never).accepted
    other_force = check_forwarded(beat(force="wyp", tmp_path=tmp_path), headers(topic="lfr.heartbeats.v1"), VANS, never)
    assert other_force.reason == "wrong_force"
    other_van = check_forwarded(beat(van="van-2", tmp_path=tmp_path), headers(topic="lfr.heartbeats.v1"), VANS, never)
    assert other_van.reason == "wrong_van"
    unknown = check_forwarded(beat(van="van-99", tmp_path=tmp_path), headers(van="van-99", topic="lfr.heartbeats.v1"), VANS, never)
    assert unknown.reason == "unknown_van"


def test_a_record_seen_before_is_a_duplicate():
    assert check_forwarded(*counted(1), VANS, lambda rid: rid == "id-1").reason == "duplicate"


def test_dead_letters_travel_as_metadata_only():
    found = headers(topic="lfr.dlq.v1") + [("lfr_dlq_topic", b"lfr.frames.v1"), ("lfr_dlq_reason", b"decode_error")]
    assert check_forwarded(None, found, VANS, never).accepted


def test_the_fleet_register_is_checked():
    assert parse_register({"vans": [{"van_id": "van-1", "force": "gmp"}]}) == {"van-1": "gmp"}
    for bad in ({}, {"vans": [{"van_id": "van 1", "force": "gmp"}]}, {"vans": [{"van_id": "v", "force": "GMP"}]},
                {"vans": [{"van_id": "v", "force": "gmp"}, {"van_id": "v", "force": "wyp"}]}):
        with pytest.raises(RegisterError):
            parse_register(bad)


def _metric(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_intake_writes_checked_records_on_dead_letters_the_rest_and_is_never_blocked(broker, tmp_path):
    from services.van.fleet.intake_service import build
    from services.van.fleet.settings import IntakeSettings
    from tests.kafka_helpers import TopicReader

    landing, counts_topic, audit_topic, beats, dlq = (unique(n) for n in ("inbound", "counts", "audit", "beats", "dlq"))
    create_topics(broker.bootstrap_servers, landing, partitions=1)
    for topic in (counts_topic, audit_topic, beats, dlq):
        create_topics(broker.bootstrap_servers, topic, partitions=1)
    # The intake writes each record to the topic its lfr_topic header names; here those are this
    # test's own (renamed, so runs never share a topic), mapped back for the check.
    settings = IntakeSettings(kafka_bootstrap_servers=broker.bootstrap_servers, intake_topic=landing, intake_group_id=unique("intake"),
                              dlq_topic=dlq, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    intake = build(settings, VANS, output_topics=[counts_topic, beats])
    rename = {"lfr.counts.v2": counts_topic, "lfr.audit.v2": audit_topic, "lfr.heartbeats.v1": beats}
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    sent = [
        counted(1, link_id="a1"),
        (b"garbage that fails its schema", counted(2, link_id="a2")[1]),
        counted(3, van="van-99", link_id="a3"),
        counted(1, link_id="a1"),  # the link sent it twice
        (beat(tmp_path=tmp_path), headers(topic="lfr.heartbeats.v1", link_id="h1")),
        (audit(5), headers(topic="lfr.audit.v2", link_id="a5")),  # held off the core's audit chain
        counted(4, link_id="a4"),  # after the bad ones: still delivered
    ]
    for value, found in sent:
        producer.produce(landing, key=b"k", value=value, headers=found)
    assert producer.flush(10) == 0
    intake.producer = Renaming(intake.producer, rename)
    refused_before = _metric("lfr_intake_records_refused_total", reason="schema")
    wait_until(lambda: taken_in(intake) >= 0 and committed(intake) >= len(sent), 30, "the intake to take every record in")
    intake.close()
    counts, hb, dead, audits = (TopicReader(broker.bootstrap_servers, t) for t in (counts_topic, beats, dlq, audit_topic))
    try:
        assert [json.loads(r.value())["faces"] for r in counts.read_until(2)] == [1, 4]  # once each, in order
        assert audits.poll() == []
        assert decode(hb.read_until(1)[0].value()).data["van_id"] == "van-1"
        letters = dead.read_until(2)
        reasons = sorted((dict(r.headers())["lfr_dlq_reason"].decode(), dict(r.headers())["lfr_dlq_error"].decode().split(":")[0]) for r in letters)
        assert reasons == [("forward_refused", "unknown_van"), ("schema_invalid", "schema")]
        assert all(r.value() is None for r in letters)  # no value kept at the core
    finally:
        for reader in (counts, hb, dead, audits):
            reader.close()
    assert _metric("lfr_intake_records_refused_total", reason="schema") == refused_before + 1
    assert _metric("lfr_intake_records_held_total", topic="lfr.audit.v2") >= 1
    assert _metric("lfr_fleet_camera_fps", van="van-1", force="default", camera="cam-1") == 10.0


class Renaming:
    """The intake's producer, writing to this test's topics instead of the core's real ones."""

    def __init__(self, producer, rename) -> None:
        self.producer, self.rename = producer, rename

    def produce(self, topic, **kwargs):
        return self.producer.produce(self.rename.get(topic, topic), **kwargs)

    def flush(self, timeout):
        return self.producer.flush(timeout)


def taken_in(intake) -> int:
    return intake.step(0.2)


def committed(intake) -> int:
    offsets = intake.consumer.committed(intake.consumer.assignment(), timeout=5) if intake.consumer.assignment() else []
    return sum(max(tp.offset, 0) for tp in offsets)


def test_a_force_s_van_link_forwards_the_force_s_topics_to_the_force_s_landing_topic(tmp_path):
    from services.van.link.service import build as build_link
    from services.van.link.settings import LinkSettings

    settings = LinkSettings(kafka_bootstrap_servers="127.0.0.1:1", link_core_bootstrap_servers="127.0.0.1:1", force="gmp",
                            link_outbox_path=tmp_path / "outbox.sqlite")
    assert settings.link_core_topic == "lfr.gmp.link-inbound"  # LFR_FORCE moves the landing topic too
    forwarder = build_link(settings)
    try:
        assert forwarder.topics and all(topic.startswith("lfr.gmp.") for topic in forwarder.topics), forwarder.topics
        assert "lfr.gmp.heartbeats.v1" in forwarder.topics
    finally:
        forwarder.close(0)


def test_a_record_sent_again_after_an_intake_restart_reaches_the_core_once(broker):
    """The de-dup memory survives a restart: it is read back from the core's output topics."""
    import uuid

    from services.common.topic_reader import read_to_end
    from services.van.fleet.intake_service import build
    from services.van.fleet.settings import IntakeSettings

    force = "f" + uuid.uuid4().hex[:10]  # this test's own force: its topics are no other test's
    vans = {"van-r": force}
    landing, dlq, counts_topic = unique("inbound"), unique("dlq"), f"lfr.{force}.counts.v2"
    for topic in (landing, dlq, counts_topic):
        create_topics(broker.bootstrap_servers, topic, partitions=1)
    settings = IntakeSettings(kafka_bootstrap_servers=broker.bootstrap_servers, intake_topic=landing, intake_group_id=unique("intake"),
                              dlq_topic=dlq, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

    def send_and_take_in(expected: int) -> None:
        producer.produce(landing, key=b"k", value=count(1)[0], headers=count(1)[1] + headers(van="van-r", topic=counts_topic, link_id="r1"))
        assert producer.flush(10) == 0
        intake = build(settings, vans)  # a fresh process's intake: same group, nothing in memory
        try:
            wait_until(lambda: taken_in(intake) >= 0 and committed(intake) >= expected, 30, f"the intake to commit {expected}")
        finally:
            intake.close()

    send_and_take_in(1)
    send_and_take_in(2)  # the link sent it again (acknowledged, not marked sent before a van power cut)
    # the intake commits only after the core acknowledged its writes: the topic is complete now
    written = read_to_end({"bootstrap.servers": broker.bootstrap_servers}, counts_topic, group_id=unique("reader"))
    assert [dict(r.headers())["lfr_link_id"] for r in written] == [b"r1"]  # once at the core
    assert _metric("lfr_intake_seen_ids_rebuilt_total") >= 1


class FailsFatallyOnce:
    """The intake's first core producer: its first flush fails as librdkafka's does after a fatal
    idempotence error (a core broker that restarted without its producer state)."""

    def __init__(self, producer) -> None:
        self.producer, self.failed = producer, False

    def produce(self, topic, **kwargs):
        return self.producer.produce(topic, **kwargs)

    def flush(self, timeout):
        from confluent_kafka import KafkaError, KafkaException

        if not self.failed:
            self.failed = True
            raise KafkaException(KafkaError(KafkaError._FATAL, "sequence desynchronization", fatal=True))
        return self.producer.flush(timeout)


def test_a_fatal_core_producer_error_does_not_stop_the_intake_and_writes_nothing_twice(broker):
    import uuid

    from services.common.topic_reader import read_to_end
    from services.van.fleet.intake_service import build
    from services.van.fleet.settings import IntakeSettings

    force = "f" + uuid.uuid4().hex[:10]
    vans = {"van-f": force}
    landing, dlq, counts_topic = unique("inbound"), unique("dlq"), f"lfr.{force}.counts.v2"
    for topic in (landing, dlq, counts_topic):
        create_topics(broker.bootstrap_servers, topic, partitions=1)
    settings = IntakeSettings(kafka_bootstrap_servers=broker.bootstrap_servers, intake_topic=landing, intake_group_id=unique("intake"),
                              dlq_topic=dlq, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for seq in (1, 2):
        producer.produce(landing, key=b"k", value=count(seq)[0], headers=count(seq)[1] + headers(van="van-f", topic=counts_topic, link_id=f"f{seq}"))
    assert producer.flush(10) == 0
    intake = build(settings, vans)
    intake.producer = FailsFatallyOnce(intake.producer)  # its writes go out; the flush then fails
    try:
        wait_until(lambda: taken_in(intake) >= 0 and committed(intake) >= 2, 30, "the intake to carry on with a new producer")
    finally:
        intake.close()
    written = read_to_end({"bootstrap.servers": broker.bootstrap_servers}, counts_topic, group_id=unique("reader"))
    assert sorted(dict(r.headers())["lfr_link_id"] for r in written) == [b"f1", b"f2"]  # each once, though the batch ran twice
    assert _metric("lfr_intake_producer_rebuilt_total") >= 1
