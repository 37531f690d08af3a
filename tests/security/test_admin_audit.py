"""Camera changes are audited before they are made (no audit, no change)."""

from __future__ import annotations

import json

from services.cli import main as lfr
from services.common.jsonevents import decode_record
from tests.kafka_helpers import create_topics, unique


def test_camera_changes_are_audited_first(broker, kafka_env, monkeypatch, reader, tmp_path, capsys):
    audit = unique("audit")
    create_topics(broker.bootstrap_servers, audit, partitions=1)
    monkeypatch.setenv("LFR_AUDIT_TOPIC", audit)
    cameras = tmp_path / "cameras.json"
    base = ["cameras", "--file", str(cameras)]
    assert lfr([*base, "add", "--id", "north-1", "--deployment", "op-7", "--source", "rtsp://admin:hunter2@10.1.2.3/s1"]) == 0
    assert lfr([*base, "remove", "--id", "north-1"]) == 0
    records = [decode_record(r.value(), r.headers()).data for r in reader(audit).read_until(2)]
    assert [(r["action"], r["subject_id"], r["actor"]) for r in records] == [
        ("camera.add", "north-1", "test:operator"), ("camera.remove", "north-1", "test:operator")]
    assert "hunter2" not in json.dumps(records) and records[0]["details"]["deployment_id"] == "op-7"

    # Without a signing key nothing is audited, so nothing changes.
    monkeypatch.delenv("LFR_SIGNING_KEY_FILE")
    capsys.readouterr()
    assert lfr([*base, "add", "--id", "south-2", "--deployment", "op-7", "--source", "synthetic:crowd"]) == 1
    assert "not changed" in capsys.readouterr().err
    assert json.loads(cameras.read_text())["cameras"] == []
    assert lfr(["audit", "verify", "--topic", audit]) == 0


def test_reconcile_names_unaudited_and_unapplied_changes(broker, kafka_env, monkeypatch, capsys):
    """The audit-first rule: a crash between the audit record and the change leaves an audited
    change that never happened; a change written around the tools has no audit record. Both named."""
    import time

    import numpy as np
    from confluent_kafka import Producer

    from services.common.settings import WatchlistSettings, load_settings
    from services.engine.face.models import SFACE, ModelIdentity
    from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
    from services.governance.watchlist.store import WatchlistStore

    topics = {name: unique(name) for name in ("watchlist", "audit")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    store = WatchlistStore(load_settings(WatchlistSettings))
    now = int(time.time() * 1000)
    vector = np.ones(128, np.float32) / np.sqrt(128)
    entry = WatchlistEntry("ok", "R1", "suspect", "red", Provenance("custody", now, "PACE", "x", now), now + 86_400_000, ("d",),
                           (EnrolledEmbedding(ModelIdentity(SFACE.name, SFACE.sha256), vector),))
    store.publish(entry)  # audited, then applied: nothing to report
    store.audit_writer.write("watchlist.add", "crashed", {"change_sha256": "00" * 32})  # the writer died here
    key, value = b"sneaked", b"x"
    raw = Producer({"bootstrap.servers": broker.bootstrap_servers})
    raw.produce(topics["watchlist"], key=key, value=value,
                headers=store.signer.record_headers(topics["watchlist"], key, value, audit_hash="ab" * 32))
    raw.flush(10)
    capsys.readouterr()
    assert lfr(["audit", "reconcile", "--topic", topics["watchlist"]]) == 1
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((f["kind"], f["key"]) for f in found) == [("not_applied", "crashed"), ("unaudited", "sneaked")]
