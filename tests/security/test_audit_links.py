"""A change applies only when its audit record exists and describes it (issue #23): a trusted key
with a made-up ``lfr_audit_hash``, or with the hash of a real audit record of another change,
changes nothing in any service's deployment view (ingest, detect, embed, matcher, dispatch: each
loads its view through start_enforcement) or in the transparency report; a change whose audit
record is not readable yet is held, not dropped, and applies once it is (policy hold-then-refuse)."""

from __future__ import annotations

import dataclasses
import time

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from services.governance.audit.chain import GENESIS, record_hash, seal
from services.governance.audit.writer import AUDIT_SCHEMA, change_digest
from services.common.envelope import encode
from services.common.jsonevents import encode as encode_json
from services.common.settings import (
    DetectSettings,
    DispatchSettings,
    EmbedSettings,
    IngestSettings,
    MatcherSettings,
    ReportSettings,
    load_settings,
)
from services.common.signing import Signer
from services.governance.deployments import enforcement
from services.governance.deployments.enforcement import start_enforcement
from services.governance.deployments.record import SCHEMA
from services.governance.deployments.signing import countersign
from services.operations.report.topics import read_inputs
from tests.deployment_helpers import active_deployment, publish_deployment, session_signers
from tests.kafka_helpers import create_topics, unique, wait_until

SERVICES = {"ingest": IngestSettings, "detect": DetectSettings, "embed": EmbedSettings, "matcher": MatcherSettings,
            "dispatch": DispatchSettings}


def links(outcome: str) -> float:
    return REGISTRY.get_sample_value("lfr_audit_links_total", {"outcome": outcome}) or 0.0


def forged(topic: str, deployment_id: str, operator: Signer, authoriser: Signer, audit_hash: str) -> tuple[bytes, bytes, list]:
    """A deployment written as `lfr deployment` would, signed by the trusted operator, with ``audit_hash``."""
    record = active_deployment(deployment_id, ["cam-9"])
    record = countersign(dataclasses.replace(record, created_by=operator.owner), authoriser)
    key, value = deployment_id.encode(), encode(SCHEMA, record.to_data())
    return key, value, operator.record_headers(topic, key, value, audit_hash=audit_hash)


@pytest.mark.slow  # five service views started one after the other (about 10 s)
def test_a_made_up_audit_hash_is_refused_by_every_service_view_and_the_report(broker, kafka_env, monkeypatch):
    monkeypatch.setattr(enforcement, "_VIEWS", [])  # this process's views: ours are stopped after the test, not left for /readyz
    topics = {name: unique(name) for name in ("deployments", "audit", "dlq", "watchlist")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    monkeypatch.setenv("LFR_AUDIT_LINK_WAIT_S", "0.2")
    operator, authoriser = session_signers()
    publish_deployment(broker.bootstrap_servers, topics["deployments"], active_deployment("dep-real", ["cam-1"]))
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    # A hash no audit record has, and the hash of dep-real's genuine audit record on another change.
    real_hash = dict(next(iter(_records(broker, topics["deployments"]))).headers())["lfr_audit_hash"].decode()
    for deployment_id, audit_hash in (("dep-made-up", "ab" * 32), ("dep-borrowed", real_hash)):
        key, value, headers = forged(topics["deployments"], deployment_id, operator, authoriser, audit_hash)
        producer.produce(topics["deployments"], key=key, value=value, headers=headers)
    assert producer.flush(10) == 0
    missing, mismatched = links("missing"), links("mismatch")

    views = []
    try:
        for service, settings_class in SERVICES.items():
            view, _policy = start_enforcement(load_settings(settings_class), service)
            views.append(view)
            assert set(view.all()) == {"dep-real"}, service
    finally:
        for view in views:
            view.stop()
    assert links("missing") - missing >= len(SERVICES) and links("mismatch") - mismatched >= len(SERVICES)

    inputs = read_inputs(load_settings(ReportSettings))
    assert set(inputs.deployments) == {"dep-real"}


def test_a_change_is_held_until_its_audit_record_is_readable(broker, kafka_env, monkeypatch):
    """The change lands before its audit record (another partition, a slow replica): the view holds
    it, does not drop it, and applies it once the record is there."""
    monkeypatch.setattr(enforcement, "_VIEWS", [])
    topics = {name: unique(name) for name in ("deployments", "audit", "dlq")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    monkeypatch.setenv("LFR_AUDIT_LINK_WAIT_S", "20")
    operator, authoriser = session_signers()
    view, _policy = start_enforcement(load_settings(IngestSettings), "ingest")
    try:
        record = active_deployment("dep-late", ["cam-1"])
        record = countersign(dataclasses.replace(record, created_by=operator.owner), authoriser)
        key, value = b"dep-late", encode(SCHEMA, record.to_data())
        audit = seal({"action": "deployment.record", "at_ms": int(time.time() * 1000), "service": "test", "subject_id": "dep-late",
                      "details": {"change_sha256": change_digest(topics["deployments"], key, value)}}, operator, 0, GENESIS)
        held = links("confirmed_after_hold")
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
        producer.produce(topics["deployments"], key=key, value=value,
                         headers=operator.record_headers(topics["deployments"], key, value, audit_hash=record_hash(audit)))
        assert producer.flush(10) == 0
        time.sleep(1.0)  # the view has the change and is holding it: nothing applied yet
        assert view.get("dep-late") is None
        audit_value, audit_headers = encode_json(AUDIT_SCHEMA, audit)
        producer.produce(topics["audit"], key=b"dep-late", value=audit_value, headers=audit_headers)
        assert producer.flush(10) == 0
        wait_until(lambda: view.get("dep-late") is not None, 15, "the held change to apply once its audit record is readable")
        assert links("confirmed_after_hold") - held == 1
    finally:
        view.stop()


def _records(broker, topic: str):
    from tests.kafka_helpers import TopicReader

    reader = TopicReader(broker.bootstrap_servers, topic)
    try:
        return reader.read_until(1)
    finally:
        reader.close()
