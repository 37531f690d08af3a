"""The dispatch policy alone (no broker): windows, updates, idempotence, CloudEvents."""

from __future__ import annotations

import json

from services.common.envelope import decode, encode
from services.common.jsonevents import CONTENT_TYPE
from services.pipeline.dispatch import cloudevents
from services.pipeline.dispatch.policy import RECENT_SIGHTINGS, OpenAlert, alert_id_for, ce_id_for, decide, expired
from tests.dispatch.helpers import CHIP, NOW, match

COOLDOWN = 60_000


def run(matches, cooldown_ms: int = COOLDOWN, state=None):
    """Feed matches in order; return the final state and every alert emitted."""
    alerts = []
    for m in matches:
        state, alert = decide(state, m, cooldown_ms, now_ms=m["face"]["frame"]["captured_at_ms"] + 500)
        if alert is not None:
            alerts.append(alert)
    return state, alerts


def test_first_sighting_raises_a_new_alert_with_the_evidence():
    state, alert = decide(None, match(seq=7, score=0.61), COOLDOWN, now_ms=NOW + 1200)
    assert alert is not None and alert.kind == "new" and alert.revision == 0
    data = alert.data
    assert data["alert_id"] == alert_id_for("subj-1", "van-1", NOW) == state.alert_id
    assert alert.ce_id == ce_id_for(data["alert_id"], 0) == f"{data['alert_id']}.0"
    assert (data["subject_id"], data["camera_id"], data["deployment_id"]) == ("subj-1", "cam-1", "van-1")
    assert (data["reference"], data["category"], data["priority"]) == ("W-subj-1", "wanted_by_courts", "red")
    assert (data["score"], data["threshold"], data["sightings"]) == (0.61, 0.5, 1)
    assert data["first_seen_ms"] == data["last_seen_ms"] == NOW
    assert data["capture_to_alert_ms"] == 1200
    assert "chip" not in data["face"] and alert.chip["data"] == CHIP  # the chip travels sealed, apart (lfr.evidence.v1)
    assert decode(encode("lfr.alerts.v3", data)).data == data  # valid lfr.alerts.v3
    assert "fake-jpeg" not in repr(alert)  # the chip never reaches a repr (or a log line)


def test_same_subject_and_camera_within_cooldown_is_counted_not_alerted():
    state, alerts = run([match(seq=1, captured_at_ms=NOW, score=0.7), match(seq=2, captured_at_ms=NOW + 1000, score=0.65),
                         match(seq=3, captured_at_ms=NOW + 59_000, score=0.7)])
    assert len(alerts) == 1
    assert state.sightings == 3 and state.last_seen_ms == NOW + 59_000 and state.revision == 0
    # The cooldown runs from the last sighting, so a subject seen steadily keeps one alert.
    state, alert = decide(state, match(seq=4, captured_at_ms=NOW + 118_000, score=0.6), COOLDOWN, NOW + 118_500)
    assert alert is None and state.sightings == 4


def test_better_score_within_cooldown_updates_the_alert():
    first = match(seq=1, captured_at_ms=NOW, score=0.6)
    better = match(seq=5, captured_at_ms=NOW + 2000, score=0.8, chip=b"\xff\xd8better\xff\xd9")
    state, alerts = run([first, match(seq=2, captured_at_ms=NOW + 1000, score=0.55), better])
    assert [a.kind for a in alerts] == ["new", "update"]
    new, update = alerts
    assert update.alert_id == new.alert_id and update.revision == 1 and update.ce_id == f"{new.alert_id}.1"
    assert update.data["score"] == 0.8 and update.chip["data"] == b"\xff\xd8better\xff\xd9"
    assert update.data["sightings"] == 3 and update.data["first_seen_ms"] == NOW and update.data["last_seen_ms"] == NOW + 2000
    assert state.best_score == 0.8
    # Equal to the best is not better.
    state, alert = decide(state, match(seq=6, captured_at_ms=NOW + 3000, score=0.8), COOLDOWN, NOW + 3500)
    assert alert is None and state.revision == 1


def test_beyond_cooldown_raises_a_new_alert_with_a_new_id():
    state, alerts = run([match(seq=1, captured_at_ms=NOW), match(seq=2, captured_at_ms=NOW + COOLDOWN + 1, score=0.55)])
    assert [a.kind for a in alerts] == ["new", "new"]
    assert alerts[0].alert_id != alerts[1].alert_id
    assert alerts[1].alert_id == alert_id_for("subj-1", "van-1", NOW + COOLDOWN + 1)
    assert state.first_seen_ms == NOW + COOLDOWN + 1 and state.sightings == 1 and state.revision == 0
    # Exactly at the cooldown still joins the open alert.
    _, at_edge = run([match(seq=1, captured_at_ms=NOW), match(seq=2, captured_at_ms=NOW + COOLDOWN)])
    assert len(at_edge) == 1


def test_other_subject_or_deployment_is_a_separate_alert_another_camera_is_not():
    key_states = {}
    alerts = []
    for m in (match(camera="cam-1"), match(camera="cam-2"), match(subject="subj-2"), match(camera="cam-1", seq=2),
              match(deployment="van-2", camera="cam-9")):
        key = (m["subject_id"], m["face"]["frame"]["deployment_id"])
        key_states[key], alert = decide(key_states.get(key), m, COOLDOWN, NOW + 100)
        alerts += [alert] if alert else []
    # subj-1/van-1 new, its update from cam-2, subj-2 new, subj-1/van-2 new; cam-1 again: nothing.
    assert [a.kind for a in alerts] == ["new", "update", "new", "new"]
    assert len({a.alert_id for a in alerts}) == 3


def test_one_alert_per_person_per_deployment_across_two_cameras_updated_by_better_shots():
    """Two cameras of one deployment see the same person: one alert, updated, never a second."""
    def tracked(m, track_id):
        m["face"]["track"] = {"id": track_id, "shot": 1, "reason": "first", "quality": 0.5}
        return m

    sightings = [
        tracked(match(camera="cam-1", seq=1, captured_at_ms=NOW, score=0.6), "a" * 16),
        tracked(match(camera="cam-1", seq=2, captured_at_ms=NOW + 300, score=0.58), "a" * 16),  # same track, not better
        tracked(match(camera="cam-2", seq=1, captured_at_ms=NOW + 5000, score=0.55), "b" * 16),  # other camera: update
        tracked(match(camera="cam-2", seq=4, captured_at_ms=NOW + 5600, score=0.7), "b" * 16),  # better shot: update
        tracked(match(camera="cam-1", seq=9, captured_at_ms=NOW + 9000, score=0.65), "c" * 16),  # known camera, not better
    ]
    state, alerts = run(sightings)
    assert [a.kind for a in alerts] == ["new", "update", "update"]
    assert len({a.alert_id for a in alerts}) == 1 and [a.revision for a in alerts] == [0, 1, 2]
    assert alerts[1].data["cameras"] == ["cam-1", "cam-2"] and alerts[1].camera_id == "cam-2"
    assert alerts[2].data["score"] == 0.7 and alerts[2].data["track_score"] == 0.7 and alerts[2].data["tracks"] == 2
    assert state.best_score == 0.7 and state.sightings == 5 and len(state.tracks) == 3
    # Track-best: the cam-1 track's score is the best of its two shots.
    assert state.track_score("cam-1|" + "a" * 16) == 0.6
    stored = OpenAlert.from_json(json.loads(json.dumps(state.to_json())))
    assert stored == state


def test_redelivered_match_changes_nothing_and_emits_nothing():
    m1, m2 = match(seq=1, captured_at_ms=NOW, score=0.6), match(seq=2, captured_at_ms=NOW + 1000, score=0.9)
    state, alerts = run([m1, m2])
    assert [a.kind for a in alerts] == ["new", "update"]
    for again in (m1, m2, match(seq=2, captured_at_ms=NOW + 1000, score=0.9)):
        same, alert = decide(state, again, COOLDOWN, NOW + 5000)
        assert alert is None and same is state
    # A second face in the same frame is another sighting, not a redelivery.
    other_face, _ = decide(state, match(seq=2, captured_at_ms=NOW + 1000, face_index=1), COOLDOWN, NOW + 5000)
    assert other_face.sightings == 3
    # Matches older than the open window (a closed window, redelivered) are ignored too.
    later, new_alerts = run([match(seq=3, captured_at_ms=NOW + 200_000)], state=state)
    assert len(new_alerts) == 1
    assert decide(later, m1, COOLDOWN, NOW + 200_500) == (later, None)


def test_recent_set_is_bounded_and_old_sightings_stay_accounted_for():
    matches = [match(seq=i, captured_at_ms=NOW + i * 100) for i in range(RECENT_SIGHTINGS + 20)]
    state, alerts = run(matches)
    assert len(alerts) == 1 and state.sightings == RECENT_SIGHTINGS + 20
    assert len(state.recent) == RECENT_SIGHTINGS and state.floor is not None
    for m in (matches[0], matches[10], matches[-1]):
        assert decide(state, m, COOLDOWN, NOW) == (state, None)


def test_state_round_trips_through_json_without_biometrics():
    state, _ = run([match(seq=1), match(seq=2, captured_at_ms=NOW + 10, score=0.9)])
    stored = json.loads(json.dumps(state.to_json()))
    assert OpenAlert.from_json(stored) == state
    assert "chip" not in json.dumps(stored)


def test_ce_id_and_alert_id_are_deterministic():
    replay = [match(seq=1, captured_at_ms=NOW), match(seq=2, captured_at_ms=NOW + 1, score=0.9)]
    first = [a.ce_id for a in run(replay)[1]]
    second = [a.ce_id for a in run(replay)[1]]
    assert first == second and len(set(first)) == 2
    assert alert_id_for("s", "c", 1) == alert_id_for("s", "c", 1) != alert_id_for("s", "c", 2) != alert_id_for("s", "d", 1)


def test_expiry_of_state():
    state, _ = run([match(captured_at_ms=NOW)])
    assert not expired(state, NOW + COOLDOWN + 10_000, COOLDOWN, grace_ms=10_000)
    assert expired(state, NOW + COOLDOWN + 10_001, COOLDOWN, grace_ms=10_000)


def test_cloudevent_binary_headers_and_structured_webhook_body():
    _, alert = decide(None, match(), COOLDOWN, NOW + 250)
    headers = dict(cloudevents.kafka_headers(alert, "/openlfr/"))
    assert headers["ce_specversion"] == b"1.0" and headers["ce_id"] == alert.ce_id.encode()
    assert headers["ce_source"] == b"/openlfr/deployments/van-1/cameras/cam-1"
    assert headers["ce_type"] == b"org.openlfr.alert.raised" and headers["ce_subject"] == alert.alert_id.encode()
    assert headers["ce_dataschema"] == b"https://openlfr.org/schemas/lfr.alerts.v3.json"
    assert headers["content-type"] == CONTENT_TYPE.encode() == b"application/json"
    value, record_headers = cloudevents.encode_alert(alert, "/openlfr/")
    assert record_headers == list(headers.items()) and json.loads(value) == alert.data  # the value is the data, as JSON
    assert headers["ce_time"].decode() == cloudevents.rfc3339_ms(NOW + 250) and headers["ce_time"].endswith(b"Z")
    attrs = cloudevents.attributes_from_headers(list(headers.items()))
    event = json.loads(cloudevents.structured(attrs, alert.data))
    assert event["id"] == alert.ce_id and event["datacontenttype"] == "application/json"
    assert "chip" not in event["data"]["face"] and CHIP not in json.dumps(event).encode()  # webhooks never get the chip
    assert event["data"]["alert_id"] == alert.alert_id


def test_rfc3339():
    assert cloudevents.rfc3339_ms(0) == "1970-01-01T00:00:00.000Z"
    assert cloudevents.rfc3339_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
