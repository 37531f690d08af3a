"""Exception hierarchy of the face engine.

Every error the library raises on purpose derives from FaceEngineError, so a service can catch
one type at its boundary and still tell causes apart (a bad model file is fatal at start-up,
a corrupt frame is skipped and counted).
"""

from __future__ import annotations


class FaceEngineError(Exception):
    """Base class of every error raised by services.engine.face."""


# -- models -----------------------------------------------------------------------------------


class ModelError(FaceEngineError):
    """A model file could not be found, verified, converted or loaded."""


class ModelNotFoundError(ModelError):
    """The model file (or the package that ships it) is not installed."""


class ModelHashMismatchError(ModelError):
    """The model file's SHA-256 differs from the pinned digest: wrong or damaged file."""


class ModelConversionError(ModelError):
    """The shipped model could not be rewritten into a form onnxruntime accepts."""


class ModelLoadError(ModelError):
    """onnxruntime refused the (converted) model or it has an unexpected signature."""


class ModelMismatchError(FaceEngineError):
    """Two embeddings come from different models and must not be compared."""


# -- images -----------------------------------------------------------------------------------


class ImageError(FaceEngineError):
    """An input image could not be used."""


class EmptyImageError(ImageError):
    """No bytes, or an array with no pixels."""


class CorruptImageError(ImageError):
    """The bytes are not a decodable JPEG or PNG."""


class ImageTooLargeError(ImageError):
    """The encoded size or the pixel dimensions exceed the configured limits."""
