"""The model benchmark runs end to end in smoke mode and writes the documented JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.bench_smoke  # make bench: half a minute, off CI's 35-minute budget
def test_benchmark_smoke_writes_json(tmp_path: Path, model_cache_dir: Path) -> None:
    out = tmp_path / "models.json"
    env = dict(os.environ, LFR_MODEL_CACHE_DIR=str(model_cache_dir))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "models.py"), "--smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().count("\n") == 0 and "detect" in proc.stdout
    data = json.loads(out.read_text())
    assert {"machine", "input", "settings", "models", "detection", "embedding", "smoke"} <= set(data)
    assert data["smoke"] is True
    assert {"cpu_model", "logical_cores", "onnxruntime"} <= set(data["machine"])
    assert data["input"]["source"] in ("lfw-composite", "random-noise")
    assert {(r["width"], r["height"], r["threads"]) for r in data["detection"]} == {
        (w, h, t) for w, h in ((640, 640), (1280, 720)) for t in (1, 2)
    }
    assert {(r["batch"], r["threads"]) for r in data["embedding"]} == {(b, t) for b in (1, 8, 32) for t in (1, 2)}
    assert all(r["ms_per_frame"] > 0 for r in data["detection"])
    assert all(r["ms_per_chip"] > 0 for r in data["embedding"])
    # The conversion comparison (baseline graph vs today's, same process) ran and agreed bit for bit.
    rows = data["conversion"]["sface"]["by_batch"]
    assert {r["batch"] for r in rows} == {1, 8}
    assert all(r["identical_outputs"] and r["speedup"] > 0 for r in rows)
    assert "Conv" in data["conversion"]["yunet"]["profile_share_pct"]
