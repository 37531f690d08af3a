"""Decode JPEG/PNG bytes (from Kafka messages or uploads) into BGR uint8 frames, safely.

Frames arrive from outside, so decoding is a trust boundary: the encoded size is capped, the
pixel dimensions are read from the file header and capped *before* decoding (a small PNG can
declare a 60000x60000 canvas and exhaust memory), and only JPEG and PNG are accepted. Each
failure has its own exception so services can count them separately.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from services.engine.face.errors import CorruptImageError, EmptyImageError, ImageTooLargeError

logger = logging.getLogger(__name__)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG start-of-frame markers carry the dimensions (C4, C8 and CC are other segment types).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class ImageLimits:
    """Caps on what decode_image accepts. Defaults allow 4K frames with margin."""

    max_bytes: int = 20 * 1024 * 1024
    max_width: int = 8192
    max_height: int = 8192
    max_pixels: int = 40_000_000


DEFAULT_LIMITS = ImageLimits()


def image_format(data: bytes) -> str | None:
    """'jpeg', 'png' or None, from the magic bytes."""
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if data.startswith(_PNG_MAGIC):
        return "png"
    return None


def _png_size(data: bytes) -> tuple[int, int]:
    # Signature (8) + IHDR length (4) + "IHDR" (4) + width (4) + height (4).
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise CorruptImageError("PNG without a valid IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise CorruptImageError("JPEG marker expected at byte %d" % pos)
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            raise CorruptImageError("JPEG segment with invalid length at byte %d" % pos)
        if marker in _JPEG_SOF:
            if pos + 9 > n:
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    raise CorruptImageError("JPEG without a frame header")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header without decoding; CorruptImageError if unreadable."""
    kind = image_format(data)
    if kind == "png":
        return _png_size(data)
    if kind == "jpeg":
        return _jpeg_size(data)
    raise CorruptImageError("not a JPEG or PNG image (magic %r)" % bytes(data[:8]))


def decode_image(
    data: bytes | bytearray | memoryview, limits: ImageLimits = DEFAULT_LIMITS, expect_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode JPEG or PNG bytes into an HxWx3 BGR uint8 array.

    ``expect_size`` (width, height) is what the message declared (a camera's frame size, the
    chip size): a header that says otherwise is refused before decoding, so a small file
    cannot make the decoder allocate a large canvas.

    Raises EmptyImageError (no bytes), ImageTooLargeError (over ``limits``) or
    CorruptImageError (not JPEG/PNG, bad header, header not the expected size, or the
    decoder fails).
    """
    if data is None or len(data) == 0:
        raise EmptyImageError("image data is empty")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError("encoded image is %d bytes, limit %d" % (len(data), limits.max_bytes))
    width, height = image_size(data)
    if width == 0 or height == 0:
        raise CorruptImageError("image header declares %dx%d pixels" % (width, height))
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        raise ImageTooLargeError(
            "image is %dx%d, limits %dx%d and %d pixels"
            % (width, height, limits.max_width, limits.max_height, limits.max_pixels)
        )
    if expect_size is not None and (width, height) != tuple(expect_size):
        raise CorruptImageError("image header declares %dx%d, expected %dx%d" % (width, height, *expect_size))
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise CorruptImageError("cannot decode %s image of %d bytes" % (image_format(data), len(data)))
    if image.shape[1] != width or image.shape[0] != height:
        # EXIF rotation swaps the axes; anything else means the header lied.
        if (image.shape[1], image.shape[0]) != (height, width):
            raise CorruptImageError(
                "decoded %dx%d, header said %dx%d" % (image.shape[1], image.shape[0], width, height)
            )
    return image


def read_image_file(path: Path, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """decode_image for a file (folder sources, cast photos): size and header checked first."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ImageTooLargeError("file is %d bytes, limit %d" % (size, limits.max_bytes))
    return decode_image(path.read_bytes(), limits)


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """Encode a BGR uint8 image as JPEG (for tests, benchmarks and debug snapshots)."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise CorruptImageError("cannot encode image of shape %s as JPEG" % (image.shape,))
    return buffer.tobytes()
