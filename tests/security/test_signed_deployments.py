"""Deployment records: only signed ones are applied, and an authorised one only when the
authorising officer's own key (not the creator's) countersigned it. Anything else changes
nothing in a service's view and is reported (counted, dead-lettered without payload, audited)."""

from __future__ import annotations

import dataclasses

from confluent_kafka import Producer
from prometheus_client import REGISTRY

from services.governance.audit.refusals import deployment_signature_checks
from services.common.envelope import encode
from services.common.settings import MatcherSettings, load_settings
from services.common.signing import Signer
from services.governance.deployments.record import SCHEMA
from services.governance.deployments.signing import countersign
from services.governance.deployments.view import DeploymentView
from tests.deployment_helpers import active_deployment, publish_deployment, session_signers
from tests.kafka_helpers import create_topics, unique, wait_until


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("lfr_signature_refusals_total", {"service": "matcher", "topic": TOPIC[0], "reason": reason}) or 0.0


TOPIC: list[str] = []


def test_only_signed_and_countersigned_deployments_apply(broker, kafka_env, monkeypatch, reader):
    topics = {name: unique(name) for name in ("deployments", "dlq", "audit")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    TOPIC[:] = [topics["deployments"]]
    settings = load_settings(MatcherSettings)
    keyring, on_refused = deployment_signature_checks(settings, "matcher")
    operator, authoriser = session_signers()
    publish_deployment(broker.bootstrap_servers, topics["deployments"], active_deployment("dep-ok", ["cam-1"]))
    view = DeploymentView(settings, topics["deployments"], dlq_topic=topics["dlq"], service="matcher",
                          keyring=keyring, on_refused=on_refused).start()
    raw = Producer({"bootstrap.servers": broker.bootstrap_servers})

    def send(deployment, headers_by: Signer | None) -> None:
        key, value = deployment.deployment_id.encode(), encode(SCHEMA, deployment.to_data())
        headers = headers_by.record_headers(topics["deployments"], key, value, audit_hash="0" * 64) if headers_by else []
        raw.produce(topics["deployments"], key=key, value=value, headers=headers)
        raw.flush(10)

    try:
        view.wait_ready(20)
        assert view.get("dep-ok").state == "active"
        before = {r: refused(r) for r in ("unsigned", "not_countersigned", "unknown_key", "bad_signature")}
        send(active_deployment("dep-unsigned", ["cam-9"]), None)
        # The creator's own key countersigning, with another officer's name on the record.
        self_signed = countersign(active_deployment("dep-self", ["cam-9"]), operator)
        send(dataclasses.replace(self_signed, created_by=operator.owner,
                                 authorisation=dataclasses.replace(self_signed.authorisation, officer="Supt authoriser")), operator)
        send(active_deployment("dep-bare", ["cam-9"]), operator)  # authorised, but nobody countersigned
        send(countersign(active_deployment("dep-stranger", ["cam-9"]), Signer.generate(authoriser.owner)), operator)
        widened = countersign(active_deployment("dep-widened", ["cam-9"]), authoriser)
        send(dataclasses.replace(widened, cameras=("cam-9", "cam-10")), operator)  # changed after authorisation
        expected = {"unsigned": 1, "not_countersigned": 1, "unknown_key": 1, "bad_signature": 2}
        wait_until(lambda: {r: refused(r) - before[r] for r in expected} == expected, 15,
                   "every refusal counted")
        assert set(view.all()) == {"dep-ok"}
        dead = reader(topics["dlq"]).read_until(5)
        assert all(r.value() is None and dict(r.headers())["lfr_dlq_payload"] == b"withheld" for r in dead)
        # A genuine, countersigned change still applies.
        publish_deployment(broker.bootstrap_servers, topics["deployments"],
                           dataclasses.replace(active_deployment("dep-ok", ["cam-1"], state="ended"), revision=3))
        wait_until(lambda: view.get("dep-ok").state == "ended", 10, "the genuine end to apply")
        assert view.get("dep-ok").authorisation.officer == authoriser.owner
    finally:
        view.stop()
