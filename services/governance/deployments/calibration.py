"""A model's calibration: FPIR per search against threshold, scaled to any watchlist size.

File format (``services/engine/face/calibration/<model-name>.json``, format 1)::

    {"format": 1, "model": "<name>@<sha256 prefix>", "source": {...what data and command...},
     "reference_watchlist_size": N_ref, "nonmated_searches": S,
     "points": [{"threshold": t, "false_alarms": k, "fpir": k / S}, ...]}   # t ascending

Scaling rule. ``fpir`` is measured with a watchlist of N_ref subjects: the share of non-mated
searches whose best candidate scores >= t. Treating each listed subject as an independent
chance p1 of a false match, FPIR(N) = 1 - (1 - p1)^N, so p1 = 1 - (1 - FPIR_ref)^(1/N_ref)
and any other size follows. Two conservative choices: a threshold between grid points takes
the FPIR of the grid point below it (FPIR falls as t rises), and a point with no false alarm
counts as one (zero observed is not zero: with S searches, FPIR_ref below 1/S is not measured).

The floor is the lowest grid threshold whose FPIR at a 1,000-subject watchlist is at most 1e-3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CALIBRATION_DIR = Path(__file__).resolve().parents[2] / "engine" / "face" / "calibration"
FLOOR_FPIR = 1e-3
FLOOR_WATCHLIST_SIZE = 1000
FORMAT = 1


@dataclass(frozen=True)
class CalibrationPoint:
    threshold: float
    false_alarms: int
    fpir: float


@dataclass(frozen=True)
class Calibration:
    model: str
    reference_watchlist_size: int
    nonmated_searches: int
    points: tuple[CalibrationPoint, ...]  # thresholds ascending
    source: dict
    path: str = ""

    @property
    def label(self) -> str:
        """What the audit records: which calibration the figures came from."""
        return f"{self.model} ({Path(self.path).name or 'inline'}, {self.source.get('dataset', '?')})"

    def _point(self, threshold: float) -> CalibrationPoint:
        below = [p for p in self.points if p.threshold <= threshold + 1e-9]
        return below[-1] if below else self.points[0]

    def per_subject_rate(self, threshold: float) -> float:
        """p1: the chance that one listed subject falsely matches one search at this threshold."""
        point = self._point(threshold)
        fpir_ref = max(point.false_alarms, 1) / self.nonmated_searches
        return 1.0 - (1.0 - min(fpir_ref, 1.0)) ** (1.0 / self.reference_watchlist_size)

    def fpir(self, threshold: float, watchlist_size: int) -> float:
        """FPIR per search for a watchlist of ``watchlist_size`` subjects."""
        if watchlist_size <= 0:
            return 0.0
        return 1.0 - (1.0 - self.per_subject_rate(threshold)) ** watchlist_size

    def floor(self, target_fpir: float = FLOOR_FPIR, watchlist_size: int = FLOOR_WATCHLIST_SIZE) -> float:
        """Lowest calibrated threshold with FPIR <= target at the given watchlist size."""
        for point in self.points:
            if self.fpir(point.threshold, watchlist_size) <= target_fpir:
                return point.threshold
        raise ValueError(f"no calibrated threshold reaches FPIR {target_fpir:g} at {watchlist_size} subjects")

    def expected_false_alerts_per_hour(self, threshold: float, watchlist_size: int, faces_per_hour: float) -> float:
        return faces_per_hour * self.fpir(threshold, watchlist_size)


def load(path: Path) -> Calibration:
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("format") != FORMAT:
        raise ValueError(f"{path}: calibration format {document.get('format')!r}, expected {FORMAT}")
    points = tuple(sorted((CalibrationPoint(float(p["threshold"]), int(p["false_alarms"]), float(p["fpir"])) for p in document["points"]),
                          key=lambda p: p.threshold))
    if not points or document["reference_watchlist_size"] < 1 or document["nonmated_searches"] < 1:
        raise ValueError(f"{path}: calibration has no points or no reference sizes")
    return Calibration(document["model"], int(document["reference_watchlist_size"]), int(document["nonmated_searches"]), points,
                       dict(document.get("source", {})), str(path))


def path_for(model_name: str, directory: Path = CALIBRATION_DIR) -> Path:
    return directory / f"{model_name}.json"


def from_eval(result: dict, source: dict) -> dict:
    """A calibration document from `lfr eval` JSON (needs its ``fpir_by_threshold`` grid)."""
    if "fpir_by_threshold" not in result:
        raise ValueError("this `lfr eval` output has no fpir_by_threshold grid; re-run lfr eval")
    return {
        "format": FORMAT,
        "model": result["model"],
        "source": {**source, "dataset": result["dataset"], "seed": result["seed"], "identities": result["identities"]},
        "reference_watchlist_size": result["watchlist_size"],
        "nonmated_searches": result["nonmated"],
        "rule": "FPIR(N) = 1 - (1 - p1)^N, p1 = 1 - (1 - FPIR_ref)^(1/N_ref); zero false alarms counted as one",
        "points": [{"threshold": p["threshold"], "false_alarms": p["false_alarms"], "fpir": p["fpir"]} for p in result["fpir_by_threshold"]],
    }


def dumps(document: dict) -> str:
    """Readable and diff-friendly: one point per line."""
    head = {k: v for k, v in document.items() if k != "points"}
    lines = json.dumps(head, indent=1)[:-2] + ',\n "points": [\n'
    lines += ",\n".join("  " + json.dumps(p) for p in document["points"])
    return lines + "\n ]\n}\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m services.governance.deployments.calibration EVAL.json --out FILE``: write a calibration file."""
    import argparse

    parser = argparse.ArgumentParser(description="calibration file from `lfr eval` output")
    parser.add_argument("eval_json", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--command", default="lfr eval --data ../shared/datasets/lfw-dev --threads 1 --seed 7")
    parser.add_argument("--scaling", action="store_true", help="use the largest filler-grown watchlist of `lfr eval --fillers`")
    args = parser.parse_args(argv)
    result = json.loads(args.eval_json.read_text(encoding="utf-8"))
    source = {"command": args.command}
    if args.scaling:
        if not result.get("scaling", {}).get("sizes"):
            parser.error("this `lfr eval` output has no filler scaling; run it with --fillers")
        largest = result["scaling"]["sizes"][-1]
        source["fillers"] = f"{largest['fillers']} single-image subjects from {result['scaling']['filler_folder']}"
        result = {**result, **{k: largest[k] for k in ("watchlist_size", "nonmated", "fpir_by_threshold")}}
    document = from_eval(result, source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(document), encoding="utf-8")
    calibration = load(args.out)
    print(f"{args.out}: floor {calibration.floor():.2f} (FPIR {FLOOR_FPIR:g} at {FLOOR_WATCHLIST_SIZE} subjects)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
