"""`lfr forces migrate --to F` (issue #24): a single-force installation becomes registered force F
with no watchlist entry, deployment, audit record or report figure lost; refused (exit 3, nothing
written) while the keys that sign and authorise are not registered for F."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

from services.governance.audit.identity import ephemeral_identity
from services.cli import main as lfr
from services.common.settings import DeploymentSettings, load_settings
from services.common.signing import Keyring, Signer
from services.governance.deployments.admin import DeploymentAdmin
from services.governance.deployments.record import Window
from services.governance.deployments.store import DeploymentStore
from services.pipeline.dispatch.policy import decide
from services.governance.forces.naming import force_topic
from services.governance.watchlist.store import WatchlistStore
from tests.deployments.test_rules import HOUR, calibration, draft, entry
from tests.dispatch.helpers import match
from tests.forces.test_registry import forces_topic  # noqa: F401 - fixture
from tests.kafka_helpers import create_topics, produce_events, unique

SOURCE = {"watchlist": "lfr.watchlist.v1", "deployments": "lfr.deployments.v1", "audit": "lfr.audit.v2", "alerts": "lfr.alerts.v3",
          "adjudications": "lfr.adjudications.v3", "counts": "lfr.counts.v2", "evidence": "lfr.evidence.v1"}
PERIOD = ["--from", "2000-01-01", "--to", "2100-01-01", "--json"]


def test_a_single_force_installation_moves_into_a_registered_force(forces_topic, broker, kafka_env, monkeypatch, tmp_path, capsys):  # noqa: F811
    bootstrap = broker.bootstrap_servers
    # The installation before forces: its own topics (force default's names in a real one).
    topics = {name: unique(name) for name in SOURCE}
    create_topics(bootstrap, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    identity = ephemeral_identity(tmp_path / "keys", "Key Admin")
    for name, value in identity.items():
        monkeypatch.setenv(name, value)
    passphrase = identity["LFR_SIGNING_KEY_PASSPHRASE"]
    admin_key = Signer.load(Path(identity["LFR_SIGNING_KEY_FILE"]), passphrase)
    ring_path = Path(identity["LFR_KEYRING_FILE"])
    files = {}
    for who, owner, rank, role in (("sergeant", "PS 1 Hill", "sergeant", "operator"), ("super", "Supt 2 Lane", "superintendent", "authorising_officer")):
        signer = Signer.generate(owner)
        files[who] = tmp_path / "keys" / f"{who}.key.json"
        signer.save(files[who], passphrase)
        ring = Keyring.load(ring_path)
        ring.add(signer, 0)
        ring.register(signer.key_id, rank, role, "", admin_key)  # no force: the installation's
        ring.save()
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(files["sergeant"]))
    watchlist = WatchlistStore(load_settings(DeploymentSettings))
    for i in range(3):
        watchlist.publish(entry(f"s{i}", seed=i))
    admin = DeploymentAdmin(DeploymentStore(load_settings(DeploymentSettings)), calibration=calibration())
    now = admin.clock()
    admin.create(replace(draft(), deployment_id="dep-1", window=Window(now, now + 4 * HOUR)))
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(files["super"]))
    assert lfr(["deployment", "authorise", "dep-1"]) == 0, capsys.readouterr().err
    alerts, decisions = [], []
    for i in range(4):
        _, alert = decide(None, match(subject=f"s{i}", camera="cam-1", deployment="dep-1", captured_at_ms=now - 1000 * i), 60_000, now)
        alerts.append(alert.data)
        decisions.append({"alert_id": alert.alert_id, "subject_id": f"s{i}", "deployment_id": "dep-1", "camera_id": "cam-1", "actor": "pc1",
                          "role": "operator", "alert_at_ms": now, "decided_at_ms": now, "alert_to_decision_ms": 0, "stage": "decision",
                          "decision": "rejected" if i == 0 else "confirmed"})
    produce_events(bootstrap, topics["alerts"], "lfr.alerts.v3", alerts)
    produce_events(bootstrap, topics["adjudications"], "lfr.adjudications.v3", decisions)
    produce_events(bootstrap, topics["counts"], "lfr.counts.v2",
                   [{"count_id": "in:0:0-9:10", "deployment_id": "dep-1", "faces": 120, "counted_at_ms": now}])
    capsys.readouterr()
    assert lfr(["report", *PERIOD, "--out", str(tmp_path / "before")]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["alerts"] == 4 and before["faces"] == 120
    assert lfr(["audit", "verify"]) == 0
    audit_before = int(capsys.readouterr().out.split(": ")[1].split()[0])

    force = f"m{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", identity["LFR_SIGNING_KEY_FILE"])
    assert lfr(["forces", "add", "--id", force, "--name", "Midshire Police", "--controller", f"dpo@{force}.example"]) == 0
    assert lfr(["topics", "apply", "--force", force]) == 0
    capsys.readouterr()

    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(files["sergeant"]))
    assert lfr(["forces", "migrate", "--to", force]) == 3  # the keys are the installation's, not yet F's
    err = capsys.readouterr().err
    assert "is not registered for force" in err and "nothing copied" in err
    ring = Keyring.load(ring_path)
    for who, rank, role in (("sergeant", "sergeant", "operator"), ("super", "superintendent", "authorising_officer")):
        ring.register(Signer.load(files[who], passphrase).key_id, rank, role, force, admin_key)
    ring.save()
    assert lfr(["forces", "migrate", "--to", force]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary | {"audit": 0} == {"to": force, "audit": 0, "watchlist": 3, "deployments": 1, "drafts_skipped": [], "alerts": 4,
                                      "adjudications": 4, "counts": 1, "evidence": 0}
    assert summary["audit"] == audit_before + 1  # and the force's registration, audited on the installation's trail

    for name in SOURCE:  # from here on the force's own names
        monkeypatch.delenv(f"LFR_{name.upper()}_TOPIC")
    monkeypatch.setenv("LFR_FORCE", force)
    assert lfr(["report", *PERIOD, "--force", force, "--out", str(tmp_path / "after")]) == 0
    assert json.loads(capsys.readouterr().out) == before  # no report figure lost
    moved = DeploymentStore(load_settings(DeploymentSettings))
    assert moved.settings.deployments_topic == force_topic(force, "lfr.deployments.v1")
    assert set(moved.watchlist.read_all()) == {"s0", "s1", "s2"}
    deployment = moved.read_all()["dep-1"]
    assert deployment.state == "authorised" and deployment.force == force
    assert lfr(["audit", "verify", "--force", force]) == 0
    out = capsys.readouterr().out
    assert f"{summary['audit'] + 4} records, chain intact" in out  # the history, then 3 entries' and 1 deployment's records
