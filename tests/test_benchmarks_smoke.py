"""The benchmarks run end to end at tiny sizes, so they cannot rot. They time nothing here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, out: Path) -> dict:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "a benchmark prints a one-line summary"
    return json.loads(out.read_text())


def test_matcher_benchmark_smoke(tmp_path):
    result = _run("matcher.py", tmp_path / "matcher.json")
    assert result["smoke"] is True
    for engine in ("embedded", "embedded_snapshot", "local", "exact"):
        for size in ("200", "500"):
            row = result[engine][size]
            assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"] and row["batches"] >= 2, (engine, size)
            assert row["recall_at_1"] == 1.0, (engine, size)  # exact at these sizes, on every engine


@pytest.mark.bench_smoke  # in make bench, not make test: 286-423 s on a loaded 2-core machine, most of CI's margin
@pytest.mark.timeout(900)
def test_pipeline_benchmark_smoke(tmp_path, lfw_dir):
    result = _run("pipeline.py", tmp_path / "pipeline.json")
    for run in ("tracking_on", "tracking_off", "pipeline_half_load"):
        assert result[run]["frames_per_s"] > 0, run
        assert set(result[run]["peak_rss_mb"]) >= {"ingest", "embed", "matcher", "dispatch"}
        assert set(result[run]["by_hop_ms"]) == {"capture_to_detect", "detect_to_embed", "embed_to_match", "match_to_alert"}
    assert result["tracking_on"]["false_alerts"] >= 0 and "walker_recall" in result["tracking_on"]
    # Walks of 64 px or more in view for 1 s with nothing embedded (issue #27): none at half load.
    assert result["pipeline_half_load"]["never_embedded_walkers"] == 0 and "walkers_owed_embedding" in result["tracking_on"]
    assert "p99" in result["pipeline_half_load"]["capture_to_alert_ms"]
    assert result["scale_out"]["two_replicas_pinned"]["frames_per_s"] > 0
    assert result["scale_out"]["two_replicas_pinned"]["broker_cpu_cores_used"] >= 0
    embed_two = result["scale_out_embed"]["two_replicas_pinned"]
    assert embed_two["faces_per_s"] > 0 and embed_two["backlog_faces"] > 0 and len(embed_two["faces_per_s_by_replica"]) == 2
    assert result["scale_out_embed"]["compute_only_ceiling"]["chips"] > 0
    assert result["ratios"]["two_pinned_embed_replicas_over_one"] > 0
    assert {"pipeline_over_baseline_faces_per_s", "tracking_on_over_off_frames_per_s", "two_pinned_replicas_over_one",
            "engine_over_original_frames_per_s", "pipeline_tracking_on_over_off_frames_per_s",
            "pipeline_sustained_over_baseline_faces_per_s", "pipeline_saturated_over_baseline_faces_per_s"} <= set(result["ratios"])
    assert result["ratios"]["pipeline_over_baseline_faces_per_s"] == result["ratios"]["pipeline_sustained_over_baseline_faces_per_s"]
    assert result["pipeline_sustained"]["tried"] and "frames_sent_per_s" in result["pipeline_sustained"]["tried"][0]
    # The like-for-like ratio is the one-process baselines' (one core each, same frames and time).
    assert result["ratios"]["tracking_on_over_off_frames_per_s"] == result["ratios"]["baseline_tracking_on_over_off_frames_per_s"]
    for run in ("baseline", "baseline_tracking_off", "baseline_original_engine"):
        assert result[run]["frames_per_s"] > 0 and result[run]["false_matches"] >= 0 and "walker_recall" in result[run], run
    # The original engine's SFace graph computes the same embeddings as today's (the PRelu rewrite is exact).
    same = result["baseline_original_engine"]["same_numbers_as_rewritten_sface"]
    assert same["chips"] > 0 and same["max_abs_diff"] == 0.0


def test_demo_replay_smoke(tmp_path, lfw_dir):
    """The offline shot-policy replay behind the demo-miss figures (docs/evaluators/accuracy.md) (issue #13)."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "demo_replay.py"), "--smoke", "--data", str(lfw_dir),
                             "--alignments", "plain", "redetect", "--out", str(tmp_path / "replay.json")],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    replay = json.loads((tmp_path / "replay.json").read_text())
    rows = replay["seeds"]["7"]
    assert set(rows) == {"best_shots", "spread", "every_face"}
    # Every face embedded costs the most and can only find more listed walkers than best shots.
    assert rows["every_face"]["embeddings_per_walker"] >= rows["spread"]["embeddings_per_walker"] >= rows["best_shots"]["embeddings_per_walker"]
    assert rows["every_face"]["alerted"] >= rows["best_shots"]["alerted"]
    # The same frames replayed with refined landmarks: same walkers, same faces, other embeddings.
    plain, refined = replay["alignments"]["plain"], replay["alignments"]["redetect"]
    assert plain["seeds"] == replay["seeds"] and refined["seeds"]["7"]["best_shots"]["shown"] == rows["best_shots"]["shown"]
    assert len(plain["scores"]["genuine"]) == len(refined["scores"]["genuine"]) > 0
    assert plain["scores"]["genuine"] != refined["scores"]["genuine"]


@pytest.mark.bench_smoke  # make bench: a benchmark smoke of half a minute, off CI's 35-minute budget
def test_align_experiment_smoke(tmp_path, lfw_dir):
    """The choose/report comparison of alignment options behind the alignment figures (docs/evaluators/accuracy.md) (issue #13)."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "align_experiment.py"), "--data", str(lfw_dir), "--limit", "40",
                             "--alignments", "plain", "redetect", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "align.json")],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads((tmp_path / "align.json").read_text())
    for alignment in ("plain", "redetect"):
        for photos in ("photos_1", "photos_3"):
            row = out["alignments"][alignment][photos]
            assert row["choose|0.001"]["probes"] > 0 and 0.0 <= row["report|0.001"]["tpir_end_to_end"] <= 1.0
    gained_lost = out["alignments"]["redetect"]["photos_1"]["choose|vs_plain"]
    assert set(gained_lost) == {"gained", "lost"}
    cost = out["cost_per_face"]
    assert cost["faces"] > 0 and cost["refine_ms"] > 0 and cost["embed_ms"] > 0


def test_broker_memory_benchmark_smoke(tmp_path):
    """benchmarks/broker_memory.py (docs/assurance/embedded-broker.md: the embedded broker's growth per hour of video)."""
    result = _run("broker_memory.py", tmp_path / "broker_memory.json")
    assert result["frames"] > 0 and result["bytes_produced"] > 0 and result["rss_final_mb"] > 0


def test_tansu_retention_benchmark_smoke(tmp_path):
    """benchmarks/tansu_retention.py (docs/assurance/embedded-broker.md: what the embedded broker enforces)."""
    result = _run("tansu_retention.py", tmp_path / "tansu_retention.json")
    assert result["produced"] == 50 and [r["after_s"] >= 1 for r in result["readable"]] == [True, True]
    assert "delete_records" in result


def test_cameras_benchmark_smoke(tmp_path, lfw_dir):
    result = _run("cameras.py", tmp_path / "cameras.json")
    assert result["smoke"] is True
    rows = result["face_width_recall"]
    assert [(r["frame"], r["setting"], r["width_px"]) for r in rows] == [
        ("1080p", "whole-frame", 32), ("1080p", "whole-frame", 96), ("1080p", "tiles-2", 32), ("1080p", "tiles-2", 96)]
    assert all(r["faces"] > 0 and 0 <= r["recall"] <= 1 for r in rows)
    assert rows[1]["recall"] >= 0.5  # 96 px faces in 1080p are found
    assert rows[2]["recall"] >= rows[0]["recall"] and rows[2]["detector_runs_per_frame"] == 5 > rows[0]["detector_runs_per_frame"] == 1
    costs = result["stream_costs_1080p"]
    assert "skipped" in costs or (costs["frames"] > 0 and costs["decode_ms_per_frame"] > 0)
    four = result["four_cameras_ingest_only"]
    assert "skipped" in four or (four["cameras"] == 4 and four["analysed_fps_per_camera"] > 0 and four["ingest_cores_used"] > 0)
    assert {"four_cameras", "overload_over_baseline_faces_per_s"} <= set(result)


def test_frame_formats_benchmark_smoke(tmp_path, lfw_dir):
    """benchmarks/frame_formats.py: what the frame topic carries (bytes, faces still embeddable)."""
    result = _run("frame_formats.py", tmp_path / "frame_formats.json")
    rows = result["formats"]
    assert rows["jpeg85_full"]["bytes_over_jpeg85_full"] == 1.0 and rows["raw_bgr"]["bytes_per_frame"] == 1920 * 1080 * 3
    assert rows["jpeg85_640"]["faces_found"] == rows["jpeg85_full"]["faces_found"] > 0  # the detector's input is 640 anyway
    assert rows["jpeg85_640"]["faces_accepted"] < rows["jpeg85_full"]["faces_accepted"]  # but the chips are too small
    assert rows["h264"]["bytes_per_frame"] > 0

@pytest.mark.bench_smoke  # make bench (which then runs the full simulation): a minute, off CI's 35-minute budget
def test_fleet_simulation_smoke(tmp_path):
    """lfr fleet simulate at tiny sizes: every replayed alert reaches its force's core once, through
    the link and the intake, after a link cut; nothing biometric at the core."""
    result = _run("fleet.py", tmp_path / "fleet.json")
    assert result["vans"] == 2 and result["forces"] == 2 and set(result) >= {"scenarios", "bytes_per_van_hour"}
    assert [s["scenario"] for s in result["scenarios"]] == ["steady", "link_cut_2s"]
    for row in result["scenarios"]:
        assert row["alerts_raised"] > 0 and row["alerts_delivered"] == row["alerts_raised"], row
        assert row["duplicates"] == 0 and row["lost"] == 0 and row["biometric_records_at_core"] == 0, row
        assert row["drain_s"] >= 0
