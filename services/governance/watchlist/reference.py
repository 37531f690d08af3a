"""The subject's reference image kept with a watchlist entry: shown beside the probe to the
reviewing officer. The force's own custody photo (the first enrolment image), downscaled to a
JPEG at most 160 px wide: enough to compare, too small to be reused as an enrolment photo."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.engine.face import decode_image
from services.engine.face.imageio import encode_jpeg

MAX_WIDTH = 160
MAX_HEIGHT = 640
JPEG_QUALITY = 85


@dataclass(frozen=True, eq=False)
class ReferenceImage:
    jpeg: bytes
    width: int
    height: int

    def to_data(self) -> dict:
        return {"media_type": "image/jpeg", "data": self.jpeg, "width": self.width, "height": self.height}

    @classmethod
    def from_data(cls, data: dict | None) -> ReferenceImage | None:
        if not data:
            return None
        return cls(bytes(data["data"]), int(data["width"]), int(data["height"]))


def downscale(image: np.ndarray) -> ReferenceImage:
    height, width = image.shape[:2]
    scale = min(1.0, MAX_WIDTH / width, MAX_HEIGHT / height)
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    return ReferenceImage(encode_jpeg(image, JPEG_QUALITY), image.shape[1], image.shape[0])


def reference_from_photo(photo: bytes) -> ReferenceImage:
    return downscale(decode_image(photo))
