"""`lfr privacy audit` as operators run it: a stranger's frame left in the dead-letter topic, in a
log and an embedding in a data file are each reported, and the command exits 1."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import cv2
import numpy as np
from confluent_kafka.admin import AdminClient

from services.common.broker import EmbeddedBroker
from services.common.envelope import encode
from services.common.topics import apply_topics, load_topic_specs
from tests.kafka_helpers import produce


def _audit(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", "privacy", "audit", "--bootstrap-servers", bootstrap, *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "LFR_QDRANT_PATH": ":memory:"})


def test_audit_reports_each_store_holding_a_strangers_data_and_exits_1(tmp_path):
    image = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    frame = encode("lfr.frames.v1", {"camera_id": "cam-1", "deployment_id": "van-1", "seq": 1, "captured_at_ms": 1,
                                     "width": 64, "height": 48, "media_type": "image/jpeg", "image": jpeg})
    data, logs = tmp_path / "data", tmp_path / "logs"
    data.mkdir()
    logs.mkdir()
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        bootstrap = broker.bootstrap_servers
        apply_topics(AdminClient({"bootstrap.servers": bootstrap}), load_topic_specs())
        clean = _audit(bootstrap, "--json", "--data-dir", str(data), "--logs", str(logs))
        assert clean.returncode == 0, clean.stderr
        assert json.loads(clean.stdout)["findings"] == []

        produce(bootstrap, "lfr.frames.v1", [frame])
        produce(bootstrap, "lfr.dlq.v1", [frame])  # a dead letter that kept its value (the old runner)
        (logs / "detect.log").write_text(json.dumps({"msg": "bad frame", "image": base64.b64encode(jpeg).decode()}) + "\n")
        vector = np.random.default_rng(2).normal(size=128).astype(np.float32)
        np.save(data / "probe.npy", vector / np.linalg.norm(vector))
        found = _audit(bootstrap, "--json", "--data-dir", str(data), "--logs", str(logs))
    assert found.returncode == 1, found.stderr
    result = json.loads(found.stdout)
    where = {(f["store"].split(":")[0] + ":" + f["store"].split(":")[1].split("/")[-1], f["kind"], f["method"]) for f in result["findings"]}
    assert where == {("topic:lfr.dlq.v1", "frame", "exact_bytes"), ("log:detect.log", "frame", "exact_bytes"),
                     ("file:probe.npy", "embedding", "unattributed")}, result["findings"]
    assert result["checked"]["topics"]["lfr.frames.v1"]["role"].startswith("biometric")
    assert result["checked"]["references"]["frames"] == 1
    assert jpeg.hex()[:64] not in found.stdout  # a finding never carries the data itself
