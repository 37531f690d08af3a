"""Which faces of a track are worth embedding ("best-shots/v1").

Embedding is the pipeline's dominant cost (SFace, ~30 ms per face per core) and the same person
stays in view for dozens of frames, so detect sends a track's face on to embed only when it can
change the outcome:

- ``first``: the track's first face that passed the quality gate;
- ``better``: a face whose quality beats the best sent so far by ``margin`` (relative), while
  the track has sent fewer than ``max_shots`` (K) in its current window;
- ``refresh``: on a long track, ``refresh_ms`` after the window opened, a new window opens
  (the budget and the best quality reset), so a person who lingers is re-checked; at most K
  shots per track per refresh window.

- after a possible loss (``reopen``): a shot detect sent may never have reached the broker (its
  batch was rewound after a failed produce) or may have died with it (the broker restarted and
  lost its records, or the group forgot this consumer), and then a person in view would never be
  checked, because the track believes its shots are spent. Detect then reopens the tracks
  whose shots were lost (services/pipeline/detect/stage.py, ``DetectStage``): each one's next acceptable
  face goes as ``first`` again (with the first shot's
  longer stale budget downstream). A duplicate shot costs one embedding; the dispatcher folds a
  second match into the person's open alert.

Every other accepted face is skipped and counted by reason (``SKIP_REASONS``): ``not_better``
(quality within the margin of the best so far) or ``track_budget`` (K already sent this window).

Quality, in [0, 1]: detector score x size (inter-ocular distance over 40 px, capped at 1) x
frontalness (1 - |yaw| / 0.5, floored at 0) x sharpness (Laplacian variance over 100, capped at 1)
x 0.25 for each side of the frame the face box reaches (within 5 % of its width) (a face entering the view is partly cut
off: measured on the crowd workload, its entry shot scored below threshold while the later full
views matched, so the full view must beat it). Each factor is a measure the quality gate
already computes; the product favours the large, frontal, sharp, whole faces SFace separates best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .tracker import Track

SHOT_REASONS = ("first", "better", "refresh")
EDGE_MARGIN = 0.05  # of the face width: a box this close to the frame's border counts as cut off
SKIP_REASONS = ("not_better", "track_budget")
ShotReason = Literal["first", "better", "refresh"]


def shot_quality(detector_score: float, inter_ocular_px: float, yaw: float, blur: float,
                 box: Sequence[float] | None = None, frame_size: tuple[int, int] | None = None) -> float:
    """Quality of one accepted face; ``box`` (x1, y1, x2, y2) and ``frame_size`` (width, height)
    enable the cut-off penalty."""
    size = min(1.0, inter_ocular_px / 40.0)
    frontal = max(0.0, 1.0 - abs(yaw) / 0.5)
    sharp = min(1.0, blur / 100.0)
    whole = 1.0
    if box is not None and frame_size is not None:
        width, height = frame_size
        x1, y1, x2, y2 = (float(v) for v in box)  # numpy booleans would add up as a logical or
        # The detector draws a cut face's box around what is visible, a few pixels inside the
        # border (measured: x1 = 2 px for a face cut by a tenth of its width), so "reaches the
        # border" means within EDGE_MARGIN of the face's width (at least 1 px).
        edge = max(1.0, EDGE_MARGIN * (x2 - x1))
        cut_sides = int(x1 <= edge) + int(y1 <= edge) + int(x2 >= width - edge) + int(y2 >= height - edge)
        whole = 0.25**cut_sides
    return max(0.0, min(1.0, detector_score)) * size * frontal * sharp * whole


@dataclass(frozen=True)
class ShotDecision:
    send: bool
    reason: str  # a SHOT_REASONS value when sent, a SKIP_REASONS value when skipped
    shot: int = 0  # 1-based shot number within the track (when sent)


@dataclass(frozen=True)
class ShotPolicy:
    max_shots: int = 3
    margin: float = 0.25
    refresh_ms: int = 10_000

    def decide(self, track: Track, quality: float, captured_at_ms: int) -> ShotDecision:
        """Decide for one accepted face of ``track``; updates the track's shot bookkeeping."""
        reason: ShotReason
        if track.window_start_ms < 0:
            reason = "first"
        elif captured_at_ms - track.window_start_ms >= self.refresh_ms:
            reason = "refresh"
        elif track.shots_in_window >= self.max_shots:
            return ShotDecision(False, "track_budget")
        elif quality > track.best_quality * (1.0 + self.margin):
            reason = "better"
        else:
            return ShotDecision(False, "not_better")
        if reason != "better":
            track.window_start_ms = captured_at_ms
            track.shots_in_window = 0
            track.best_quality = 0.0
        track.shots_in_window += 1
        track.shots += 1
        track.best_quality = max(track.best_quality, quality)
        track.last_shot_ms = captured_at_ms
        return ShotDecision(True, reason, track.shots)

    @staticmethod
    def reopen(track: Track) -> None:
        """Forget what ``track`` sent: its next acceptable face is a ``first`` shot again.
        ``shots`` (the track's shot numbering) keeps counting."""
        track.window_start_ms = -1
        track.shots_in_window = 0
        track.best_quality = 0.0
