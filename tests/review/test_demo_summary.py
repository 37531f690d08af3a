"""The demo's result keys (kept stable; other tools read them): `review_url` and `report`, the
transparency figures, with faces processed counted at detect."""

from __future__ import annotations

import pytest

from services.common.broker import free_port
from services.tools.demo.run import DemoOptions, run_demo
from services.operations.report.build import SUMMARY_KEYS

pytestmark = [pytest.mark.slow]  # about 100 s; part of `make test` (#12: every point runs there)


def test_a_short_demo_reports_review_url_and_the_transparency_figures(lfw_dir, tmp_path):
    options = DemoOptions(seconds=12, watchlisted=3, strangers=4, seed=11, workdir=tmp_path / "demo", recognisable_margin=0.08,
                          review_port=free_port())
    summary = run_demo(lfw_dir, options, out=lambda *_: None)
    assert summary["review_url"] == f"http://localhost:{options.review_port}"
    report = summary["report"]
    assert tuple(report) == SUMMARY_KEYS == ("faces", "alerts", "confirmed", "false_alerts", "engagements", "arrests")
    assert all(isinstance(v, int) and v >= 0 for v in report.values())
    # Faces processed: every face detect found, at least the shots it sent on (the summary's faces).
    assert report["faces"] >= summary["faces"] > 0
    # Every alert the demo printed is in the report; the stand-in officer confirms or rejects them.
    assert report["alerts"] == summary["alerts"] and report["confirmed"] + report["false_alerts"] <= report["alerts"]
    assert report["arrests"] <= report["engagements"] <= report["confirmed"]
    assert all(code == 0 for code in summary["service_exit_codes"].values()), summary["service_exit_codes"]
    # Every walk of 64 px or more in view for a second had a face embedded (issue #27).
    assert summary["never_embedded"]["walkers_owed"] > 0 and summary["never_embedded"]["never_embedded"] == 0, summary["never_embedded"]
