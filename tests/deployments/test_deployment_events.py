"""Public deployment events (lfr.deployment_events.v1): the pure projection leaks no subject id or
name, and `lfr run deployment-events` publishes one event per verified revision, nothing for a
forged or unaudited record, and the same ce_id again after a crash before its commit."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from confluent_kafka import Producer

from services.common import jsonevents
from services.common.envelope import encode
from services.common.schemas import default_registry
from services.common.settings import DeploymentEventsSettings, DeploymentSettings, load_settings
from services.common.signing import Signer
from services.governance.deployments import lifecycle
from services.governance.deployments.admin import DeploymentAdmin
from services.governance.deployments.projector import DeploymentEventsProjector
from services.governance.deployments.public import event_of, projected, public_event
from services.governance.deployments.record import SCHEMA, Window
from services.governance.deployments.store import DeploymentStore
from services.governance.audit.identity import load_keyring
from services.governance.audit.index import AuditIndex
from tests.deployment_helpers import active_deployment, session_signers
from tests.deployments.test_rules import HOUR, NOW, calibration, draft, entry
from tests.kafka_helpers import TopicReader, create_topics, unique, wait_until

SECRET_SUBJECTS = [f"wl-person-{i}" for i in range(5)]


def lifecycle_revisions():
    """Every kind of revision one deployment goes through, with five listed people on its watchlist."""
    entries = [entry(s, seed=i) for i, s in enumerate(SECRET_SUBJECTS)]
    from services.governance.deployments import snapshot

    frozen = snapshot.freeze(entries, 1, NOW)
    d0 = draft(rationale="seeking wl-person-0 after the burglary", public_notice={"signage": False, "no_notice_reason": "covert: wl-person-1"})
    d1 = lifecycle.authorise(d0, officer="Supt Jane Authoriser", rank="superintendent", snapshot=frozen, calibration=calibration(),
                             rules=lifecycle.AuthorisationRules(), now_ms=NOW)
    d2 = lifecycle.start(d1, "PS creator", NOW + 1000)
    d3 = lifecycle.authorise(d2, officer="Supt Jane Authoriser", rank="superintendent", snapshot=replace(frozen, version=2),
                             calibration=calibration(), rules=lifecycle.AuthorisationRules(), now_ms=NOW + 2000)
    d4 = lifecycle.end(d3, "PS creator", NOW + 3000)
    d5 = d4.next(snapshot=replace(d4.snapshot, subjects=(), erased_at_ms=NOW + 4000))
    cancelled = lifecycle.cancel(d0, "PS creator", NOW + 500, "called off: wl-person-2 arrested")
    return [d0, d1, d2, d3, d4, d5, cancelled]


def test_the_public_event_carries_no_subject_id_name_or_free_text():
    revisions = lifecycle_revisions()
    assert revisions[1].snapshot.subjects  # the signed record does name them
    for d in revisions:
        _topic, key, value, headers = projected(d, "lfr.deployment_events.v1")
        wire = value + b"".join(raw for _name, raw in headers) + key
        for secret in (*SECRET_SUBJECTS, "Jane Authoriser", "PS creator", "burglary", "covert", "arrested"):
            assert secret.encode() not in wire, (d.state, secret)
        for s in d.snapshot.subjects if d.snapshot else ():
            assert s.entry_version.encode() not in wire
        if d.snapshot is not None:
            assert d.snapshot.hash.encode() not in wire
        default_registry().validate("lfr.deployment_events.v1", json.loads(value))  # the schema in schemas/


def test_each_revision_says_what_it_did_with_a_deterministic_id():
    revisions = lifecycle_revisions()
    assert [event_of(d)[0] for d in revisions] == ["drafted", "authorised", "started", "reauthorised", "ended", "erased", "cancelled"]
    authorised = public_event(revisions[1])
    assert authorised["watchlist"] == {"size": 5, "version": 1, "frozen_at_ms": NOW}
    assert authorised["authorisation"]["rank"] == "superintendent" and "officer" not in authorised["authorisation"]
    assert authorised["place"]["name"] == "test street" and authorised["window"] == {"start_ms": NOW, "end_ms": NOW + 4 * HOUR}
    assert authorised["legal_basis"] == {"dpia_ref": "DPIA-T", "eia_ref": "EIA-T"}
    assert authorised["transitions"] == [{"state": "draft", "at_ms": revisions[0].history[0].at_ms}, {"state": "authorised", "at_ms": NOW}]
    assert public_event(revisions[5])["watchlist"]["erased_at_ms"] == NOW + 4000
    assert public_event(revisions[0])["public_notice"] == {"signage": False}
    for d in revisions:  # the same revision, projected twice: the same bytes and the same ce_id
        first, again = projected(d, "t"), projected(d, "t")
        assert first == again
        attrs = dict(first[3])
        assert attrs["ce_id"] == f"{d.deployment_id}.{d.revision}".encode()
        assert attrs["ce_type"] == f"org.openlfr.deployment.{event_of(d)[0]}".encode()
        assert attrs["content-type"] == b"application/json"


# -- the projector against the embedded broker -------------------------------------------------------

@pytest.fixture
def topics(broker, kafka_env, monkeypatch):
    names = {name: unique(name) for name in ("deployments", "watchlist", "audit", "dlq", "deployment_events")}
    create_topics(broker.bootstrap_servers, *names.values(), partitions=1)
    for name, topic in names.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    monkeypatch.setenv("LFR_GROUP_ID", unique("lfr-deployment-events"))
    return names


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def run_projector(settings, until_events: int, reader: TopicReader, *, commit: bool = True) -> DeploymentEventsProjector:
    keyring = load_keyring(settings)
    projector = DeploymentEventsProjector(settings, keyring, AuditIndex(settings, settings.audit_topic, keyring))
    if not commit:
        projector._commit = lambda last: None  # a crash after the flush, before the commit
    projector.start()
    try:
        wait_until(lambda: (projector.step(), projector.ready and len(reader.poll()) >= until_events)[1], 60,
                   f"{until_events} deployment events (have {len(reader.records)})", interval_s=0)
        projector.step()  # one more poll: nothing further may come
    finally:
        projector.close()
    return projector


def forge(bootstrap: str, topic: str, record) -> None:
    """Three records a verified reader must refuse: unsigned, signed by an untrusted key, and
    signed by a trusted key but naming no audit record."""
    operator, _authoriser = session_signers()
    mallory = Signer.generate("mallory")
    producer = Producer({"bootstrap.servers": bootstrap})
    for suffix, signer, audit_hash in (("unsigned", None, None), ("untrusted", mallory, "0" * 64), ("unaudited", operator, "0" * 64)):
        forged = replace(record, deployment_id=f"dep-forged-{suffix}")
        key, value = forged.deployment_id.encode(), encode(SCHEMA, forged.to_data())
        headers = signer.record_headers(topic, key, value, audit_hash=audit_hash) if signer else []
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


@pytest.mark.slow  # the real admin path (audited, signed, countersigned) and three projector runs
def test_projector_publishes_verified_revisions_once_and_replays_with_the_same_ids(broker, topics, authoriser):
    clock = Clock(1_800_000_000_000)
    store = DeploymentStore(load_settings(DeploymentSettings))
    admin = DeploymentAdmin(store, clock, calibration())
    for subject in SECRET_SUBJECTS[:2]:
        store.watchlist.publish(entry(subject, expires=clock.now_ms + 400 * HOUR))
    admin.create(replace(draft(), window=Window(clock.now_ms, clock.now_ms + 4 * HOUR)))
    admin.authorise("dep-1", "Supt A", "superintendent", signer=authoriser)
    forge(broker.bootstrap_servers, topics["deployments"], active_deployment("dep-x", ["cam-1"]))
    settings = load_settings(DeploymentEventsSettings)
    events = TopicReader(broker.bootstrap_servers, topics["deployment_events"])
    try:
        run_projector(settings, 2, events)
        ids = [dict(r.headers())["ce_id"].decode() for r in events.records]
        assert ids == ["dep-1.0", "dep-1.1"]  # the draft and exactly one authorisation; nothing forged
        authorised = jsonevents.decode_record(events.records[1].value(), events.records[1].headers())
        assert authorised.data["event"] == "authorised" and authorised.data["watchlist"]["size"] == 2
        assert not any(s.encode() in r.value() for r in events.records for s in SECRET_SUBJECTS)

        # The deployment starts; the projector "crashes" after publishing, before committing.
        admin.start("dep-1", "PS creator")
        run_projector(settings, 3, events, commit=False)
        # Restarted: everything from the last commit again (the start), with the same ce_id.
        run_projector(settings, 4, events)
        ids = [dict(r.headers())["ce_id"].decode() for r in events.records]
        assert ids == ["dep-1.0", "dep-1.1", "dep-1.2", "dep-1.2"]
        assert events.records[2].value() == events.records[3].value()  # a byte-identical duplicate: de-duplicate on ce_id
        # A clean restart past the commit publishes nothing.
        run_projector(settings, 4, events)
        assert len(events.poll()) == 4
    finally:
        events.close()
