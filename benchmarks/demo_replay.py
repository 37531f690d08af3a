"""Offline replay of the demo's crowd: which shot policy finds which watchlisted walker (issue #13).

For each seed it builds the demo's cast and crowd camera (services/tools/demo), renders the frames
through a JPEG round trip as ingest does, detects, tracks and quality-gates them with the
product's functions, embeds every accepted face once, and then replays shot policies over the
same faces: the product's best shots (``best-shots/v1``), a "spread" variant (a shot at least
1 s after the track's last one, at 0.8 of its best quality, within the same K), and every face.
Per policy: watchlisted walkers shown at 64 px or more that a shot scored at or above the
threshold for (walker recall), embeddings per walker, and false alerts (a face scoring at or
above the threshold against a listed subject who is not that person). No broker, no services:
the load-dependent drops of the live demo are not modelled. Embeddings stay in memory.

    .venv/bin/python benchmarks/demo_replay.py --seeds 4 5 11 12 13 14 15 16 --out /tmp/replay.json

``--alignments plain redetect antialias`` replays the same frames with each alignment option of
`lfr eval --alignment` (services/tools/evaluation/faces.py): the detections, tracks and quality
decisions are shared (the gate judges the plain chip, as live), only the embedded chips (of the
walkers and of the enrolment photos) change. The first alignment fills ``seeds``/``totals``;
every one is under ``alignments``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.tools.demo.cast import choose_cast, enrolment_request  # noqa: E402
from services.tools.demo.dataset import resolve_data_dir  # noqa: E402
from services.tools.demo.run import DemoOptions, crowd_camera  # noqa: E402
from services.tools.demo.score import MIN_RECOGNISABLE_WIDTH  # noqa: E402
from services.engine.face.boxes import box_iou  # noqa: E402
from services.tools.evaluation.faces import ALIGNMENTS  # noqa: E402
from services.engine.face import LIVE_BOUNDS, FaceDetector, FaceEmbedder, align_face, assess_quality, decode_image  # noqa: E402
from services.engine.face.refine import refine_landmarks  # noqa: E402
from services.pipeline.ingest.sources import CrowdSource  # noqa: E402
from services.engine.tracking import ShotDecision, ShotPolicy, shot_quality  # noqa: E402
from services.engine.tracking.tracker import CameraTracker  # noqa: E402
from services.governance.watchlist.enrol import Enroller  # noqa: E402

THRESHOLD = 0.52  # the deployments floor the demo runs at


@dataclasses.dataclass(frozen=True)
class SpreadPolicy(ShotPolicy):
    """best-shots/v1, plus a shot ``spacing_ms`` after the last one at ``floor`` of the best."""

    spacing_ms: int = 1_000
    floor: float = 0.8

    def decide(self, track, quality, captured_at_ms):
        decision = ShotPolicy(self.max_shots, self.margin, self.refresh_ms).decide(track, quality, captured_at_ms)
        if decision.send or decision.reason != "not_better":
            return decision
        if captured_at_ms - track.last_shot_ms >= self.spacing_ms and quality >= self.floor * track.best_quality:
            track.shots_in_window += 1
            track.shots += 1
            track.last_shot_ms = captured_at_ms
            track.best_quality = max(track.best_quality, quality)
            return ShotDecision(True, "better", track.shots)
        return decision


class EveryFace:
    def decide(self, track, quality, captured_at_ms):
        return ShotDecision(True, "first", 1)


POLICIES = {"best_shots": ShotPolicy, "spread": SpreadPolicy, "every_face": EveryFace}


def embed_aligned(detector: FaceDetector, embedder: FaceEmbedder, image: np.ndarray, faces: list, alignment: str) -> list[np.ndarray]:
    """Embeddings of ``faces`` of ``image`` with one alignment option (ALIGNMENTS)."""
    if not faces:
        return []
    if alignment.startswith("redetect"):
        faces = refine_landmarks(detector, [(image, face) for face in faces])
    antialias = alignment.endswith("antialias")
    return list(embedder.embed(np.stack([align_face(image, face.landmarks, antialias=antialias) for face in faces])))


def render_seed(data_dir: Path, seed: int, frames: int, detector: FaceDetector, embedder: FaceEmbedder, alignments=("plain",)) -> dict:
    cast = choose_cast(data_dir, detector, embedder, watchlisted=8, strangers=30, seed=seed, deployment="replay")
    enroller = Enroller(detector, embedder)
    now = int(time.time() * 1000)
    enrolled = {name: enroller.build(enrolment_request(name, photo, "replay"), now).embeddings[0].vector for name, photo in cast.watchlist}
    enrolled_by = {"plain": enrolled}
    for alignment in alignments:
        if alignment != "plain":
            enrolled_by[alignment] = {}
            for name, photo in cast.watchlist:
                image = decode_image(photo.read_bytes())
                face = enroller.choose_face(detector.detect(image), name)
                enrolled_by[alignment][name] = embed_aligned(detector, embedder, image, [face], alignment)[0]
    camera = dataclasses.asdict(crowd_camera(cast, data_dir, DemoOptions(seed=seed)))
    source = CrowdSource(camera["synthetic"], camera["fps"])
    rendered = []
    for seq in range(frames):
        image, truth = source.scene.render(seq)
        image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, camera["jpeg_quality"]])[1], cv2.IMREAD_COLOR)
        faces, accepted = [], []
        for face in detector.detect(image):
            box = [float(v) for v in face.box]
            walker = max(truth, key=lambda t: box_iou(t["box"], box), default=None)
            identity = walker["identity"] if walker is not None and box_iou(walker["box"], box) > 0.2 else None
            chip = align_face(image, face.landmarks)
            report = assess_quality(face, chip, LIVE_BOUNDS)
            quality = None
            if report.accepted:
                quality = shot_quality(report.score, report.inter_ocular, report.yaw, report.blur, face.box, (image.shape[1], image.shape[0]))
                accepted.append((len(faces), face))
            faces.append({"box": face.box, "landmarks": face.landmarks, "identity": identity, "quality": quality, "vectors": {}})
        for alignment in alignments:
            for (i, _), vector in zip(accepted, embed_aligned(detector, embedder, image, [f for _, f in accepted], alignment), strict=True):
                faces[i]["vectors"][alignment] = vector
        rendered.append((seq, truth, faces))
    return {"enrolled": enrolled_by, "frames": rendered, "period_ms": int(1000 / camera["fps"]), "size": (camera["max_width"], camera["max_height"])}


def replay(scene: dict, policy, alignment: str = "plain") -> dict:
    enrolled = scene["enrolled"][alignment]
    names = list(enrolled)
    gallery = np.stack([enrolled[n] for n in names])
    widest: dict[str, int] = {}
    walkers = set()
    for _, truth, _ in scene["frames"]:
        for face in truth:
            walkers.add(face["walker"])
            if face["identity"] in enrolled:
                widest[face["identity"]] = max(widest.get(face["identity"], 0), face["face_width"])
    tracker, alerted, false_alerts, sent, best = CameraTracker(), set(), set(), 0, {}
    for seq, _, faces in scene["frames"]:
        at = seq * scene["period_ms"]
        tracks = tracker.update(at, [f["box"] for f in faces], [f["landmarks"] for f in faces], scene["size"])
        for face, track in zip(faces, tracks, strict=True):
            if face["quality"] is None or not policy.decide(track, face["quality"], at).send:
                continue
            sent += 1
            scores = gallery @ face["vectors"][alignment]
            top = int(np.argmax(scores))
            if face["identity"] in enrolled:
                own = float(scores[names.index(face["identity"])])
                best[face["identity"]] = max(best.get(face["identity"], -1.0), own)
            if scores[top] >= THRESHOLD:
                (alerted if names[top] == face["identity"] else false_alerts).add((names[top], face["identity"]))
    shown = sorted(n for n, w in widest.items() if w >= MIN_RECOGNISABLE_WIDTH)
    found = {subject for subject, _ in alerted}
    return {
        "shown": len(shown),
        "alerted": sum(n in found for n in shown),
        "missed": {n: round(best.get(n, -1.0), 4) for n in shown if n not in found},
        "false_alerts": len(false_alerts),
        "embeddings_per_walker": round(sent / max(1, len(walkers)), 2),
    }


def score_summary(scene: dict, alignment: str) -> dict:
    """Policy-free view of every embedded face: listed walkers' scores against their own
    enrolment (genuine) and every face's best score against a listed subject it is not
    (impostor). Faces are the same for every alignment, so the genuine scores pair up."""
    enrolled = scene["enrolled"][alignment]
    names = list(enrolled)
    gallery = np.stack([enrolled[n] for n in names])
    genuine, impostor = [], []
    for _, _, faces in scene["frames"]:
        for face in faces:
            if face["quality"] is None:
                continue
            scores = gallery @ face["vectors"][alignment]
            if face["identity"] in enrolled:
                genuine.append(float(scores[names.index(face["identity"])]))
                scores = np.delete(scores, names.index(face["identity"]))
            if face["identity"] is not None:  # faces the truth does not label are left out of impostors
                impostor.append(float(scores.max()))
    return {"genuine": genuine, "impostor": impostor}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 11, 12, 13, 14, 15, 16])
    parser.add_argument("--frames", type=int, default=240, help="frames per seed (the 60 s demo at 4 fps)")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="one seed, 24 frames")
    parser.add_argument("--alignments", nargs="+", default=["plain"], choices=ALIGNMENTS,
                        help="alignment options to replay on the same frames (the first fills seeds/totals)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data)
    if data_dir is None:
        print("demo_replay: no data folder (LFR_DATA_DIR or ../shared/datasets/lfw-dev)", file=sys.stderr)
        return 2
    seeds, frames = ([7], 24) if args.smoke else (args.seeds, args.frames)
    detector, embedder = FaceDetector(intra_op_threads=1), FaceEmbedder(intra_op_threads=1)
    alignments = list(dict.fromkeys(args.alignments))
    by_alignment = {a: {"seeds": {}, "totals": {name: {"shown": 0, "alerted": 0, "false_alerts": 0} for name in POLICIES}} for a in alignments}
    for seed in seeds:
        scene = render_seed(data_dir.resolve(), seed, frames, detector, embedder, alignments)
        for alignment, out in by_alignment.items():
            out["seeds"][str(seed)] = {name: replay(scene, make(), alignment) for name, make in POLICIES.items()}
            for key, values in score_summary(scene, alignment).items():
                out.setdefault("scores", {}).setdefault(key, []).extend(round(v, 5) for v in values)
            for name, row in out["seeds"][str(seed)].items():
                for key in out["totals"][name]:
                    out["totals"][name][key] += row[key]
    for alignment, out in by_alignment.items():
        genuine, impostor = np.array(out["scores"]["genuine"]), np.array(out["scores"]["impostor"])
        out["score_summary"] = {"genuine_faces": len(genuine), "genuine_mean": round(float(genuine.mean()), 5) if len(genuine) else None,
                                "genuine_at_threshold": int((genuine >= THRESHOLD).sum()), "impostor_faces": len(impostor),
                                "impostor_max": round(float(impostor.max()), 5) if len(impostor) else None,
                                "impostor_at_0.45": int((impostor >= 0.45).sum())}
        print(alignment, out["score_summary"])
    result: dict = {"smoke": args.smoke, "threshold": THRESHOLD, "frames_per_seed": frames, "alignment": alignments[0],
                    **{k: by_alignment[alignments[0]][k] for k in ("seeds", "totals", "score_summary")}, "alignments": by_alignment}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for alignment, out in by_alignment.items():
        print(alignment + ": " + " ".join(f"{name}: {t['alerted']}/{t['shown']} alerted, {t['false_alerts']} false" for name, t in out["totals"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
