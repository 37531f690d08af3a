"""The demo's per-walker miss report: figures and a cause for each watchlisted walker."""

import numpy as np

from services.tools.demo.misses import walker_report


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def _face(seq: int, box: list[float]) -> dict:
    return {"frame": {"camera_id": "c", "seq": seq}, "box": box}


def test_each_watchlisted_walker_gets_shots_best_score_and_a_cause():
    box_a, box_b, box_c, box_d = [0, 0, 80, 90], [200, 0, 300, 110], [400, 0, 470, 80], [600, 0, 690, 100]
    truth = [
        {"camera_id": "c", "seq": 1, "faces": [
            {"identity": "Alerted", "walker": 0, "face_width": 80, "box": box_a},
            {"identity": "Under", "walker": 1, "face_width": 100, "box": box_b},
            {"identity": "Unseen", "walker": 2, "face_width": 70, "box": box_c},
            {"identity": "Stranger", "walker": 3, "face_width": 90, "box": box_d}]},
        {"camera_id": "c", "seq": 2, "faces": [
            {"identity": "Under", "walker": 1, "face_width": 100, "box": box_b},
            {"identity": "Shed", "walker": 4, "face_width": 64, "box": box_c}]},
    ]
    enrolled = {name: [_unit(*axis)] for name, axis in
                (("Alerted", (1, 0, 0)), ("Under", (0, 1, 0)), ("Unseen", (0, 0, 1)), ("Shed", (1, 1, 0)), ("Absent", (1, 0, 1)))}
    shots = [_face(1, box_a), _face(1, box_b), _face(2, box_b), _face(1, box_d), _face(2, box_c)]
    embedded = [(_face(1, box_a), _unit(1, 0.2, 0)), (_face(1, box_b), _unit(0.9, 1, 0)), (_face(2, box_b), _unit(1.2, 1, 0)),
                (_face(1, box_d), _unit(1, 0, 0))]
    report = walker_report(truth, shots, embedded, enrolled, {"Alerted"}, 0.8)
    assert sorted(report) == ["Alerted", "Shed", "Under", "Unseen"]  # shown and watchlisted only
    assert report["Alerted"]["cause"] == "alerted" and report["Alerted"]["best_score"] > 0.9
    under = report["Under"]
    assert (under["shots_sent"], under["embedded"], under["frames_in_view"], under["widest_px"]) == (2, 2, 2, 100)
    assert under["best_score"] == round(float(_unit(0.9, 1, 0) @ _unit(0, 1, 0)), 4) < 0.8
    assert under["cause"] == "below_threshold" and under["threshold"] == 0.8 and not under["alerted"]
    assert report["Unseen"]["cause"] == "no_shot" and report["Unseen"]["best_score"] is None
    assert report["Shed"]["cause"] == "not_embedded" and report["Shed"]["shots_sent"] == 1
    assert report["Shed"]["recognisable"] and report["Unseen"]["recognisable"]  # 64 px and up


def test_a_shot_above_threshold_without_an_alert_is_reported_as_a_pipeline_fault():
    truth = [{"camera_id": "c", "seq": 1, "faces": [{"identity": "A", "walker": 0, "face_width": 90, "box": [0, 0, 90, 100]}]}]
    face = _face(1, [2, 1, 91, 99])
    report = walker_report(truth, [face], [(face, _unit(1, 0))], {"A": [_unit(1, 0)]}, set(), 0.5)
    assert report["A"]["cause"] == "not_alerted" and report["A"]["best_score"] == 1.0


def test_never_embedded_counts_walks_of_64_px_in_view_a_second_that_no_embedded_face_belongs_to():
    from services.tools.demo.misses import never_embedded

    def record(seq: int, *faces: tuple[int, str, int, list[float]]) -> dict:
        return {"camera_id": "c", "seq": seq, "captured_at_ms": seq * 500,
                "faces": [{"walker": w, "identity": name, "face_width": width, "box": box} for w, name, width, box in faces]}

    a, b, c, d = [0, 0, 80, 90], [200, 0, 300, 110], [400, 0, 450, 60], [600, 0, 690, 100]
    truth = [record(0, (0, "Listed", 80, a), (1, "Stranger", 100, b), (2, "Small", 50, c), (3, "Brief", 90, d)),
             record(1, (0, "Listed", 80, a), (1, "Stranger", 100, b), (2, "Small", 50, c)),
             record(2, (0, "Listed", 80, a), (1, "Stranger", 100, b), (2, "Small", 50, c))]
    # Walker 1 embedded once (frame 2); walker 0 never; 2 is too small, 3 was in view 0 s.
    report = never_embedded(truth, [{"frame": {"camera_id": "c", "seq": 2}, "box": [202, 1, 301, 108]}], {"Listed"})
    assert report == {"walkers_owed": 2, "never_embedded": 1,
                      "never_embedded_walkers": [{"walker": 0, "face_width": 80, "in_view_s": 1.0, "identity": "Listed"}]}
    assert never_embedded(truth, [{"frame": {"camera_id": "c", "seq": 0}, "box": a}, {"frame": {"camera_id": "c", "seq": 1}, "box": b}])["never_embedded"] == 0
