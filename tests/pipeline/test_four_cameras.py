"""The van's four cameras, short: four RTSP H.264 1080p 25 fps sessions from GStreamer's server
through ingest, the embedded broker, detect, embed, the matcher and dispatch (processes), scored
against the clip's truth (benchmarks/four_cameras.py; the full run is in make bench). Asserts
recall and no false alerts, never timings."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "four_cameras.py"


def _benchmark():
    import sys

    sys.path.insert(0, str(BENCHMARK.parent))
    spec = importlib.util.spec_from_file_location("four_cameras", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_four_rtsp_cameras_through_the_whole_pipeline(lfw_dir, tmp_path):
    # 5 fps analysed (the benchmark's policy is 10): the machine this runs on is shared.
    result = _benchmark().run(lfw_dir, tmp_path, seconds=14, analysed_fps=5, clip_seconds=8, recognisable_margin=0.05)
    if "skipped" in result:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the RTSP server (.ci/run installs it): {result['skipped']}")
        pytest.skip(result["skipped"])
    assert result["cameras"] == 4 and result["analysed_fps_per_camera"] > 0  # a rate: back-pressure lowers it on a busy machine
    assert result["decoded_fps_per_camera"] >= 2 * result["analysed_fps_per_camera"]  # every frame decoded, some analysed
    assert result["frames_unstamped"] == 0  # every frame traced to its truth
    assert result["watchlisted_walkers_shown"] >= 4, result
    assert result["walker_recall"] >= 0.75, result
    assert result["false_alerts"] == 0, result
    assert result["alerts"] > 0 and result["capture_to_alert_ms"]["p50"] > 0
