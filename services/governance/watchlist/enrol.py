"""Governed enrolment: an entry is built only from complete provenance and good photos.

Refusals name their reason and write nothing. A look-alike (a new subject scoring at or
above the category threshold against someone already listed) is allowed but flagged: it will
cause confusions at run time, so a human must know.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from services.engine.face import ENROLMENT_BOUNDS, LIVE_BOUNDS, Detection, FaceDetector, FaceEmbedder, QualityBounds, align_face, assess_quality, decode_image
from services.engine.face.errors import ImageError
from services.engine.face.quality import QualityReport

from .entry import CATEGORIES, PRIORITIES, EnrolledEmbedding, Provenance, WatchlistEntry
from .index import WatchlistIndex
from .reference import reference_from_photo
from .thresholds import Thresholds

SUBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

# Refusal reasons (stable, for audit records and scripts).
UNREADABLE_IMAGE = "unreadable_image"
NO_FACE = "no_face"
MULTIPLE_FACES = "multiple_faces"
LOW_QUALITY = "low_quality"
MISSING_PROVENANCE = "missing_provenance"
EXPIRED = "expiry_in_past"
INVALID_FIELD = "invalid_field"


#: Flags on an enrolled photo below the enrolment bar (one per failed check, stable names).
QUALITY_FLAGS = ("small_face", "eyes_close", "low_detector_score", "rolled", "turned", "blurred")


def quality_flags(report: QualityReport, bounds: QualityBounds = ENROLMENT_BOUNDS) -> tuple[str, ...]:
    failed = (
        report.face_width < bounds.min_face_width,
        report.inter_ocular < bounds.min_inter_ocular,
        report.score < bounds.min_score,
        abs(report.roll) > bounds.max_abs_roll,
        abs(report.yaw) > bounds.max_abs_yaw,
        report.blur < bounds.min_blur,
    )
    return tuple(flag for flag, fail in zip(QUALITY_FLAGS, failed, strict=True) if fail)


class EnrolmentRefused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class EnrolmentRequest:
    subject_id: str
    reference: str
    category: str
    priority: str
    image_source: str
    image_captured_at_ms: int | None
    legal_basis: str
    added_by: str
    expires_at_ms: int
    deployments: tuple[str, ...]
    images: Sequence[bytes] = field(repr=False, default=())
    image_names: Sequence[str] = ()


@dataclass(frozen=True)
class LookAlike:
    subject_id: str
    score: float
    threshold: float


@dataclass(frozen=True)
class EnrolmentResult:
    entry: WatchlistEntry
    lookalikes: tuple[LookAlike, ...]


class Enroller:
    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder, bounds: QualityBounds = ENROLMENT_BOUNDS) -> None:
        self.detector = detector
        self.embedder = embedder
        self.bounds = bounds

    def check_request(self, request: EnrolmentRequest, now_ms: int) -> None:
        """Everything but the photos; cheap, so it runs first."""
        if not SUBJECT_ID.match(request.subject_id):
            raise EnrolmentRefused(INVALID_FIELD, "subject id must be 1-128 of letters, digits and . _ : -")
        if not request.reference.strip():
            raise EnrolmentRefused(INVALID_FIELD, "a case or warrant reference is required")
        if request.category not in CATEGORIES:
            raise EnrolmentRefused(INVALID_FIELD, f"category must be one of {', '.join(CATEGORIES)}")
        if request.priority not in PRIORITIES:
            raise EnrolmentRefused(INVALID_FIELD, f"priority must be one of {', '.join(PRIORITIES)}")
        missing = [
            name
            for name, value in (
                ("image source", request.image_source),
                ("image capture date", request.image_captured_at_ms),
                ("legal basis", request.legal_basis),
                ("added by", request.added_by),
            )
            if value is None or (isinstance(value, str) and not value.strip())
        ]
        if missing:
            raise EnrolmentRefused(MISSING_PROVENANCE, "missing " + ", ".join(missing))
        if request.expires_at_ms <= now_ms:
            raise EnrolmentRefused(EXPIRED, "expiry time is in the past")
        if not request.deployments:
            raise EnrolmentRefused(INVALID_FIELD, "at least one deployment scope is required")
        if not request.images:
            raise EnrolmentRefused(NO_FACE, "no enrolment image given")

    def face_chip(self, image_bytes: bytes, name: str) -> np.ndarray:
        """The one usable face of a photo, aligned, or a refusal saying why not."""
        return self.examine(image_bytes, name)[0]

    def examine(self, image_bytes: bytes, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
        """(aligned chip, quality flags) of the photo's one usable face, or a refusal."""
        try:
            image = decode_image(image_bytes)
        except ImageError as exc:
            raise EnrolmentRefused(UNREADABLE_IMAGE, f"{name}: {exc}") from None
        face = self.choose_face(self.detector.detect(image), name)
        chip = align_face(image, face.landmarks)
        return chip, self.judge(assess_quality(face, chip, self.bounds), name)

    def choose_face(self, detections: Sequence[Detection], name: str) -> Detection:
        if not detections:
            raise EnrolmentRefused(NO_FACE, f"{name}: no face found")
        # Faces too small or too uncertain to enrol (background passers-by, detector ghosts on
        # a poor photo) do not make it ambiguous; a second enrollable face does.
        sizeable = [d for d in detections if d.width >= self.bounds.min_face_width and d.score >= self.bounds.min_score]
        if len(sizeable) > 1:
            raise EnrolmentRefused(MULTIPLE_FACES, f"{name}: {len(sizeable)} faces; enrolment needs exactly one")
        return sizeable[0] if sizeable else max(detections, key=lambda d: d.width)

    def judge(self, report: QualityReport, name: str) -> tuple[str, ...]:
        """Refuse only a face that cannot work: smaller or blurrier than the live gate accepts
        (a probe like it would never be searched). Anything else short of the enrolment bar is
        enrolled with one flag per failed check (QUALITY_FLAGS), shown to the authorising and
        reviewing officers: on lfw-dev such photos still match (README, accuracy section)."""
        live = LIVE_BOUNDS
        if report.face_width < live.min_face_width or report.inter_ocular < live.min_inter_ocular:
            raise EnrolmentRefused(LOW_QUALITY, f"{name}: face far below enrolment size ({report.face_width:.0f} px wide)")
        if report.blur < live.min_blur:
            raise EnrolmentRefused(LOW_QUALITY, f"{name}: too blurred to match (sharpness {report.blur:.0f})")
        return quality_flags(report, self.bounds)

    def build(self, request: EnrolmentRequest, now_ms: int) -> WatchlistEntry:
        self.check_request(request, now_ms)
        names = list(request.image_names) or [f"image {i + 1}" for i in range(len(request.images))]
        examined = [self.examine(data, name) for data, name in zip(request.images, names, strict=True)]
        vectors = self.embedder.embed(np.stack([chip for chip, _ in examined]))
        model = self.embedder.identity
        return WatchlistEntry(
            subject_id=request.subject_id,
            reference=request.reference.strip(),
            category=request.category,
            priority=request.priority,
            provenance=Provenance(request.image_source, int(request.image_captured_at_ms or 0), request.legal_basis, request.added_by, now_ms),
            expires_at_ms=request.expires_at_ms,
            deployments=tuple(request.deployments),
            embeddings=tuple(EnrolledEmbedding(model, v, flags) for v, (_, flags) in zip(vectors, examined, strict=True)),
            reference_image=reference_from_photo(request.images[0]),  # decodable: examine read it
        )

    @staticmethod
    def lookalikes(entry: WatchlistEntry, index: WatchlistIndex, thresholds: Thresholds, now_ms: int) -> tuple[LookAlike, ...]:
        """Other listed subjects that any of the entry's photos scores at or above threshold against."""
        vectors = np.stack(entry.vectors_for(index.model))
        found: dict[str, LookAlike] = {}
        for candidates in index.search(vectors, [None] * len(vectors), now_ms, limit=5, exclude=[entry.subject_id]):
            for c in candidates:
                threshold = min(thresholds.for_category(c.category), thresholds.for_category(entry.category))
                if c.score >= threshold and (c.subject_id not in found or found[c.subject_id].score < c.score):
                    found[c.subject_id] = LookAlike(c.subject_id, round(c.score, 4), threshold)
        return tuple(sorted(found.values(), key=lambda x: -x.score))
