"""Open-set identification metrics (ISO/IEC 19795-1 style): TPIR, FPIR, thresholds, DET."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FPIR_TARGETS = (1e-2, 1e-3, 2.5e-4)


@dataclass(frozen=True)
class MatedResult:
    acquired: bool
    correct: bool  # top candidate is the right subject
    score: float  # score of the top candidate (-inf when none)


def threshold_for_fpir(nonmated_scores: np.ndarray, target: float) -> float:
    """Lowest threshold whose FPIR is at most ``target`` (alarms are scores >= threshold)."""
    scores = np.sort(nonmated_scores[np.isfinite(nonmated_scores)])[::-1]
    allowed = int(np.floor(target * len(nonmated_scores) + 1e-9))
    if allowed >= len(scores):
        return float(scores[-1]) if len(scores) else 0.0
    # Just above the (allowed+1)-th highest non-mated score, so it does not alarm.
    return float(np.nextafter(np.float32(scores[allowed]), np.float32(np.inf)))


def tpir(mated: list[MatedResult], threshold: float) -> float:
    return sum(1 for m in mated if m.correct and m.score >= threshold) / max(1, len(mated))


def fpir(nonmated_scores: np.ndarray, threshold: float) -> float:
    return float(np.sum(nonmated_scores >= threshold)) / max(1, len(nonmated_scores))


def det_curve(mated: list[MatedResult], nonmated_scores: np.ndarray, points: int = 200) -> list[dict[str, float]]:
    """(threshold, FPIR, FNIR) over thresholds spread across the observed scores."""
    finite = np.concatenate([nonmated_scores[np.isfinite(nonmated_scores)], [m.score for m in mated if np.isfinite(m.score)]])
    if finite.size == 0:
        return []
    thresholds = np.unique(np.quantile(finite, np.linspace(0, 1, points)).astype(np.float32))
    return [
        {"threshold": round(float(t), 6), "fpir": round(fpir(nonmated_scores, float(t)), 6), "fnir": round(1 - tpir(mated, float(t)), 6)}
        for t in thresholds
    ]


def fpir_by_threshold(nonmated_scores: np.ndarray, start: float = 0.20, stop: float = 0.90, step: float = 0.01) -> list[dict]:
    """FPIR on a fixed threshold grid with the raw false-alarm counts: the calibration's input
    (services/governance/deployments/calibration.py), fine where the DET curve's quantiles are sparse."""
    grid = np.round(np.arange(start, stop + step / 2, step), 4)
    return [
        {"threshold": float(t), "false_alarms": int(np.sum(nonmated_scores >= t)), "fpir": round(fpir(nonmated_scores, float(t)), 8)}
        for t in grid
    ]


def summarise(mated: list[MatedResult], nonmated_scores: np.ndarray, mated_end_to_end: list[MatedResult] | None = None) -> dict:
    """``mated`` covers enrolled subjects only; ``mated_end_to_end`` every intended subject's
    probes, a refused enrolment counting as a miss for each (as NIST FRVT counts failure to enrol)."""
    everyone = mated if mated_end_to_end is None else mated_end_to_end
    points = []
    for target in FPIR_TARGETS:
        t = threshold_for_fpir(nonmated_scores, target)
        points.append({"fpir_target": target, "threshold": round(t, 6), "tpir": round(tpir(mated, t), 6),
                       "tpir_end_to_end": round(tpir(everyone, t), 6), "fpir": round(fpir(nonmated_scores, t), 6)})
    return {
        "rank1": round(sum(1 for m in mated if m.correct) / max(1, len(mated)), 6),
        "rank1_end_to_end": round(sum(1 for m in everyone if m.correct) / max(1, len(everyone)), 6),
        "points": points,
        "det": det_curve(mated, nonmated_scores),
        "fpir_by_threshold": fpir_by_threshold(nonmated_scores),
    }
