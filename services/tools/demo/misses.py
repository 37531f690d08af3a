"""Why a watchlisted walker was or was not alerted: per-walker figures from the demo's own records.

The synthetic camera knows who walked where (truth), detect's output says which of their faces
were sent on (shots), embed's output which were embedded, and the demo holds each subject's
enrolled embeddings, so every watchlisted walker gets: the widest face shown, frames in view,
shots sent, shots embedded, the best score any embedded shot reached against the subject's own
enrolment, the threshold, whether an alert named them, and one cause:

- ``alerted``;
- ``no_shot``: no face of theirs was sent to embed (not detected, refused by the quality gate,
  or every frame skipped by detect's stale/superseded policies);
- ``not_embedded``: shots were sent but none was embedded (embed's latency budget shed them);
- ``below_threshold``: embedded, best score under the threshold: the model's miss;
- ``not_alerted``: a shot scored at or above threshold yet no alert named them (a pipeline bug).

``never_embedded`` counts, over every walker (listed or not), the walks at MIN_RECOGNISABLE_WIDTH
or more in view for at least a second of which no face was embedded: the front end (quality
gate, tracking, shot policy) or load shedding left them unchecked. The demo and the pipeline
benchmark report it; on an unloaded pipeline it must be 0 (issue #27).

This is the demo's diagnostic, not a product path: it reads the embedded broker's records in
memory and reports scores of watchlisted subjects only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from services.engine.face.boxes import box_iou

from .score import MIN_RECOGNISABLE_WIDTH

MATCH_IOU = 0.2
MIN_IN_VIEW_MS = 1_000


def _walker_of(face: Mapping[str, Any], truth_by_frame: Mapping[tuple[str, int], list[dict]]) -> dict | None:
    """The truth face a detected face belongs to (best overlap above MATCH_IOU), if any."""
    frame = face["frame"]
    best, best_iou = None, MATCH_IOU
    for walker in truth_by_frame.get((frame["camera_id"], int(frame["seq"])), []):
        overlap = box_iou(walker["box"], face["box"])
        if overlap > best_iou:
            best, best_iou = walker, overlap
    return best


def walker_report(
    truth: Iterable[Mapping[str, Any]],
    shots: Iterable[Mapping[str, Any]],
    embedded: Iterable[tuple[Mapping[str, Any], np.ndarray]],
    enrolled: Mapping[str, Sequence[np.ndarray]],
    alerted: set[str],
    threshold: float,
) -> dict[str, dict]:
    """Per watchlisted identity in ``enrolled`` that the camera showed: figures and a cause.

    ``shots`` are lfr.faces.v1 payloads; ``embedded`` pairs an lfr.embeddings.v1 face with its
    vector; ``enrolled`` maps a subject to its enrolled vectors (unit length).
    """
    truth_by_frame = {(t["camera_id"], int(t["seq"])): t["faces"] for t in truth}
    report: dict[str, dict] = {}
    for faces in truth_by_frame.values():
        for face in faces:
            if face["identity"] not in enrolled:
                continue
            row = report.setdefault(face["identity"], {"widest_px": 0, "frames_in_view": 0, "shots_sent": 0, "embedded": 0,
                                                       "best_score": None})
            row["widest_px"] = max(row["widest_px"], int(face["face_width"]))
            row["frames_in_view"] += 1
    for face in shots:
        walker = _walker_of(face, truth_by_frame)
        if walker is not None and walker["identity"] in report:
            report[walker["identity"]]["shots_sent"] += 1
    for face, vector in embedded:
        walker = _walker_of(face, truth_by_frame)
        if walker is None or walker["identity"] not in report:
            continue
        row = report[walker["identity"]]
        row["embedded"] += 1
        score = float(np.max(np.stack(enrolled[walker["identity"]]) @ vector))
        row["best_score"] = round(score, 4) if row["best_score"] is None else max(row["best_score"], round(score, 4))
    for identity, row in report.items():
        row["threshold"] = threshold
        row["alerted"] = identity in alerted
        row["recognisable"] = row["widest_px"] >= MIN_RECOGNISABLE_WIDTH
        if row["alerted"]:
            row["cause"] = "alerted"
        elif row["shots_sent"] == 0:
            row["cause"] = "no_shot"
        elif row["embedded"] == 0:
            row["cause"] = "not_embedded"
        elif row["best_score"] < threshold:
            row["cause"] = "below_threshold"
        else:
            row["cause"] = "not_alerted"
    return dict(sorted(report.items()))


def never_embedded(
    truth: Iterable[Mapping[str, Any]],
    embedded_faces: Iterable[Mapping[str, Any]],
    watchlisted: set[str] = frozenset(),
    walk_of: Callable[[str, int, Mapping[str, Any]], Hashable] | None = None,
    only: set | None = None,
) -> dict[str, Any]:
    """Walks owed an embedding (at least MIN_RECOGNISABLE_WIDTH px, first to last frame in view at
    least MIN_IN_VIEW_MS apart) and those of them no embedded face belongs to.

    ``truth`` records carry ``camera_id``, ``seq``, ``captured_at_ms`` and ``faces``;
    ``embedded_faces`` are the ``face`` objects of lfr.embeddings.v1; ``walk_of(camera_id, seq,
    face)`` names a walk (default: camera and walker index; a looped replay passes its own);
    ``only``, if given, the walks to consider (e.g. those wholly inside a measured window).
    Each never-embedded walk is listed by walker index and width; the identity only if listed.
    """
    walk_of = walk_of or (lambda camera_id, _seq, face: (camera_id, face["walker"]))
    truth = list(truth)
    truth_by_frame = {(t["camera_id"], int(t["seq"])): t["faces"] for t in truth}
    seen: dict[Hashable, list] = {}  # walk -> [first ms, last ms, face truth]
    for record in truth:
        for face in record["faces"]:
            span = seen.setdefault(walk_of(record["camera_id"], int(record["seq"]), face), [record["captured_at_ms"], record["captured_at_ms"], face])
            span[0], span[1] = min(span[0], record["captured_at_ms"]), max(span[1], record["captured_at_ms"])
    owed = {walk: span for walk, span in seen.items() if span[2]["face_width"] >= MIN_RECOGNISABLE_WIDTH
            and span[1] - span[0] >= MIN_IN_VIEW_MS and (only is None or walk in only)}
    embedded = set()
    for face in embedded_faces:
        walker = _walker_of(face, truth_by_frame)
        if walker is not None:
            embedded.add(walk_of(face["frame"]["camera_id"], int(face["frame"]["seq"]), walker))
    missing = [
        {"walker": span[2]["walker"], "face_width": span[2]["face_width"], "in_view_s": round((span[1] - span[0]) / 1000, 2),
         **({"identity": span[2]["identity"]} if span[2]["identity"] in watchlisted else {})}
        for walk, span in owed.items() if walk not in embedded
    ]
    return {"walkers_owed": len(owed), "never_embedded": len(missing), "never_embedded_walkers": missing}
