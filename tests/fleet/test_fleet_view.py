"""The fleet view (issue #26): the core's gauges from the vans' accepted heartbeats, labelled by
equipment only, following a van lent to another force and ignoring a heartbeat delivered late."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest

from services.van.fleet.fleetview import FleetView
from services.van.fleet.heartbeat import build_heartbeat
from services.van.link.outbox import Outbox, OutboxRow

NOW = 1_800_000_000_000


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels)


def beat(tmp_path, van="fv-1", force="gmp", at_ms=NOW, cameras=None, held=None, backlog=None):
    return build_heartbeat(van_id=van, force=force, now_ms=at_ms, held=held or {}, cameras=cameras if cameras is not None else {"cam-a": 9.5, "cam-b": 0},
                           backlog=backlog, disk_path=tmp_path, version="1.2.3", build="abc")


def test_heartbeat_fields_become_gauges_per_van(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    box.enqueue([OutboxRow(f"r{i}", "lfr.audit.v2", b"k", b"x" * 10) for i in range(4)], now_ms=NOW - 120_000)
    held = {"b" * 32: {"deployment_id": "dep-1", "window_start_ms": NOW - 3_600_000, "window_end_ms": NOW + 600_000, "erase_at_ms": NOW + 4_200_000},
            "c" * 32: {"deployment_id": "dep-0", "window_start_ms": NOW - 90_000_000, "window_end_ms": NOW - 80_000_000, "erase_at_ms": NOW - 76_400_000}}
    view = FleetView()
    view.update(beat(tmp_path, held=held, backlog=box.backlog()), received_ms=NOW + 5_000)
    labels = {"van": "fv-1", "force": "gmp"}
    assert sample("lfr_fleet_heartbeat_timestamp_seconds", **labels) == NOW / 1000
    assert sample("lfr_fleet_heartbeat_received_timestamp_seconds", **labels) == (NOW + 5_000) / 1000
    assert sample("lfr_fleet_backlog_records", **labels) == 4 and sample("lfr_fleet_backlog_oldest_age_seconds", **labels) == 120
    assert sample("lfr_fleet_link_up", **labels) == 0  # rows waiting, nothing acknowledged
    assert sample("lfr_fleet_deployment_active", **labels) == 1
    assert sample("lfr_fleet_bundle_window_end_timestamp_seconds", **labels) == (NOW + 600_000) / 1000
    assert sample("lfr_fleet_bundles_past_window", **labels) == 1  # dep-0's bundle, window over, not erased
    assert sample("lfr_fleet_cameras", **labels) == 2 and sample("lfr_fleet_cameras_sending", **labels) == 1
    assert sample("lfr_fleet_camera_fps", **labels, camera="cam-a") == 9.5
    assert sample("lfr_fleet_disk_total_bytes", **labels) > 0
    assert sample("lfr_fleet_van_info", **labels, version="1.2.3", build="abc") == 1
    assert [v["van_id"] for v in view.vans("gmp")] == ["fv-1"] and view.vans("wyp") == []


def test_a_late_heartbeat_does_not_overwrite_a_newer_one(tmp_path):
    view = FleetView()
    view.update(beat(tmp_path, van="fv-2", at_ms=NOW), received_ms=NOW)
    view.update(beat(tmp_path, van="fv-2", at_ms=NOW - 60_000, cameras={}), received_ms=NOW + 1)  # drained from a backlog
    assert sample("lfr_fleet_heartbeat_timestamp_seconds", van="fv-2", force="gmp") == NOW / 1000
    assert sample("lfr_fleet_cameras", van="fv-2", force="gmp") == 2


def test_a_van_lent_to_another_force_leaves_its_old_force_series_and_cameras_that_go_leave_too(tmp_path):
    view = FleetView()
    view.update(beat(tmp_path, van="fv-3", force="gmp"), received_ms=NOW)
    view.update(beat(tmp_path, van="fv-3", force="wyp", at_ms=NOW + 1000, cameras={"cam-a": 5.0}), received_ms=NOW + 1000)
    assert sample("lfr_fleet_backlog_records", van="fv-3", force="gmp") is None
    assert sample("lfr_fleet_camera_fps", van="fv-3", force="gmp", camera="cam-a") is None
    assert sample("lfr_fleet_camera_fps", van="fv-3", force="wyp", camera="cam-a") == 5.0
    assert sample("lfr_fleet_camera_fps", van="fv-3", force="wyp", camera="cam-b") is None


def test_fleet_metrics_carry_no_person_or_track_label(tmp_path):
    FleetView().update(beat(tmp_path, van="fv-4"), received_ms=NOW)
    allowed = {"van", "force", "camera", "version", "build", "reason", "topic"}
    for family in REGISTRY.collect():
        if family.name.startswith(("lfr_fleet_", "lfr_intake_")):
            for metric in family.samples:
                assert set(metric.labels) <= allowed, (family.name, metric.labels)
    assert b"lfr_fleet_camera_fps" in generate_latest(REGISTRY)
