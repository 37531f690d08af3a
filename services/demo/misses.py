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

This is the demo's diagnostic, not a product path: it reads the embedded broker's records in
memory and reports scores of watchlisted subjects only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from services.face.boxes import box_iou

from .score import MIN_RECOGNISABLE_WIDTH

MATCH_IOU = 0.2


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
