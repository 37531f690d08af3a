"""The pure deployment rules: record, state machine, refusals, policy, snapshot, calibration, erasure."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from services.common.envelope import decode, encode
from services.governance.deployments import expiry, lifecycle, policy, snapshot
from services.governance.deployments.calibration import Calibration, CalibrationPoint
from services.governance.deployments.record import SCHEMA, Deployment, Refused, Window
from services.engine.face.models import SFACE, ModelIdentity
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from tests.deployment_helpers import active_deployment

HOUR = 3_600_000
NOW = 1_800_000_000_000
MODEL = ModelIdentity(SFACE.name, SFACE.sha256)


def calibration() -> Calibration:
    # 400 subjects, 4,000 non-mated searches: 40 alarms at 0.40, 4 at 0.45, 1 at 0.50, none above.
    points = (CalibrationPoint(0.40, 40, 0.01), CalibrationPoint(0.45, 4, 0.001), CalibrationPoint(0.50, 1, 0.00025),
              CalibrationPoint(0.55, 0, 0.0))
    return Calibration("sface@test", 400, 4000, points, {"dataset": "synthetic"})


def entry(subject: str, category: str = "suspect", deployments=("dep-1",), expires: int = NOW + HOUR, seed: int = 0) -> WatchlistEntry:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    vector /= np.linalg.norm(vector)
    return WatchlistEntry(subject, "W-" + subject, category, "red", Provenance("custody", 0, "PACE", "PC1", NOW - HOUR), expires,
                          tuple(deployments), (EnrolledEmbedding(MODEL, vector),))


def draft(**changes) -> Deployment:
    base = active_deployment("dep-1", ["cam-1"], state="draft", start_ms=NOW, hours=4)
    base = replace(base, revision=0, history=base.history[:1], authorisation=None, snapshot=None, match_threshold=0.6)
    return replace(base, **changes)


def authorise(d: Deployment, officer: str = "Supt authoriser", rank: str = "superintendent", n: int = 5, **kwargs) -> Deployment:
    frozen = snapshot.freeze([entry(f"s{i}", seed=i) for i in range(n)], 1, NOW)
    return lifecycle.authorise(d, officer=officer, rank=rank, snapshot=frozen, calibration=calibration(),
                               rules=kwargs.pop("rules", lifecycle.AuthorisationRules()), now_ms=NOW, **kwargs)


def refusal(d: Deployment, **kwargs) -> str:
    with pytest.raises(Refused) as caught:
        authorise(d, **kwargs)
    return str(caught.value)


def test_record_round_trips_through_its_schema():
    record = authorise(draft())
    again = Deployment.from_data(decode(encode(SCHEMA, record.to_data())).data)
    assert again == record
    assert again.states_seen == ["draft", "authorised"]
    with pytest.raises(Exception, match="/state"):
        encode(SCHEMA, {**record.to_data(), "state": "running"})


def test_each_authorisation_refusal_has_its_own_message():
    assert refusal(draft(), officer="PS creator") == "authorising_officer: PS creator created this deployment and cannot authorise it"
    assert refusal(draft(dpia_ref=None)) == "dpia_ref: is required"
    assert refusal(draft(window=Window(NOW - 5 * HOUR, NOW - HOUR))) == "window: the window is in the past"
    assert refusal(draft(window=Window(NOW, NOW + 13 * HOUR))) == "window: the window is longer than the maximum of 12 h"
    assert refusal(draft(match_threshold=0.45)).startswith("match_threshold: 0.45 is below the floor 0.5")
    assert refusal(draft(), rank="inspector") == "rank: inspector is below the minimum authorising rank (superintendent)"
    assert refusal(draft(public_notice={"signage": True})).startswith("public_notice:")
    assert refusal(draft(), n=2000).startswith("criteria: 2000 entries qualify")


def test_floor_from_calibration_and_the_setting_that_moves_it():
    cal = calibration()
    # p1 = 1 - (1 - FPIR_ref)^(1/400); FPIR(1000) = 1 - (1 - p1)^1000
    p1 = 1 - (1 - 1 / 4000) ** (1 / 400)
    assert cal.fpir(0.50, 1000) == pytest.approx(1 - (1 - p1) ** 1000)
    assert cal.fpir(0.50, 1000) < 1e-3 < cal.fpir(0.45, 1000)
    assert cal.floor() == 0.50
    assert cal.fpir(0.60, 400) == pytest.approx(1 / 4000)  # zero alarms counted as one
    raised = lifecycle.AuthorisationRules(threshold_floor_setting=0.65)
    assert lifecycle.floor_for(cal, raised) == 0.65
    assert refusal(draft(), rules=raised).startswith("match_threshold: 0.6 is below the floor 0.65")
    lowered = lifecycle.AuthorisationRules(threshold_floor_setting=0.45)
    with pytest.raises(Refused, match="threshold_floor: .* an override reason is required"):
        lifecycle.floor_for(cal, lowered)
    record = authorise(draft(match_threshold=0.45), rules=replace(lowered, threshold_floor_override_reason="missing child search"))
    assert record.authorisation.threshold_override_reason == "missing child search"


def test_expected_false_alerts_over_the_limit_need_a_justification():
    busy = draft(match_threshold=0.5, footfall_per_hour=5_000_000.0)
    assert refusal(busy).startswith("expected_false_alerts_per_hour:")
    record = authorise(busy, false_alerts_justification="stadium, two officers per alert")
    expected = calibration().expected_false_alerts_per_hour(0.5, 5, 5_000_000.0)
    assert record.authorisation.expected_false_alerts_per_hour == pytest.approx(expected, rel=1e-5)
    assert record.authorisation.false_alerts_justification == "stadium, two officers per alert"


def test_state_machine_and_what_a_reader_refuses():
    authorised = authorise(draft())
    with pytest.raises(Refused, match="only an active deployment can end"):
        lifecycle.end(authorised, "x", NOW)
    active = lifecycle.start(authorised, "PS creator", NOW + 1)
    ended = lifecycle.end(active, "PS creator", NOW + 2)
    assert ended.states_seen == ["draft", "authorised", "active", "ended"]
    assert lifecycle.check_successor(active, ended) is None
    assert lifecycle.check_successor(ended, replace(active, revision=ended.revision + 1)) == "illegal transition ended -> active"
    assert lifecycle.check_successor(None, replace(draft(), state="active")) is not None
    assert lifecycle.check_successor(active, replace(ended, revision=active.revision)) is not None
    with pytest.raises(Refused, match="cannot be cancelled"):
        lifecycle.cancel(ended, "x", NOW, "late")


def test_policy_capture_records_and_match_scope():
    d = active_deployment("dep-1", ["cam-1"], start_ms=NOW - HOUR, hours=2, entries=[entry("s1")])
    rules = policy.DeploymentPolicy({"dep-1": d}, skew_ms=2000, clock=lambda: NOW)
    assert rules.capture_refusal("cam-1", "dep-1") is None
    assert rules.capture_refusal("cam-2", "dep-1") == policy.CAMERA_NOT_AUTHORISED
    assert rules.capture_refusal("cam-1", "dep-2") == policy.NO_DEPLOYMENT
    assert rules.record_refusal("dep-1", NOW + HOUR + 1500) is None  # inside the skew allowance
    assert rules.record_refusal("dep-1", NOW + HOUR + 2500) == policy.OUTSIDE_WINDOW
    late = policy.DeploymentPolicy({"dep-1": d}, clock=lambda: NOW + 2 * HOUR)
    assert late.capture_refusal("cam-1", "dep-1") == policy.OUTSIDE_WINDOW
    ended = policy.DeploymentPolicy({"dep-1": replace(d, state="ended")}, clock=lambda: NOW)
    assert ended.capture_refusal("cam-1", "dep-1") == policy.NOT_ACTIVE and ended.match_scope("dep-1") is None
    assert rules.match_scope("dep-1").entry_versions == {snapshot.entry_version(entry("s1"))}


def test_snapshot_takes_only_entries_meeting_the_criteria():
    d = draft()
    entries = {e.subject_id: e for e in (entry("ok"), entry("witness", category="witness_or_victim"),
                                          entry("elsewhere", deployments=("dep-9",)), entry("old", expires=NOW - 1))}
    criteria = replace(d.criteria, categories=("suspect",))
    chosen, excluded = snapshot.select(entries, "dep-1", criteria, NOW)
    assert [e.subject_id for e in chosen] == ["ok"]
    assert excluded == {"category": 1, "scope": 1, "expired": 1}
    frozen = snapshot.freeze(chosen, 1, NOW)
    assert frozen.hash == snapshot.manifest_hash(frozen.subjects) and len(frozen.hash) == 64
    # The version ignores scope (narrowing it keeps other snapshots valid) but not the content.
    assert snapshot.entry_version(replace(entries["ok"], deployments=("dep-2",))) == snapshot.entry_version(entries["ok"])
    assert snapshot.entry_version(replace(entries["ok"], priority="amber")) != snapshot.entry_version(entries["ok"])


def test_erasure_is_due_after_the_delay_and_spares_entries_other_deployments_need():
    shared, own = entry("shared", deployments=("dep-1", "dep-2")), entry("own")
    d1 = replace(active_deployment("dep-1", ["c"], entries=[shared, own], state="ended"))
    ended_at = lifecycle.ended_at_ms(d1)
    d2 = active_deployment("dep-2", ["c"], entries=[shared])
    entries = {"shared": shared, "own": own}
    assert expiry.due({"dep-1": d1, "dep-2": d2}, entries, ended_at + 23 * HOUR, 24 * HOUR) == []
    [plan] = expiry.due({"dep-1": d1, "dep-2": d2}, entries, ended_at + 24 * HOUR, 24 * HOUR)
    assert plan.tombstone == ("own",) and [e.deployments for e in plan.rescope] == [("dep-2",)]


def test_entry_expiry_is_capped_by_the_maximum_lifetime(monkeypatch):
    import time

    from services.common.settings import WatchlistSettings, load_settings
    from services.governance.watchlist.admin import WatchlistAdmin
    from services.governance.watchlist.store import WatchlistStore
    from services.governance.watchlist.thresholds import Thresholds
    from tests.watchlist.test_enrolment import request

    store = WatchlistStore(load_settings(WatchlistSettings, watchlist_max_entry_lifetime_days=30))
    admin = WatchlistAdmin(store, enroller=None, thresholds=Thresholds())  # refused before any photo is read
    outcome = admin.add(request("late", [b""], expires_at_ms=int(time.time() * 1000) + 31 * 86_400_000))
    assert (outcome.status, outcome.reason) == ("refused", "expiry_too_late")
    assert "maximum lifetime of 30 days" in outcome.detail
