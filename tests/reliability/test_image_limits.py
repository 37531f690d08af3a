"""Pixel limits are checked from the image header before any decode, everywhere an image is decoded (issue #14).

Measured before the fix: a JPEG of 848 bytes declaring 3840x2160 was decoded and processed as a
640x480 camera's frame; an 8192x4880 face chip was decoded in full (embed RSS +275 MB) before
its size was checked; folder sources handed every file to cv2.imread unchecked.
"""

from __future__ import annotations

import struct
import time

import cv2
import numpy as np
import pytest

from services.common.errors import MessageError
from services.common.stage import Message
from services.engine.face import ImageLimits
from services.engine.face.imageio import encode_jpeg, image_size


def with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOF0) claiming another size."""
    pos = jpeg.index(b"\xff\xc0")
    return jpeg[: pos + 5] + struct.pack(">HH", height, width) + jpeg[pos + 9 :]


@pytest.fixture
def decodes(monkeypatch):
    """Counts OpenCV decodes (imdecode and imread) by the size the header declared."""
    seen: list[tuple[int, int] | str] = []
    real_imdecode, real_imread = cv2.imdecode, cv2.imread

    def imdecode(buffer, flags):
        try:
            seen.append(image_size(bytes(buffer)))
        except Exception:  # noqa: BLE001
            seen.append("unknown")
        return real_imdecode(buffer, flags)

    def imread(path, *args):
        seen.append(str(path))
        return real_imread(path, *args)

    monkeypatch.setattr(cv2, "imdecode", imdecode)
    monkeypatch.setattr(cv2, "imread", imread)
    return seen


def message(schema: str, data: dict) -> Message:
    return Message(schema=schema, data=data, topic="t", partition=0, offset=0, key=b"k", timestamp_ms=0, headers=())


def test_frame_whose_header_lies_about_its_size_is_rejected_before_decoding(decodes):
    from services.pipeline.detect.stage import DetectDeps, process

    liar = with_declared_size(encode_jpeg(np.full((48, 64, 3), 128, np.uint8)), 3840, 2160)
    assert len(liar) < 2000
    frame = {
        "camera_id": "cam-1", "deployment_id": "dep-1", "seq": 1, "captured_at_ms": int(time.time() * 1000),
        "width": 640, "height": 480, "media_type": "image/jpeg", "image": liar,
    }
    with pytest.raises(MessageError, match="3840x2160"):
        process([message("lfr.frames.v1", frame)], DetectDeps(detector=None, bounds=None, limits=ImageLimits()))
    assert decodes == []


def test_oversized_chip_is_rejected_from_its_header(decodes):
    from services.pipeline.embed.stage import EmbedDeps, process

    huge = with_declared_size(encode_jpeg(np.full((112, 112, 3), 90, np.uint8)), 8192, 4880)
    face = {"frame": {"captured_at_ms": int(time.time() * 1000)}, "chip": {"media_type": "image/jpeg", "data": huge}}
    with pytest.raises(MessageError, match="8192x4880"):
        process([message("lfr.faces.v1", face)], EmbedDeps(embedder=None))
    assert decodes == []


def test_folder_source_checks_the_header_before_decoding(tmp_path, decodes):
    from services.pipeline.ingest.sources import FolderSource

    good = encode_jpeg(np.full((48, 64, 3), 200, np.uint8))
    (tmp_path / "a_huge.jpg").write_bytes(with_declared_size(good, 9000, 9000))
    (tmp_path / "b_good.jpg").write_bytes(good)
    frame = FolderSource(tmp_path).read()
    assert frame is not None and frame.shape == (48, 64, 3)
    assert (9000, 9000) not in decodes and not any("a_huge" in str(d) for d in decodes)


def test_enrolment_photo_over_the_limit_is_refused_from_its_header(decodes, face_engine):
    from services.governance.watchlist.enrol import Enroller

    huge = with_declared_size(encode_jpeg(np.full((64, 64, 3), 90, np.uint8)), 9000, 9000)
    enroller = Enroller(*face_engine)
    with pytest.raises(Exception, match="9000x9000"):
        enroller.face_chip(huge, "photo.jpg")
    assert decodes == []


def test_privacy_audit_reports_an_image_declaring_a_huge_canvas_without_decoding_it(decodes):
    """Regression: the privacy audit's raw-bytes scan (services/governance/privacy/artefacts.py, added after
    #14's fix) handed every JPEG/PNG it found to cv2.imdecode unchecked."""
    from services.governance.privacy.artefacts import from_raw

    good = encode_jpeg(np.full((48, 64, 3), 200, np.uint8))
    huge = with_declared_size(good, 9000, 9000)
    found = from_raw(b"log line before " + huge + b" and after", "file.log")
    assert [a.kind for a in found] == ["image"]  # reported: the audit must not miss it
    assert (9000, 9000) not in decodes
    assert [a.kind for a in from_raw(b"x" + good, "ok.bin")] == ["image"] and (64, 48) in decodes
