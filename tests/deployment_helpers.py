"""Active deployments for tests: the services refuse to capture, match or alert without one.

``active_deployment`` builds a record that went draft -> authorised -> active (two different
people), and ``publish_deployment`` writes it to a deployments topic of the test broker.
Tests of the admin path itself use services.governance.deployments.admin (the `lfr deployment` code).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable

from confluent_kafka import Producer

from services.governance.audit.writer import AuditWriter, change_digest
from services.common.envelope import encode
from services.common.settings import KafkaSettings
from services.common.signing import Keyring, Signer
from services.governance.deployments.signing import countersign
from services.governance.deployments.record import SCHEMA, Authorisation, Criteria, Deployment, Snapshot, Transition, Window
from services.governance.deployments.snapshot import entry_version, freeze
from services.governance.watchlist.entry import CATEGORIES, PRIORITIES, WatchlistEntry


def active_deployment(
    deployment_id: str,
    cameras: Iterable[str],
    *,
    entries: Iterable[WatchlistEntry] = (),
    state: str = "active",
    threshold: float = 0.5,
    start_ms: int | None = None,
    hours: float = 2.0,
) -> Deployment:
    now = int(time.time() * 1000)
    start = now - 60_000 if start_ms is None else start_ms
    entries = list(entries)
    snapshot: Snapshot = freeze(entries, 1, now)
    history = [Transition("draft", "PS creator", now - 2000)]
    if state != "draft":
        history.append(Transition("authorised", "Supt authoriser", now - 1000))
    if state in ("active", "ended"):
        history.append(Transition("active", "PS creator", now - 500))
    if state == "ended":
        history.append(Transition("ended", "PS creator", now))
    return Deployment(
        deployment_id=deployment_id, revision=len(history) - 1, state=state, created_by="PS creator", created_at_ms=now - 2000,
        history=tuple(history), force="Test Constabulary", name="test deployment", purpose={"offences": ["test"]},
        place={"name": "test street", "point": {"lat": 51.5, "lon": -0.1}, "radius_m": 100.0},
        window=Window(start, start + int(hours * 3_600_000)), cameras=tuple(cameras), criteria=Criteria(CATEGORIES, PRIORITIES, 1000),
        match_threshold=threshold, footfall_per_hour=1000.0, rationale="test", dpia_ref="DPIA-T", eia_ref="EIA-T",
        public_notice={"signage": True, "notice_ref": "N-T"},
        authorisation=Authorisation("Supt authoriser", "superintendent", now - 1000, threshold, 0.0, "test calibration") if state != "draft" else None,
        snapshot=snapshot if state != "draft" else None,
    )


def publish_deployment(bootstrap: str, topic: str, *deployments: Deployment, signers: tuple[Signer, Signer] | None = None,
                       audit_topic: str | None = None) -> None:
    """Written as `lfr deployment` would: each record audited first (a real, signed, chained
    audit record on ``audit_topic``, default LFR_AUDIT_TOPIC else lfr.audit.v2, describing the
    change), then signed by the test operator's key carrying that record's hash, the
    authorisation countersigned by the test authoriser's (the session keys of tests/conftest.py)."""
    operator, authoriser = signers or session_signers()
    audit_topic = audit_topic or os.environ.get("LFR_AUDIT_TOPIC", "lfr.audit.v2")
    producer = Producer({"bootstrap.servers": bootstrap})
    audit = AuditWriter(KafkaSettings(kafka_bootstrap_servers=bootstrap), audit_topic, operator, "deployment-test", producer=producer)
    try:
        for deployment in deployments:
            # As `lfr deployment create` does: the creator is the owner of the key that writes the draft.
            deployment = dataclasses.replace(deployment, created_by=operator.owner)
            if deployment.authorisation is not None:
                deployment = countersign(deployment, authoriser)
            key, value = deployment.deployment_id.encode(), encode(SCHEMA, deployment.to_data())
            _record, audit_hash = audit.write("deployment.record", deployment.deployment_id,
                                              {"state": deployment.state, "revision": deployment.revision,
                                               "change_sha256": change_digest(topic, key, value)}, deployment_id=deployment.deployment_id)
            producer.produce(topic, key=key, value=value, headers=operator.record_headers(topic, key, value, audit_hash=audit_hash))
        assert producer.flush(30) == 0
    finally:
        audit.close()


def session_signers() -> tuple[Signer, Signer]:
    """(operator, authoriser): the session's keys, from the environment tests/conftest.py sets."""
    import os
    from pathlib import Path

    passphrase = os.environ["LFR_SIGNING_KEY_PASSPHRASE"]
    operator = Signer.load(Path(os.environ["LFR_SIGNING_KEY_FILE"]), passphrase)
    ring = Keyring.load(Path(os.environ["LFR_KEYRING_FILE"]))
    (other,) = [k for k in ring.keys() if k.owner == "test:authoriser"]
    return operator, Signer.load(Path(os.environ["LFR_SIGNING_KEY_FILE"]).with_name(f"{other.key_id}.key.json"), passphrase)


def versions(entries: Iterable[WatchlistEntry]) -> set[str]:
    return {entry_version(e) for e in entries}
