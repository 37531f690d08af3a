"""The per-camera tracker and the shot policy (pure: no models, no broker)."""

from __future__ import annotations

import re

import numpy as np

from services.engine.tracking import CameraTracker, ShotPolicy, TrackerConfig, Tracks, shot_quality


def face(x: float, y: float, width: float = 80.0) -> tuple[list[float], list[list[float]]]:
    """A face box with its top-left at (x, y) and plausible five landmarks."""
    box = [x, y, x + width, y + width * 1.2]
    w = width
    landmarks = [[x + 0.3 * w, y + 0.45 * w], [x + 0.7 * w, y + 0.45 * w], [x + 0.5 * w, y + 0.65 * w], [x + 0.35 * w, y + 0.85 * w], [x + 0.65 * w, y + 0.85 * w]]
    return box, landmarks


def step(tracker: CameraTracker, at_ms: int, *faces) -> list[str]:
    boxes, landmarks = zip(*faces) if faces else ((), ())
    return [t.id for t in tracker.update(at_ms, boxes, landmarks)]


def test_faces_keep_their_track_frame_to_frame_and_a_newcomer_gets_a_new_one():
    tracker = CameraTracker()
    a, b = step(tracker, 0, face(100, 100), face(600, 300))
    assert a != b and all(re.fullmatch(r"[0-9a-f]{16}", t) for t in (a, b))
    # Small moves (overlapping boxes), listed in the other order.
    assert step(tracker, 100, face(610, 302), face(110, 101)) == [b, a]
    ids = step(tracker, 200, face(120, 102), face(620, 304), face(1000, 500))
    assert ids[:2] == [a, b] and ids[2] not in (a, b)


def test_fast_walkers_are_followed_by_their_motion_when_boxes_no_longer_overlap():
    tracker = CameraTracker()
    # Two walkers in the same lane, crossing, each moving more than a face width per frame.
    first = step(tracker, 0, face(100, 300), face(900, 300))
    seen = [first]
    for i in range(1, 6):
        seen.append(step(tracker, i * 300, face(100 + 130 * i, 300), face(900 - 130 * i, 300)))
    assert all(ids == first for ids in seen), seen


def test_faces_of_very_different_size_are_not_the_same_track():
    tracker = CameraTracker()
    (small,) = step(tracker, 0, face(100, 100, width=50))
    (large,) = step(tracker, 100, face(100, 100, width=150))
    assert small != large


def test_tracks_are_dropped_after_the_ttl_and_ids_never_come_back():
    tracker = CameraTracker(TrackerConfig(ttl_ms=1000))
    (a,) = step(tracker, 0, face(100, 100))
    assert step(tracker, 1000, face(100, 100)) == [a]  # exactly at the ttl: still there
    assert step(tracker, 2500) == [] and tracker.tracks == {}
    (b,) = step(tracker, 2600, face(100, 100))
    assert b != a


def test_track_ids_are_random_per_camera_and_cameras_are_swept():
    tracks = Tracks(TrackerConfig(ttl_ms=1000))
    one = step(tracks.camera("cam-1", 0), 0, face(100, 100))
    two = step(tracks.camera("cam-2", 0), 0, face(100, 100))
    assert one != two
    tracks.camera("cam-1", 900)
    tracks.sweep(1500)
    assert set(tracks.cameras) == {"cam-1"} and tracks.live_tracks() == 1


def test_shot_policy_first_then_better_by_a_margin_at_most_k_then_refresh():
    policy = ShotPolicy(max_shots=3, margin=0.1, refresh_ms=10_000)
    tracker = CameraTracker(TrackerConfig(ttl_ms=60_000))
    (track,) = tracker.update(0, [face(0, 0)[0]], [face(0, 0)[1]])
    sent = []
    for at_ms, quality in [(0, 0.40), (100, 0.42), (200, 0.45), (300, 0.60), (400, 0.61), (500, 0.90), (600, 0.99), (9_999, 0.99)]:
        decision = policy.decide(track, quality, at_ms)
        sent.append((decision.send, decision.reason))
    assert sent == [
        (True, "first"), (False, "not_better"), (True, "better"), (True, "better"), (False, "track_budget"),
        (False, "track_budget"), (False, "track_budget"), (False, "track_budget"),
    ]
    refreshed = policy.decide(track, 0.30, 10_000)
    assert (refreshed.send, refreshed.reason, refreshed.shot) == (True, "refresh", 4)
    assert policy.decide(track, 0.31, 10_100).reason == "not_better"  # the new window's best is 0.30


def test_shot_quality_prefers_large_frontal_sharp_faces():
    good = shot_quality(0.95, inter_ocular_px=45, yaw=0.0, blur=150)
    assert good == 0.95
    assert shot_quality(0.95, 20, 0.0, 150) < good
    assert shot_quality(0.95, 45, 0.3, 150) < good
    assert shot_quality(0.95, 45, 0.0, 40) < good
    assert 0.0 <= shot_quality(1.5, 1000, 0.9, 1e6) <= 1.0


def test_a_face_cut_by_the_frame_edge_ranks_below_its_whole_view():
    """Measured on the crowd: an entering walker's cut-off chip looks sharp (the cut is an edge)
    but matches worse than the whole face one frame later, which must still be sent."""
    entering = shot_quality(0.9, 30, 0.05, 160, box=np.array([-1, 532, 74, 707], np.float32), frame_size=(1280, 720))
    whole = shot_quality(0.85, 28, 0.2, 60, box=[48, 553, 167, 706], frame_size=(1280, 720))
    assert entering * 1.25 < whole
    assert shot_quality(0.9, 30, 0.0, 100, box=[-5, -12, 94, 187], frame_size=(1280, 720)) == shot_quality(0.9, 30, 0.0, 100) / 16


def test_a_cut_face_whose_box_stops_a_few_pixels_inside_the_border_still_counts_as_cut():
    """Measured on the demo (seed 7): Lili_Taylor entering at the left edge, cut by a tenth of
    her face, got a box from x = 2 px; ranked as whole, it outbid her full views (0.34 against
    0.51-0.54 cosine) and none of them was sent."""
    entering = shot_quality(0.89, 38, 0.11, 139, box=[2, 184, 96, 339], frame_size=(1280, 720))
    whole = shot_quality(0.92, 38, 0.22, 89, box=[55, 189, 168, 341], frame_size=(1280, 720))
    assert entering * 1.25 < whole
    inside = shot_quality(0.9, 30, 0.0, 100, box=[20, 100, 113, 255], frame_size=(1280, 720))
    assert inside == shot_quality(0.9, 30, 0.0, 100)  # 20 px in from the edge: whole


def test_a_track_that_walked_out_of_the_frame_is_not_given_the_next_face_entering_there():
    """Measured on the demo (seed 7): Ruben_Sierra left at the left edge and Lili_Taylor entered
    there, same lane and size, one frame later; she inherited his track and his best shot."""
    tracker = CameraTracker()
    frame = (1280, 720)
    leaver = [t.id for t in tracker.update(0, [face(120, 200, 108)[0]], [face(120, 200, 108)[1]], frame)][0]
    for i, x in enumerate((64, 8, -51), start=1):  # walking left, 56 px a frame, then mostly out
        assert [t.id for t in tracker.update(250 * i, [face(x, 200, 108)[0]], [face(x, 200, 108)[1]], frame)] == [leaver]
    entering = tracker.update(1000, [face(0, 200, 96)[0]], [face(0, 200, 96)[1]], frame)[0]
    assert entering.id != leaver and entering.shots == 0
    # A face that stays at the edge (no motion out of the frame) keeps its track.
    tracker = CameraTracker()
    still = tracker.update(0, [face(2, 200)[0]], [face(2, 200)[1]], frame)[0].id
    assert tracker.update(250, [face(3, 201)[0]], [face(3, 201)[1]], frame)[0].id == still


def _walk(tracker: CameraTracker, frame: tuple[int, int], xs, y: float, width: float, dt_ms: int = 333) -> tuple[str, int]:
    """A walker at ``xs`` (box left edges), one frame every ``dt_ms``; (its track id, last time)."""
    ids = set()
    for i, x in enumerate(xs):
        box, landmarks = face(x, y, width)
        ids |= {t.id for t in tracker.update(i * dt_ms, [box], [landmarks], frame)}
    assert len(ids) == 1
    return ids.pop(), (len(xs) - 1) * dt_ms


def test_a_newcomer_walking_the_other_way_does_not_inherit_the_leavers_spent_track():
    """Measured in the fault suite's crowd (seed 11, walker 22): a walker entering at the right
    edge, walking left, as another left there walking right in the same lane, was paired with the
    leaver's track (the leaver's cut face too narrow to pair with it) and never sent to embed."""
    frame = (1280, 720)
    for leaver_seen_cut in (True, False):
        tracker = CameraTracker()
        leaver, t = _walk(tracker, frame, range(683, 1127, 74), 369, 135)
        tracker.tracks[leaver].shots = 3  # its shots are spent
        boxes, landmarks = [face(989, 376, 125)[0]], [face(989, 376, 125)[1]]
        if leaver_seen_cut:  # 81 px of it still in view
            cut_box, cut_landmarks = face(1199, 369, 135)
            boxes.append([1199, 369, 1280, cut_box[3]])
            landmarks.append(cut_landmarks)
        newcomer = tracker.update(t + 333, boxes, landmarks, frame)[0]
        assert newcomer.id != leaver and newcomer.shots == 0


def test_a_face_cut_by_the_edge_keeps_its_track_when_a_newcomer_passes_it():
    """Seed 11, walker 49: the leaver's cut face overlapped its prediction by IoU 0.66 while the
    newcomer, a few pixels behind, scored 0.7 on centroid distance and took the track."""
    frame = (1280, 720)
    tracker = CameraTracker()
    leaver, t = _walk(tracker, frame, range(557, 1110, 78), 180, 133)
    cut_box, cut_landmarks = face(1185, 183, 133)
    newcomer_box, newcomer_landmarks = face(1100, 202, 115)
    tracks = tracker.update(t + 333, [newcomer_box, [1185, 183, 1277, cut_box[3]]], [newcomer_landmarks, cut_landmarks], frame)
    assert tracks[1].id == leaver and tracks[0].id != leaver
