"""`lfr eval`: the protocol, the metrics, and a deterministic run on a slice of the shared data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from services.evaluation.metrics import MatedResult, fpir, threshold_for_fpir, tpir
from services.evaluation.protocol import plan


def test_protocol_is_seeded_and_disjoint():
    identities = {f"id{i:03d}": [Path(f"id{i:03d}/{j}.jpg") for j in range(1 + i % 13)] for i in range(60)}
    first, again, other = plan(identities, 7), plan(identities, 7), plan(identities, 8)
    assert first == again and first.enrolled != other.enrolled
    enrolled = {name for name, _ in first.enrolled}
    assert all(paths == identities[name][:1] for name, paths in first.enrolled)
    assert all(name in enrolled and path != identities[name][0] for name, path in first.mated)
    assert max(sum(1 for n, _ in first.mated if n == name) for name in enrolled) == 10
    assert not {p.parent.name for p in first.nonmated} & enrolled
    multi = [n for n, imgs in identities.items() if len(imgs) >= 2]
    assert len(enrolled) == len(multi) // 2


def test_threshold_meets_fpir_target_exactly_at_the_boundary():
    nonmated = np.array([0.9, 0.8, 0.7, 0.6] + [0.1] * 996)  # 1000 searches
    t = threshold_for_fpir(nonmated, 1e-3)  # one alarm allowed
    assert fpir(nonmated, t) == 1e-3 and 0.8 < t < 0.9 + 1e-6
    assert fpir(nonmated, threshold_for_fpir(nonmated, 2.5e-4)) == 0.0
    mated = [MatedResult(True, True, 0.95), MatedResult(True, False, 0.99), MatedResult(False, False, float("-inf")), MatedResult(True, True, 0.5)]
    assert tpir(mated, t) == 0.25  # wrong subject and failure to acquire are misses


def _run(lfw_dir: Path, out: Path) -> dict:
    result = subprocess.run([sys.executable, "-m", "services.cli", "eval", "--data", str(lfw_dir), "--out", str(out), "--limit", "120", "--threads", "1"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("eval sface")
    assert out.with_suffix(".png").stat().st_size > 1000
    return json.loads(out.read_text())


def test_eval_on_a_slice_gives_the_same_json_twice(lfw_dir, tmp_path):
    first = _run(lfw_dir, tmp_path / "a" / "eval.json")
    second = _run(lfw_dir, tmp_path / "b" / "eval.json")
    assert first == second
    for key in ("model", "watchlist_size", "mated", "nonmated", "fta", "rank1", "points", "det"):
        assert key in first
    assert [p["fpir_target"] for p in first["points"]] == [1e-2, 1e-3, 2.5e-4]
    assert first["watchlist_size"] > 5 and first["mated"] > 10 and first["nonmated"] > 50
    assert first["rank1"] > 0.8
