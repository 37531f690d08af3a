"""The privacy rules without a broker: retention verdict, dead-letter payload, artefact finding."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest

from services.common.envelope import encode
from services.common.topics import TopicSpec, load_topic_specs
from services.governance.privacy.artefacts import from_raw, from_value
from services.governance.privacy.payload import ORIGINAL, WITHHELD, dead_letter_value
from services.governance.privacy.retention import check_topic

SPECS = {spec.name: spec for spec in load_topic_specs()}


def effective(spec: TopicSpec, **changes: str | None) -> dict[str, str]:
    config = dict(spec.config)
    for key, value in changes.items():
        key = key.replace("_", ".")
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


@pytest.mark.parametrize("name", ["lfr.frames.v1", "lfr.faces.v1", "lfr.embeddings.v1", "lfr.matches.v1", "lfr.alerts.v3", "lfr.watchlist.v1"])
def test_declared_settings_keep_the_promise_with_the_k8s_check_interval(name):
    verdict = check_topic(SPECS[name], effective(SPECS[name]), check_interval_ms=10_000)
    assert verdict.ok and verdict.problems == []


@pytest.mark.parametrize(
    ("changes", "interval", "named"),
    [
        ({"retention_ms": "3600000"}, None, "retention.ms=3600000"),
        ({"retention_ms": "-1"}, None, "retention.ms=-1"),
        ({"retention_ms": None}, None, "retention.ms=unset"),
        ({"segment_ms": "604800000"}, None, "segment.ms=604800000"),
        ({"message_timestamp_type": "CreateTime"}, None, "message.timestamp.type=CreateTime"),
        ({"message_timestamp_type": None}, None, "message.timestamp.type=CreateTime (default)"),
        ({"cleanup_policy": "compact"}, None, "cleanup.policy=compact"),
        ({}, 300_000, "log.retention.check.interval.ms=300000"),  # Kafka's default: 5 min
    ],
)
def test_each_broken_setting_of_a_biometric_topic_is_named(changes, interval, named):
    spec = SPECS["lfr.frames.v1"]
    verdict = check_topic(spec, effective(spec, **changes), check_interval_ms=interval)
    assert not verdict.ok
    assert any(named in problem for problem in verdict.problems), verdict.problems


def test_watchlist_removal_is_bounded_by_segment_and_compaction_lag():
    spec = SPECS["lfr.watchlist.v1"]
    assert int(spec.config["segment.ms"]) + int(spec.config["max.compaction.lag.ms"]) <= spec.promise_ms
    verdict = check_topic(spec, effective(spec, max_compaction_lag_ms=None), None)
    assert any("max.compaction.lag.ms=None" in p for p in verdict.problems)
    verdict = check_topic(spec, effective(spec, min_cleanable_dirty_ratio=None), None)
    assert any("min.cleanable.dirty.ratio" in p for p in verdict.problems)


def test_missing_topic_fails():
    assert check_topic(SPECS["lfr.faces.v1"], None, None).problems == ["topic missing on the broker"]


def _jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_dead_letters_of_biometric_records_keep_no_value():
    frame = encode("lfr.frames.v1", {"camera_id": "c", "deployment_id": "d", "seq": 1, "captured_at_ms": 1, "width": 32,
                                     "height": 32, "media_type": "image/jpeg", "image": _jpeg(1)})
    for topic in ("lfr.frames.v1", "lfr.faces.v1", "lfr.embeddings.v1", "lfr.matches.v1", "lfr.alerts.v3", "lfr.watchlist.v1"):
        assert dead_letter_value(topic, b"anything") == (None, WITHHELD)
    assert dead_letter_value("lfr.audit.v2", b"x") == (b"x", ORIGINAL)
    # An undeclared topic: what the record says it carries decides.
    assert dead_letter_value("custom.topic", frame) == (None, WITHHELD)
    assert dead_letter_value("custom.topic", b"\x00garbage") == (b"\x00garbage", ORIGINAL)
    alert_headers = [("ce_dataschema", b"https://openlfr.org/schemas/lfr.alerts.v3.json"), ("content-type", b"application/json")]
    assert dead_letter_value("custom.topic", b"{}", alert_headers) == (None, WITHHELD)  # a JSON alert, by its header
    assert dead_letter_value("custom.topic", b"{}", alert_headers[1:]) == (b"{}", ORIGINAL)
    assert dead_letter_value("lfr.frames.v1", None) == (None, ORIGINAL)  # a tombstone has nothing to withhold


def test_artefacts_are_found_in_envelopes_logs_and_base64():
    chip = _jpeg(2)
    vector = np.random.default_rng(3).normal(size=128).astype(np.float32)
    vector /= np.linalg.norm(vector)
    line = json.dumps({"msg": "oops", "chip": base64.b64encode(chip).decode(), "emb": [round(float(v), 7) for v in vector]})
    found = from_raw(line.encode() + b"\n" + repr(chip[:8]).encode())
    kinds = sorted(a.kind for a in found)
    assert kinds == ["embedding", "escaped_image", "image"], kinds
    assert any(a.kind == "embedding" and float(a.vector @ vector) > 0.999 for a in found)
    # Raw JPEG bytes inside arbitrary binary, and nothing in plain noise.
    assert [a.kind for a in from_raw(b"\x00" * 100 + chip + b"\x01" * 50)] == ["image"]
    assert from_raw(np.random.default_rng(4).integers(0, 255, 200_000, dtype=np.uint8).tobytes()) == []
    # A schema-invalid envelope is still read: its chip is found.
    broken = b"".join([b"LFR\x01", len(h := json.dumps({"schema": "lfr.faces.v1", "data": {"chip": {"data": {"$bytes": [0, len(chip)]}}}}).encode()).to_bytes(4, "big"), h, chip])
    assert [(a.kind, a.where) for a in from_value(broken)] == [("image", "data.chip.data")]
