"""Decoding frames from bytes, with distinct errors."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from services.engine.face.errors import CorruptImageError, EmptyImageError, FaceEngineError, ImageTooLargeError
from services.engine.face.imageio import ImageLimits, decode_image, encode_jpeg, image_size


def test_decodes_jpeg_like_opencv(lfw_paths) -> None:
    data = lfw_paths[0].read_bytes()
    image = decode_image(data)
    assert image.dtype == np.uint8 and image.shape == (250, 250, 3)
    assert np.array_equal(image, cv2.imread(str(lfw_paths[0])))
    assert image_size(data) == (250, 250)


def test_decodes_png_and_grey() -> None:
    frame = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", frame)
    assert ok and np.array_equal(decode_image(png.tobytes()), frame)
    ok, grey = cv2.imencode(".png", frame[:, :, 0])
    assert decode_image(grey.tobytes()).shape == (37, 53, 3)
    assert decode_image(encode_jpeg(frame)).shape == (37, 53, 3)


def test_empty_input() -> None:
    with pytest.raises(EmptyImageError):
        decode_image(b"")


@pytest.mark.parametrize("data", [b"not an image at all", b"\xff\xd8\xff" + b"\x00" * 40, b"GIF89a" + b"\x00" * 20])
def test_corrupt_input(data: bytes) -> None:
    with pytest.raises(CorruptImageError):
        decode_image(data)


def test_truncated_jpeg_is_corrupt(lfw_paths) -> None:
    data = lfw_paths[0].read_bytes()
    with pytest.raises(CorruptImageError):
        decode_image(data[: len(data) // 2])


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_oversized_images_are_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError):
        decode_image(_png_header(100_000, 100_000) + b"\x00" * 64)
    frame = np.zeros((64, 64, 3), np.uint8)
    data = encode_jpeg(frame)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, ImageLimits(max_width=32))
    with pytest.raises(ImageTooLargeError):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))


def test_errors_are_distinct() -> None:
    kinds = (EmptyImageError, CorruptImageError, ImageTooLargeError)
    for kind in kinds:
        assert issubclass(kind, FaceEngineError)
        assert not any(issubclass(kind, other) for other in kinds if other is not kind)
