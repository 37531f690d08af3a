"""Session-wide face-engine fixtures: one converted-model cache, one detector, one embedder.

Models are converted once per test session into a temporary cache (never the user's), and the
detector and embedder are shared so the suite stays fast on two cores.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.engine.face.detector import Detection, FaceDetector
from services.engine.face.embedder import FaceEmbedder
from services.engine.face.evaluate import list_identities, nearest_to_centre


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("face-models")


@pytest.fixture(scope="session")
def detector(model_cache_dir: Path) -> FaceDetector:
    return FaceDetector(cache_dir=model_cache_dir, intra_op_threads=1)


@pytest.fixture(scope="session")
def embedder(model_cache_dir: Path) -> FaceEmbedder:
    return FaceEmbedder(cache_dir=model_cache_dir, intra_op_threads=1)


@pytest.fixture(scope="session")
def lfw_identities(lfw_dir: Path) -> dict[str, list[Path]]:
    return list_identities(lfw_dir)


@pytest.fixture(scope="session")
def lfw_paths(lfw_identities: dict[str, list[Path]]) -> list[Path]:
    return sorted(p for images in lfw_identities.values() for p in images)


@pytest.fixture(scope="session")
def lfw_faces(lfw_paths: list[Path], detector: FaceDetector) -> list[tuple[np.ndarray, Detection]]:
    """A few fixed LFW images with their labelled (nearest-centre) detection."""
    faces = []
    for path in random.Random(2024).sample(lfw_paths, 6):
        image = cv2.imread(str(path))
        face = nearest_to_centre(detector.detect(image), image.shape)
        assert face is not None, "no face in %s" % path.name
        faces.append((image, face))
    return faces
