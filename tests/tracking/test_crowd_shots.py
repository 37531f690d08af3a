"""Every walker of the synthetic crowd wide enough and long enough in view gets a shot to embed.

The front end alone (detect's stage: real detector, tracker, quality gate, shot policy), on the
fault suite's crowd (seed 11, 3 fps, faces 110-160 px), with no fault and no broker: a walker
with no shot here is never embedded whatever happens downstream. Found in `make faults`, where
such walks were lost in scenarios that touch neither detect nor embed.
"""

from __future__ import annotations

from dataclasses import replace

from services.common.settings import DetectSettings, load_settings
from services.common.stage import Message
from services.pipeline.detect.service import build
from services.engine.face.boxes import box_iou
from services.pipeline.ingest.crowd import CrowdConfig, CrowdScene, cast_from_folder

FPS = 3.0
# The fault suite's cast for seed 11 (tests/faults/harness.py), in its walking order.
WALKERS = ["Rubens_Barrichello", "Jodie_Foster", "Jane_Kaczmarek", "Peter_Shaw", "Mary_Lou_Markakis", "Rainer_Geulen"]
MIN_WIDTH_PX, MIN_IN_VIEW_S = 64, 1.0


def front_end_shots(data_dir, frames: int) -> tuple[dict[int, int], dict[int, int], dict[int, dict]]:
    """Per walker index: frames in view, shots sent, and the walker's truth."""
    import cv2

    scene = CrowdScene(cast_from_folder(data_dir, WALKERS, 1), CrowdConfig(fps=FPS, seed=11, min_face_width=110, max_face_width=160))
    stage, _ = build(load_settings(DetectSettings))
    now = [0]
    stage.deps = replace(stage.deps, clock=lambda: now[0])
    in_view: dict[int, int] = {}
    shots: dict[int, int] = {}
    walkers: dict[int, dict] = {}
    for seq in range(frames):
        image, truth = scene.render(seq)
        now[0] = captured = round(seq * 1000 / FPS)
        for face in truth:
            in_view[face["walker"]] = in_view.get(face["walker"], 0) + 1
            walkers[face["walker"]] = face
        data = {"camera_id": "crowd", "deployment_id": "d", "seq": seq, "captured_at_ms": captured, "width": image.shape[1],
                "height": image.shape[0], "media_type": "image/jpeg", "image": cv2.imencode(".jpg", image)[1].tobytes()}
        for output in stage([Message("lfr.frames.v1", data)]):
            if output.schema != "lfr.faces.v1":
                continue
            best = max(truth, key=lambda f: box_iou(f["box"], output.data["box"]), default=None)
            if best is not None and box_iou(best["box"], output.data["box"]) > 0.2:
                shots[best["walker"]] = shots.get(best["walker"], 0) + 1
    return in_view, {w: shots.get(w, 0) for w in walkers}, walkers


def test_no_walker_of_64_px_in_view_for_a_second_is_left_without_a_shot(lfw_dir):
    """Measured before the fix: walker 22 (Mary_Lou_Markakis, 125 px, 10 frames = 3.3 s) entered
    at the right edge, walking left, as walker 18 left there walking right in the same lane; the
    leaver's cut-off face was too narrow to pair with its own track, so the newcomer was paired
    with it against its motion, inherited its spent shot budget and was never sent to embed."""
    in_view, shots, walkers = front_end_shots(lfw_dir, 105)
    owed = [w for w, n in in_view.items() if walkers[w]["face_width"] >= MIN_WIDTH_PX and n / FPS >= MIN_IN_VIEW_S]
    assert len(owed) >= 20
    never = {w: (walkers[w]["identity"], walkers[w]["face_width"], in_view[w]) for w in owed if shots[w] == 0}
    assert never == {}, never
