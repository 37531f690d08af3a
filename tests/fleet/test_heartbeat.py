"""The van heartbeat (lfr.heartbeats.v1): built from the van's own state, valid, and an outcome the link may forward."""

from __future__ import annotations

import pytest

from services.common.envelope import decode
from services.common.jsonevents import decode_record
from services.common.errors import SchemaValidationError
from services.van.fleet.heartbeat import build_heartbeat, heartbeat_record, link_state
from services.van.link.egress import withhold_reason
from services.van.link.outbox import Outbox, OutboxRow
from tests.fleet.test_bundle import build, world  # noqa: F401 - the fixture

NOW = 1_800_000_000_000


def test_heartbeat_from_a_van_holding_a_bundle_with_a_backlog(world, tmp_path):  # noqa: F811
    header = world.store.take_in(build(world), world.now)
    box = Outbox(tmp_path / "o.sqlite")
    box.enqueue([OutboxRow(f"r{i}", "lfr.audit.v2", b"k", b"x" * 100) for i in range(3)], now_ms=world.now - 60_000)
    body = build_heartbeat(van_id="van-3", force="gmp", now_ms=world.now, held=world.store.held(), cameras={"cam-1": 9.97, "cam-2": 0},
                           backlog=box.backlog(), last_ack_ms=None, disk_path=tmp_path, version="1.2.3", build="abc123")
    key, value = heartbeat_record(body)
    data = decode(value).data
    assert key == b"van-3" and data["deployment_id"] == "dep-van" and data["bundle"]["bundle_id"] == header.bundle_id
    assert data["bundle"]["erase_at_ms"] == header.erase_at_ms and data["bundles_held"] == 1
    assert data["cameras"] == [{"camera_id": "cam-1", "fps": 9.97}, {"camera_id": "cam-2", "fps": 0}]
    assert data["link"] == {"state": "down", "backlog_records": 3, "backlog_bytes": 303, "backlog_oldest_age_s": 60.0}
    assert data["disk_total_bytes"] >= data["disk_free_bytes"] > 0 and data["software"] == {"version": "1.2.3", "build": "abc123"}
    assert withhold_reason("lfr.heartbeats.v1", value, []) is None  # an outcome: the link forwards it


def test_heartbeat_without_a_bundle_or_an_outbox(tmp_path):
    body = build_heartbeat(van_id="van-9", force="wyp", now_ms=NOW, held={}, cameras={}, disk_path=tmp_path)
    data = decode(heartbeat_record(body)[1]).data
    assert "deployment_id" not in data and "bundle" not in data and data["link"]["state"] == "unknown"


def test_link_state():
    assert link_state(0, None, NOW, 10) == "up"
    assert link_state(5, NOW - 2_000, NOW, 10) == "up"
    assert link_state(5, NOW - 20_000, NOW, 10) == "down"
    assert link_state(5, None, NOW, 10) == "down"


def test_a_heartbeat_with_a_face_in_it_never_leaves(tmp_path):
    body = build_heartbeat(van_id="van-9", force="wyp", now_ms=NOW, held={}, cameras={}, disk_path=tmp_path)
    with pytest.raises(SchemaValidationError):
        heartbeat_record({**body, "chip": "base64 of a face"})
    with pytest.raises(SchemaValidationError):
        heartbeat_record({**body, "force": "Not A Force Id"})


def test_lfr_van_heartbeat_publishes_to_the_vans_broker(broker, kafka_env, reader, tmp_path):
    import json

    from tests.kafka_helpers import create_topics, unique
    from tests.test_cli_conventions import lfr

    topic = unique("heartbeats")
    create_topics(broker.bootstrap_servers, topic, partitions=1)
    Outbox(tmp_path / "state" / "outbox.sqlite").enqueue([OutboxRow("r1", "lfr.audit.v2", b"k", b"v")])
    result = lfr("van", "heartbeat", "--count", "1", env={**kafka_env, "LFR_HEARTBEAT_TOPIC": topic, "LFR_VAN_ID": "van-7", "LFR_FORCE": "gmp",
                                                          "LFR_VAN_STATE_DIR": str(tmp_path / "state"), "LFR_BUILD_ID": "deadbeef",
                                                          "LFR_LINK_OUTBOX_PATH": str(tmp_path / "state" / "outbox.sqlite")})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["link"]["backlog_records"] == 1
    (record,) = reader(topic).read_until(1)
    data = decode_record(record.value(), record.headers()).data
    assert record.key() == b"van-7" and data["force"] == "gmp" and data["software"]["build"] == "deadbeef" and data["bundles_held"] == 0
