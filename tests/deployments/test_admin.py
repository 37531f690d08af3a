"""Deployments on the real broker: refusals write nothing, the view dead-letters bad records and
keeps the last valid state, and a snapshot is erased 24 h after its deployment ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from confluent_kafka import Producer
from qdrant_client import QdrantClient

from services.governance.audit.identity import load_keyring
from services.common.envelope import encode
from services.common.jsonevents import decode_record
from services.common.settings import DeploymentSettings, KafkaSettings, load_settings
from services.governance.deployments.admin import DeploymentAdmin
from services.governance.deployments.record import SCHEMA, Refused, Window
from services.governance.deployments.store import DeploymentStore
from services.governance.deployments.view import DeploymentView
from services.governance.watchlist.index import WatchlistIndex
from services.governance.watchlist.materialiser import WatchlistMaterialiser
from tests.deployment_helpers import active_deployment, publish_deployment, session_signers
from tests.deployments.test_rules import HOUR, MODEL, calibration, draft, entry
from tests.kafka_helpers import TopicReader, create_topics, unique, wait_until


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def topics(broker, kafka_env, monkeypatch):
    names = {name: unique(name) for name in ("deployments", "watchlist", "audit", "dlq")}
    create_topics(broker.bootstrap_servers, *names.values(), partitions=1)
    for name, topic in names.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    return names


def count(broker, topic: str) -> int:
    reader = TopicReader(broker.bootstrap_servers, topic)
    try:
        reader.poll()
        reader.poll()
        return len(reader.records)
    finally:
        reader.close()


def test_refusals_are_named_and_write_nothing(broker, topics, authoriser):
    clock = Clock(1_800_000_000_000)
    store = DeploymentStore(load_settings(DeploymentSettings))
    admin = DeploymentAdmin(store, clock, calibration())
    base = replace(draft(), window=Window(clock.now_ms, clock.now_ms + 4 * HOUR))
    for subject in ("s1", "s2"):
        store.watchlist.publish(entry(subject, expires=clock.now_ms + HOUR))
    cases = {
        # The officer is the owner of the key that countersigns: the creator's own key cannot.
        "self": (base, None, "authorising_officer: test:operator created this deployment and cannot authorise it"),
        "nodpia": (replace(base, dpia_ref=None), "Supt A", "dpia_ref: is required"),
        "past": (replace(base, window=Window(clock.now_ms - 5 * HOUR, clock.now_ms - HOUR)), "Supt A", "window: the window is in the past"),
        "long": (replace(base, window=Window(clock.now_ms, clock.now_ms + 13 * HOUR)), "Supt A",
                 "window: the window is longer than the maximum of 12 h"),
        "low": (replace(base, match_threshold=0.3), "Supt A", "match_threshold: 0.3 is below the floor 0.5"),
    }
    for name, (record, officer, _message) in cases.items():
        admin.create(replace(record, deployment_id="dep-" + name))
    before = (count(broker, topics["deployments"]), count(broker, topics["audit"]))
    for name, (_record, officer, message) in cases.items():
        with pytest.raises(Refused) as refused:
            admin.authorise("dep-" + name, "Supt A", "superintendent", signer=None if officer is None else authoriser)
        assert str(refused.value).startswith(message), (name, str(refused.value))
    assert (count(broker, topics["deployments"]), count(broker, topics["audit"])) == before
    assert {d.state for d in store.read_all().values()} == {"draft"}

    # The CLI prints the same refusal and exits 3 (refused on purpose).
    env = {"LFR_DEPLOYMENTS_TOPIC": topics["deployments"], "LFR_WATCHLIST_TOPIC": topics["watchlist"], "LFR_AUDIT_TOPIC": topics["audit"]}
    result = subprocess.run([sys.executable, "-m", "services.cli", "deployment", "authorise", "dep-self"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env})
    assert result.returncode == 3 and "refused: authorising_officer: test:operator created this deployment" in result.stderr


def test_view_dead_letters_bad_records_and_keeps_the_last_valid_state(broker, topics):
    settings = load_settings(KafkaSettings)
    good = active_deployment("dep-v", ["cam-1"])
    publish_deployment(broker.bootstrap_servers, topics["deployments"], good)
    view = DeploymentView(settings, topics["deployments"], dlq_topic=topics["dlq"], service="test", keyring=load_keyring(
        load_settings(DeploymentSettings))).start()
    try:
        view.wait_ready(20)
        assert view.ready and view.get("dep-v").state == "active"
        reborn = replace(active_deployment("dep-v", ["cam-1"], state="ended"), revision=good.revision + 1)
        publish_deployment(broker.bootstrap_servers, topics["deployments"], reborn)
        wait_until(lambda: view.get("dep-v").state == "ended", 10, "the end to apply")
        back_to_active = replace(good, revision=reborn.revision + 1)
        data = good.to_data()
        data["state"] = "running"
        operator, _authoriser = session_signers()  # signed: the state machine, not the signature, refuses these
        raw = Producer({"bootstrap.servers": broker.bootstrap_servers})
        for value in (encode(SCHEMA, back_to_active.to_data()), json.dumps(data).encode()):
            raw.produce(topics["deployments"], key=b"dep-v", value=value,
                        headers=operator.record_headers(topics["deployments"], b"dep-v", value, audit_hash="0" * 64))
        assert raw.flush(10) == 0
        dlq = TopicReader(broker.bootstrap_servers, topics["dlq"])
        try:
            records = dlq.read_until(2, 15)
        finally:
            dlq.close()
        headers = [{k: v.decode() for k, v in r.headers()} for r in records]
        assert headers[0]["lfr_dlq_reason"] == "schema_invalid" and "illegal transition ended -> active" in headers[0]["lfr_dlq_error"]
        assert headers[1]["lfr_dlq_reason"] == "decode_error"
        assert headers[0]["lfr_dlq_payload"] == headers[1]["lfr_dlq_payload"] == "original"  # not a biometric topic
        assert view.get("dep-v").state == "ended" and view.ready
    finally:
        view.stop()


def test_snapshot_erased_24h_after_the_end_manifest_stays_in_the_audit(broker, topics, authoriser):
    clock = Clock(1_800_000_000_000)
    settings = load_settings(DeploymentSettings)
    store = DeploymentStore(settings)
    admin = DeploymentAdmin(store, clock, calibration())
    listed, other = entry("listed", expires=clock.now_ms + 400 * HOUR), entry("other", deployments=("dep-x",), expires=clock.now_ms + 400 * HOUR)
    for e in (listed, other):
        store.watchlist.publish(e)
    index = WatchlistIndex(QdrantClient(location=":memory:"), MODEL)
    materialiser = WatchlistMaterialiser(settings, topics["watchlist"], index, sweep_interval_s=3600, clock=clock,
                                         keyring=load_keyring(settings))
    materialiser.start()
    try:
        materialiser.wait_ready(20)
        assert index.subjects() == {"listed", "other"}
        admin.create(replace(draft(), window=Window(clock.now_ms, clock.now_ms + 4 * HOUR)))
        authorised = admin.authorise("dep-1", "Supt A", "superintendent", signer=authoriser)
        assert [s.subject_id for s in authorised.deployment.snapshot.subjects] == ["listed"]
        shown = subprocess.run([sys.executable, "-m", "services.cli", "deployment", "show", "dep-1", "--json"], capture_output=True,
                               text=True, timeout=120, env={**os.environ, **{f"LFR_{k.upper()}_TOPIC": v for k, v in topics.items()}})
        document = json.loads(shown.stdout)
        assert document["state"] == "authorised" and document["record"]["authorisation"]["officer"] == "test:authoriser"
        assert document["manifest"]["hash"] == authorised.deployment.snapshot.hash
        assert [s["subject_id"] for s in document["manifest"]["subjects"]] == ["listed"]
        admin.start("dep-1", "PS creator")
        admin.end("dep-1", "PS creator")
        from services.governance.deployments.expiry import erase_due

        clock.now_ms += 23 * HOUR
        assert erase_due(store, clock()) == []
        clock.now_ms += HOUR
        [plan] = erase_due(store, clock())
        assert plan.tombstone == ("listed",)
        wait_until(lambda: index.subjects() == {"other"}, 10, "the erased entry to leave the index")
    finally:
        materialiser.stop()
    assert set(store.watchlist.read_all()) == {"other"}
    record = store.read_all()["dep-1"]
    assert record.snapshot.subjects == () and record.snapshot.erased_at_ms == clock.now_ms
    reader = TopicReader(broker.bootstrap_servers, topics["audit"])
    # Besides these, the audit holds each record's own audit-first entry (deployment.record) and
    # the watchlist changes (services/governance/audit/writer.py).
    transitions = lambda: [a for a in (decode_record(r.value(), r.headers()).data for r in reader.poll())  # noqa: E731
                           if a["action"].startswith("deployment.") and a["action"] != "deployment.record"]
    try:
        wait_until(lambda: len(transitions()) >= 5, 10, "five deployment audit records")
        audit = transitions()
    finally:
        reader.close()
    actions = [a["action"] for a in audit]
    assert actions == ["deployment.create", "deployment.authorise", "deployment.start", "deployment.end", "deployment.snapshot_erased"]
    erased = audit[-1]["details"]
    assert erased["manifest"] == f"listed:{authorised.deployment.snapshot.subjects[0].entry_version}"
    assert erased["snapshot_hash"] == authorised.deployment.snapshot.hash


def test_enforcement_is_ready_only_once_the_view_is_loaded(broker, topics):
    from services.common.settings import DetectSettings
    from services.governance.deployments import enforcement

    publish_deployment(broker.bootstrap_servers, topics["deployments"], active_deployment("dep-r", ["cam-1"]))
    view, policy = enforcement.start_enforcement(load_settings(DetectSettings), "test-ready")
    try:
        assert enforcement.ready() and policy.record_refusal("dep-r", int(__import__("time").time() * 1000)) is None
    finally:
        view.stop()
    assert not enforcement.ready()
