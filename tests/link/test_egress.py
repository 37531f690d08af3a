"""What may leave a van (pure), the bandwidth cap and the durable outbox."""

from __future__ import annotations

import pytest

from services.common.envelope import encode
from services.common.topics import load_topic_specs
from services.van.link.bandwidth import TokenBucket
from services.van.link.egress import EgressRefused, check_topic, egress_value, outcome_topics, withhold_reason
from services.van.link.outbox import Outbox, OutboxRow
from tests.kafka_helpers import NoValidation, audit_record


def test_the_outcome_topics_come_from_topics_toml_and_never_include_biometric_ones():
    topics = outcome_topics()
    names = {spec.name for spec in load_topic_specs()}
    assert set(topics) <= names
    assert any(".alerts." in t for t in topics) and any(".audit." in t for t in topics) and any(".counts." in t for t in topics)
    for spec in load_topic_specs():
        if any(f".{word}." in spec.name for word in ("frames", "faces", "embeddings", "matches", "evidence", "watchlist")):
            assert spec.name not in topics


@pytest.mark.parametrize("topic", ["lfr.frames.v1", "lfr.faces.v1", "lfr.embeddings.v1", "lfr.matches.v1", "lfr.evidence.v1",
                                   "lfr.watchlist.v1", "lfr.gmp.embeddings.v1", "lfr.evidence_keys.v1", "frames", "lfr.deployments.v1"])
def test_a_setting_cannot_add_a_topic_that_is_not_an_outcome(topic):
    with pytest.raises(EgressRefused):
        outcome_topics(only=[topic])


def test_renamed_versions_and_force_prefixes_follow():
    assert check_topic("lfr.alerts.v3") == "lfr.alerts.v3"
    assert check_topic("lfr.gmp.counts.v2") == "lfr.gmp.counts.v2"


def test_records_are_checked_one_by_one():
    audit = audit_record(1)
    assert withhold_reason("lfr.audit.v2", audit, []) is None
    embedding = encode("lfr.embeddings.v1", {"embedding": b"\x01" * 512}, registry=NoValidation())
    assert withhold_reason("lfr.audit.v2", embedding, []) == "not_an_outcome"
    with_blob = encode("lfr.audit.v2", {"actor": "a", "action": "x", "at_ms": 1, "service": "s", "chip": b"\xff\xd8" * 100},
                       registry=NoValidation())
    assert withhold_reason("lfr.audit.v2", with_blob, []) == "binary_payload"
    assert withhold_reason("lfr.counts.v1", b"not an envelope", []) == "unknown_schema"
    cloudevent = [("ce_dataschema", b"https://openlfr.org/schemas/lfr.alerts.v3.json")]
    assert withhold_reason("lfr.alerts.v3", b'{"alert_id": "a"}', cloudevent) is None
    disguised = [("ce_dataschema", b"https://openlfr.org/schemas/lfr.faces.v1.json")]
    assert withhold_reason("lfr.alerts.v3", b"{}", disguised) == "not_an_outcome"
    # dead letters leave as metadata only
    assert withhold_reason("lfr.dlq.v1", b"\xff\xd8 a frame", []) is None and egress_value("lfr.dlq.v1", b"\xff\xd8 a frame") is None


def test_token_bucket_paces_bytes():
    bucket = TokenBucket(rate=1000, burst=500, now_s=0.0)
    assert bucket.wait_s(500, 0.0) == 0
    bucket.take(500, 0.0)
    assert bucket.wait_s(250, 0.0) == pytest.approx(0.25)
    assert bucket.wait_s(250, 0.25) == 0
    assert bucket.wait_s(10_000, 0.25) == pytest.approx(0.25)  # bigger than the burst: goes when full
    assert TokenBucket(rate=0, burst=1, now_s=0).wait_s(10**9, 0) == 0  # no cap


def test_outbox_survives_reopening_and_ignores_a_row_taken_in_twice(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    rows = [OutboxRow(f"id-{i}", "lfr.audit.v2", b"k", b"v%d" % i, (("h", b"1"),)) for i in range(5)]
    assert box.enqueue(rows, now_ms=1000) == 5
    assert box.enqueue(rows[:2], now_ms=1000) == 0
    first = box.peek(2)
    box.ack([first[0].seq], now_ms=2000)
    box.close()
    again = Outbox(tmp_path / "o.sqlite")  # after a crash
    assert [r.ce_id for r in again.peek(10)] == ["id-1", "id-2", "id-3", "id-4"]
    assert again.peek(10)[0].headers == (("h", b"1"),)
    assert again.enqueue(rows[:1]) == 0  # sent, remembered: not queued again
    assert again.backlog().rows == 4 and again.backlog().oldest_enqueued_at_ms == 1000
    assert again.forget_sent(before_ms=3000) == 1


def test_lfr_run_link_refuses_a_biometric_topic_at_start(tmp_path):
    from services.common.broker import free_port
    from tests.test_cli_conventions import lfr

    result = lfr("run", "link", env={"LFR_LINK_CORE_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "LFR_METRICS_PORT": "0",
                                     "LFR_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "LFR_LINK_TOPICS": "lfr.alerts.v2,lfr.faces.v1",
                                     "LFR_LINK_OUTBOX_PATH": str(tmp_path / "o.sqlite")})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("lfr link: topic 'lfr.faces.v1' may not leave the van: only outcome topics "
                                                      "(alerts, adjudications, outcomes, counts, audit, dlq, heartbeats) are forwarded")
    assert not (tmp_path / "o.sqlite").exists()
