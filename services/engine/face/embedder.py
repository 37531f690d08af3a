"""SFace embeddings: aligned 112x112 chips in, L2-normalised float32[128] out.

Convention: chips are BGR uint8 (N, 112, 112, 3), as produced by services.engine.face.align from BGR
frames, like every image in this library. SFace itself wants RGB, raw 0-255 float, NCHW (the
model subtracts 127.5 and scales by 1/128 internally), so the channel swap happens here and
only here.

Every output is tied to the model that made it: ``FaceEmbedder.identity``, and FaceEmbedding
carries it per vector so a comparison across models raises instead of returning a meaningless
score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.engine.face.align import CHIP_SIZE
from services.engine.face.errors import ImageError, ModelLoadError
from services.engine.face.models import SFACE, ModelIdentity, check_same_model, prepare_model
from services.engine.face.session import batch_dim_is_dynamic, create_session

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 128

#: Test-time flip augmentation default. Measured on LFW pairs (services/engine/face/README.md): it
#: widens the same/different gap by ~0.007 but leaves accuracy, EER and TAR at fixed FAR
#: within a few pairs in 3000 of the plain model, at twice the embedding compute. So: off.
DEFAULT_FLIP_AUGMENT = False


@dataclass(frozen=True, eq=False)
class FaceEmbedding:
    """One embedding and the model that produced it."""

    vector: np.ndarray  # float32 (128,), unit length
    model: ModelIdentity

    def similarity(self, other: "FaceEmbedding") -> float:
        """Cosine similarity; raises ModelMismatchError across models."""
        return cosine_similarity(self, other)


def cosine_similarity(a: FaceEmbedding, b: FaceEmbedding) -> float:
    """Cosine similarity of two embeddings of the same model (ModelMismatchError otherwise)."""
    check_same_model(a.model, b.model)
    return float(np.dot(a.vector, b.vector))


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class FaceEmbedder:
    """SFace recogniser over onnxruntime.

    ``flip_augment`` averages the embeddings of each chip and its mirror image (then
    re-normalises); ``max_batch`` bounds chips per onnxruntime call (a flipped pair counts as two).
    ``rewrite_prelu=False`` runs SFace as converted before the PRelu rewrite (converter version 2):
    bit-identical embeddings, about twice the time; only benchmarks want it. The identity is the
    same either way (same shipped model, same numbers), so both search the same watchlist.
    """

    def __init__(
        self,
        *,
        flip_augment: bool = DEFAULT_FLIP_AUGMENT,
        max_batch: int = 32,
        intra_op_threads: int = 1,
        allow_spinning: bool = False,
        cache_dir: Path | str | None = None,
        source: Path | str | None = None,
        rewrite_prelu: bool = True,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.flip_augment = bool(flip_augment)
        self.max_batch = int(max_batch)
        prepared = prepare_model(SFACE, cache_dir=cache_dir, source=source, rewrite_prelu=rewrite_prelu)
        self._identity = prepared.identity
        self._session = create_session(
            prepared.path, intra_op_threads=intra_op_threads, allow_spinning=allow_spinning
        )
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [3, CHIP_SIZE, CHIP_SIZE]:
            raise ModelLoadError("%s: unexpected recogniser inputs %s" % (prepared.path, [i.shape for i in inputs]))
        if len(outputs) != 1 or outputs[0].shape[-1] != EMBEDDING_DIM:
            raise ModelLoadError("%s: unexpected recogniser outputs %s" % (prepared.path, [o.shape for o in outputs]))
        self._input_name = inputs[0].name
        self._batched = batch_dim_is_dynamic(self._session)
        if not self._batched:
            logger.info("embedder batch dimension is fixed; embed loops chip by chip")

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    @property
    def dim(self) -> int:
        return EMBEDDING_DIM

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) BGR uint8 chips -> (N, 128) float32 unit vectors."""
        chips = self._check(chips)
        n = chips.shape[0]
        if n == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        if self.flip_augment:
            both = self._run(np.concatenate([chips, chips[:, :, ::-1, :]]))
            return l2_normalize(both[:n] + both[n:])
        return self._run(chips)

    def embed_one(self, chip: np.ndarray) -> np.ndarray:
        """One (112, 112, 3) BGR chip -> float32[128]."""
        return self.embed(np.asarray(chip)[None])[0]

    def embed_faces(self, chips: np.ndarray) -> list[FaceEmbedding]:
        """Like embed, with each vector tagged by this model's identity."""
        return [FaceEmbedding(vector=v, model=self._identity) for v in self.embed(chips)]

    def _check(self, chips: np.ndarray) -> np.ndarray:
        if not isinstance(chips, np.ndarray):
            raise ImageError("chips must be a numpy array, got %s" % type(chips).__name__)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ImageError("chips must be (N, %d, %d, 3), got %s" % (CHIP_SIZE, CHIP_SIZE, chips.shape))
        if chips.dtype != np.uint8:
            raise ImageError("chips must be uint8, got %s" % chips.dtype)
        return chips

    def _run(self, chips: np.ndarray) -> np.ndarray:
        """Normalised embeddings of BGR chips, batched by max_batch."""
        step = self.max_batch if self._batched else 1
        out = []
        for start in range(0, chips.shape[0], step):
            part = chips[start : start + step]
            blob = np.ascontiguousarray(part[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
            out.append(self._session.run(None, {self._input_name: blob})[0])
        return l2_normalize(np.concatenate(out).reshape(-1, EMBEDDING_DIM))
