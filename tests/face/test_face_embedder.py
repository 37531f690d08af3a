"""SFace embeddings: separation on LFW pairs, batching, determinism, flip augmentation, identity."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from services.engine.face.align import align_face
from services.engine.face.detector import FaceDetector
from services.engine.face.embedder import FaceEmbedder, FaceEmbedding, cosine_similarity
from services.engine.face.errors import ImageError, ModelMismatchError
from services.engine.face.evaluate import nearest_to_centre, sample_pairs, verification_metrics
from services.engine.face.models import ModelIdentity


def _chip(detector: FaceDetector, path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    face = nearest_to_centre(detector.detect(image), image.shape)
    assert face is not None, path.name
    return align_face(image, face.landmarks)


def test_same_identity_scores_higher_than_different(detector, embedder, lfw_identities) -> None:
    same_pairs, _ = sample_pairs(lfw_identities, n_same=50, n_diff=0, seed=7)
    # Different-identity pairs re-use the same images (keeps the test fast): image a of pair i
    # against image b of pair i+1, kept when the identities differ.
    n = len(same_pairs)
    diff_pairs = [
        (same_pairs[i][0], same_pairs[(i + k) % n][1])
        for k in (1, 2)
        for i in range(n)
        if same_pairs[i][0].parent != same_pairs[(i + k) % n][1].parent
    ]
    assert len(diff_pairs) >= 80
    paths = sorted({p for pair in same_pairs for p in pair})
    vectors = dict(zip(paths, embedder.embed(np.stack([_chip(detector, p) for p in paths]))))
    same = [float(vectors[a] @ vectors[b]) for a, b in same_pairs]
    diff = [float(vectors[a] @ vectors[b]) for a, b in diff_pairs]
    metrics = verification_metrics(np.array(same), np.array(diff))
    assert metrics.gap >= 0.3, metrics
    assert metrics.best_accuracy >= 0.9, metrics


@pytest.fixture(scope="module")
def chips(lfw_faces) -> np.ndarray:
    return np.stack([align_face(image, face.landmarks) for image, face in lfw_faces])


def test_output_is_unit_float32(embedder: FaceEmbedder, chips: np.ndarray) -> None:
    out = embedder.embed(chips)
    assert out.shape == (len(chips), 128) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert embedder.embed(chips[:0]).shape == (0, 128)


@pytest.mark.parametrize("flip", [False, True])
def test_batch_matches_single_and_is_deterministic(model_cache_dir, chips: np.ndarray, flip: bool) -> None:
    embedder = FaceEmbedder(cache_dir=model_cache_dir, flip_augment=flip, max_batch=4)
    batch = embedder.embed(chips)
    single = np.stack([embedder.embed_one(chip) for chip in chips])
    np.testing.assert_allclose(batch, single, atol=1e-5, rtol=0)
    assert np.array_equal(batch, embedder.embed(chips))


def test_flip_augmentation_averages_with_the_mirror(model_cache_dir, embedder, chips) -> None:
    assert not embedder.flip_augment  # the measured default, see services/engine/face/README.md
    plain = embedder
    flipping = FaceEmbedder(cache_dir=model_cache_dir, flip_augment=True)
    mirrored = np.ascontiguousarray(chips[:, :, ::-1, :])
    with_flip = flipping.embed(chips)
    # Symmetric by construction: a chip and its mirror get the same flip-augmented embedding.
    np.testing.assert_allclose(with_flip, flipping.embed(mirrored), atol=1e-5)
    expected = plain.embed(chips) + plain.embed(mirrored)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(with_flip, expected, atol=1e-5)
    assert not np.allclose(with_flip, plain.embed(chips), atol=1e-3)


def test_embeddings_carry_model_identity(embedder: FaceEmbedder, chips: np.ndarray) -> None:
    assert str(embedder.identity) == "sface-2021dec-int8bq@fb143eea0783"
    faces = embedder.embed_faces(chips[:2])
    assert all(f.model == embedder.identity for f in faces)
    assert cosine_similarity(faces[0], faces[0]) == pytest.approx(1.0, abs=1e-5)
    other = FaceEmbedding(vector=faces[1].vector, model=ModelIdentity("other-model", "ab" * 32))
    with pytest.raises(ModelMismatchError):
        faces[0].similarity(other)


def test_rejects_bad_chips(embedder: FaceEmbedder) -> None:
    with pytest.raises(ImageError):
        embedder.embed(np.zeros((1, 100, 100, 3), np.uint8))
    with pytest.raises(ImageError):
        embedder.embed(np.zeros((1, 112, 112, 3), np.float32))
