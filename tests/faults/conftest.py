"""Collects one figures entry per fault scenario and writes tests/results/faults.json (git-ignored)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results" / "faults.json"
_figures: list[dict] = []


@pytest.fixture
def record_figures():
    return _figures.append


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001
    if _figures:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(_figures, indent=2) + "\n", encoding="utf-8")
