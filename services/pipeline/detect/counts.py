"""Faces processed per deployment (lfr.counts.v2): what the transparency report calls "faces".

Counted where the system looks at faces: every face the detector found in a frame detect ran
through it, before the quality gate and before tracking picks the shots worth embedding (the
Met's "faces processed"). Frames skipped unread (stale, superseded) are not counted: nobody
looked at them. A count, never a face: no box, no chip, no track id.

Idempotence: one record per (deployment, input partition) of a batch, with ``count_id`` naming
the input topic, partition and offset range, so a batch redelivered after a crash with the same
bounds is counted once by the report (services/operations/report/build.py keeps the first of each id).
A redelivery whose batch boundaries differ (the runner re-polls a rewound batch) can count the
overlap again: at most one batch of frames per crash or rewind. Groups with no face are not
written (an empty scene would otherwise add a record per batch for a year).
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.stage import Message, Output
from services.governance.forces.place import force_of_topic, stamp

COUNT_SCHEMA = "lfr.counts.v2"


def face_counts(frames: Sequence[tuple[Message, int]], topic: str, now_ms: int) -> list[Output]:
    """``frames``: each frame detect processed with the number of faces the detector found in it."""
    groups: dict[tuple[str, str, int], tuple[list[int], int]] = {}
    for message, faces in frames:
        key = (message.data["deployment_id"], message.topic or "in", message.partition)
        offsets, total = groups.get(key, ([], 0))
        offsets.append(message.offset)
        groups[key] = (offsets, total + faces)
    return [
        Output(topic, COUNT_SCHEMA,
               stamp({"count_id": f"{source}:{partition}:{min(offsets)}-{max(offsets)}:{len(offsets)}",
                      "deployment_id": deployment, "faces": faces, "counted_at_ms": now_ms}, force_of_topic(topic)),
               key=deployment)
        for (deployment, source, partition), (offsets, faces) in groups.items()
        if faces > 0
    ]
