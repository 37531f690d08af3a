"""Shared test fixtures: the face data set location and (see kafka fixtures) the embedded broker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "datasets" / "lfw-dev"


def resolve_data_dir() -> Path | None:
    """LFW-layout data dir: LFR_DATA_DIR, else ../shared/datasets/lfw-dev; None when absent."""
    configured = os.environ.get("LFR_DATA_DIR")
    path = Path(configured) if configured else DEFAULT_DATA_DIR
    return path if path.is_dir() and any(path.iterdir()) else None


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    path = resolve_data_dir()
    if path is None:
        pytest.skip(
            "face data set not found: set LFR_DATA_DIR to a folder of identity folders "
            f"(Labeled Faces in the Wild layout) or provide {DEFAULT_DATA_DIR}"
        )
    return path
