"""Find biometric artefacts (images and embedding vectors) in any bytes, without trusting them.

Three readers, each exact about what it accepts:
- an OpenLFR envelope, parsed leniently (no schema validation, so a record the pipeline
  refused is read too): every blob under a key path containing ``embedding`` whose length is a
  multiple of 4 is a float32 little-endian vector, every other blob is an image (frame or chip);
- raw bytes: every JPEG (``FF D8 FF`` .. ``FF D9``) or PNG (signature .. ``IEND``) segment
  that OpenCV decodes as an image; runs of 100+ base64 characters are decoded and read again;
- text (logs): escaped image bytes (``\\xff\\xd8\\xff``) and JSON arrays of 64+ numbers with
  an L2 norm near 1 (a logged embedding).
Artefacts are identified by the SHA-256 of their bytes; vectors are also kept for similarity.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

_ENVELOPE = struct.Struct(">4sI")
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{100,}={0,2}")
_ESCAPED_IMAGE = re.compile(rb"\\x(?:ff|FF)\\x(?:d8|D8)\\x(?:ff|FF)|\\x89PNG")
_NUMBER_ARRAY = re.compile(rb"\[\s*-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?){63,}\s*\]")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_IMAGE_BYTES = 16 * 1024 * 1024
# The marker after SOI in real JPEGs (APPn, DQT, SOF0, DHT, COM): random bytes rarely pass.
_JPEG_FIRST_MARKERS = {bytes([b]) for b in (*range(0xE0, 0xF0), 0xDB, 0xC0, 0xC4, 0xFE)}


@dataclass(frozen=True)
class Artefact:
    kind: str  # "image", "embedding" or "escaped_image"
    sha256: str
    where: str = ""  # path inside the record (envelope key path) or byte offset
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unit_vector(data: bytes) -> np.ndarray | None:
    """A float32 little-endian vector if ``data`` is one of plausible size and unit norm."""
    if len(data) % 4 or not 64 <= len(data) // 4 <= 4096:
        return None
    vector = np.frombuffer(data, dtype="<f4").astype(np.float32)
    norm = float(np.linalg.norm(vector)) if np.all(np.isfinite(vector)) else 0.0
    return vector if 0.9 < norm < 1.1 else None


def envelope_blobs(value: bytes) -> Iterator[tuple[str, bytes]] | None:
    """(key path, blob) of every attachment of an envelope, or None if ``value`` is not one."""
    if len(value) < _ENVELOPE.size or value[:3] != b"LFR":
        return None
    _magic, length = _ENVELOPE.unpack_from(value)
    try:
        header = json.loads(value[_ENVELOPE.size : _ENVELOPE.size + length])
    except (UnicodeDecodeError, ValueError):
        return None
    blobs = memoryview(value)[_ENVELOPE.size + length :]

    def walk(node: object, path: str) -> Iterator[tuple[str, bytes]]:
        if isinstance(node, dict):
            ref = node.get("$bytes")
            if len(node) == 1 and isinstance(ref, list) and len(ref) == 2:
                offset, size = ref
                if isinstance(offset, int) and isinstance(size, int) and 0 <= offset and offset + size <= len(blobs):
                    yield path, bytes(blobs[offset : offset + size])
                return
            for key, item in node.items():
                yield from walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, f"{path}[{i}]")

    return walk(header, "") if isinstance(header, dict) else None


def _declares_too_many_pixels(segment: bytes) -> bool:
    """The header's dimensions are over the decoder's limits (read without decoding)."""
    from services.engine.face.errors import CorruptImageError  # noqa: PLC0415 - with the OpenCV reader
    from services.engine.face.imageio import DEFAULT_LIMITS, image_size  # noqa: PLC0415

    try:
        width, height = image_size(segment)
    except CorruptImageError:
        return False  # not a readable header: the decoder decides
    limits = DEFAULT_LIMITS
    return width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels


def _image_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    import cv2  # noqa: PLC0415 - only the raw-bytes reader needs OpenCV

    for start_marker, end_marker, tail in ((b"\xff\xd8\xff", b"\xff\xd9", 2), (_PNG_SIGNATURE, b"IEND", 8)):
        start = data.find(start_marker)
        while start >= 0:
            if start_marker[0] == 0xFF and data[start + 3 : start + 4] not in _JPEG_FIRST_MARKERS:
                start = data.find(start_marker, start + 1)
                continue
            end = data.find(end_marker, start + len(start_marker))
            # A JPEG may contain FF D9 inside an embedded thumbnail: try the first few end markers.
            tries = 0
            while 0 <= end and end - start <= _MAX_IMAGE_BYTES and tries < 4:
                tries += 1
                segment = data[start : end + tail]
                if _declares_too_many_pixels(segment):
                    # Never decoded (a few bytes can declare a canvas of gigabytes, #14), but an
                    # image all the same as far as the audit is concerned: reported, not missed.
                    yield start, segment
                    break
                image = cv2.imdecode(np.frombuffer(segment, np.uint8), cv2.IMREAD_UNCHANGED)
                if image is not None and image.size:
                    yield start, segment
                    break
                end = data.find(end_marker, end + 1)
            start = data.find(start_marker, start + 1)


def from_raw(data: bytes, where: str = "", depth: int = 0) -> list[Artefact]:
    """Artefacts in bytes of unknown format (files, log lines, undecodable record values)."""
    found: list[Artefact] = []
    blobs = envelope_blobs(data)
    if blobs is not None:
        return from_envelope_blobs(blobs, where)
    for offset, segment in _image_segments(data):
        found.append(Artefact("image", digest(segment), f"{where}@{offset}"))
    for match in _ESCAPED_IMAGE.finditer(data):
        found.append(Artefact("escaped_image", digest(match.group()), f"{where}@{match.start()}"))
    for match in _NUMBER_ARRAY.finditer(data):
        try:
            vector = np.asarray(json.loads(match.group()), dtype=np.float32)
        except ValueError:
            continue
        if 0.9 < float(np.linalg.norm(vector)) < 1.1:
            found.append(Artefact("embedding", digest(vector.astype("<f4").tobytes()), f"{where}@{match.start()}", vector))
    if depth < 2:
        for match in _BASE64_RUN.finditer(data):
            try:
                decoded = base64.b64decode(match.group(), validate=True)
            except (binascii.Error, ValueError):
                continue
            found.extend(from_raw(decoded, f"{where}@{match.start()}/base64", depth + 1))
            vector = unit_vector(decoded)
            if vector is not None:
                found.append(Artefact("embedding", digest(decoded), f"{where}@{match.start()}/base64", vector))
    return found


def from_envelope_blobs(blobs: Iterator[tuple[str, bytes]], where: str = "") -> list[Artefact]:
    found = []
    for path, blob in blobs:
        if not blob:
            continue
        location = f"{where}:{path}" if where else path
        if "embedding" in path:
            vector = unit_vector(blob)
            if vector is not None:
                found.append(Artefact("embedding", digest(blob), location, vector))
                continue
        found.append(Artefact("image", digest(blob), location))
    return found


def from_value(value: bytes | None, where: str = "") -> list[Artefact]:
    """Artefacts in one record value: an envelope's attachments, else whatever the raw reader finds."""
    if not value:
        return []
    return from_raw(value, where)
