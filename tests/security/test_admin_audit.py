"""Camera changes are audited before they are made (no audit, no change)."""

from __future__ import annotations

import json

from services.cli import main as lfr
from services.common.envelope import decode
from tests.kafka_helpers import create_topics, unique


def test_camera_changes_are_audited_first(broker, kafka_env, monkeypatch, reader, tmp_path, capsys):
    audit = unique("audit")
    create_topics(broker.bootstrap_servers, audit, partitions=1)
    monkeypatch.setenv("LFR_AUDIT_TOPIC", audit)
    cameras = tmp_path / "cameras.json"
    base = ["cameras", "--file", str(cameras)]
    assert lfr([*base, "add", "--id", "north-1", "--deployment", "op-7", "--source", "rtsp://admin:hunter2@10.1.2.3/s1"]) == 0
    assert lfr([*base, "remove", "--id", "north-1"]) == 0
    records = [decode(r.value()).data for r in reader(audit).read_until(2)]
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
