"""One detection and embedding pass per image, cached outside the repository.

Every analysis of `lfr eval` (end-to-end figures, filler scaling, equitability, templates) reads
the same per-image record, so a full run embeds each image once and re-runs cost seconds. A
record keeps the quality *measures* (not the decision) of two faces: the one the live path
would search with (nearest the centre, the labelled face) and the one enrolment would choose
(Enroller.choose_face), so the gates are re-judged from the record with the product's own
decision functions (judge_quality, Enroller.judge). Records are keyed by image path, file size
and mtime, detector and embedder identity and RECORD_VERSION; the cache is a SQLite file the
caller names (never inside the repository: it holds embeddings of the data set's faces).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.progress import Progress
from services.face import FaceDetector, FaceEmbedder, align_face, decode_image
from services.face.errors import ImageError
from services.face.evaluate import nearest_to_centre
from services.face.quality import QualityReport, assess_quality
from services.watchlist.enrol import EnrolmentRefused, Enroller

RECORD_VERSION = 1
BATCH = 32
OK, UNREADABLE, NO_FACE = "ok", "unreadable", "no_face"


@dataclass(frozen=True, eq=False)
class FaceRecord:
    status: str  # OK, UNREADABLE or NO_FACE
    probe: QualityReport | None = None  # face nearest the centre, measured (decision re-made later)
    probe_vector: np.ndarray | None = None
    enrol_refusal: str | None = None  # Enroller.choose_face's reason (no face, several faces)
    enrol: QualityReport | None = None  # the face enrolment would use
    enrol_vector: np.ndarray | None = None


def _measures(report: QualityReport) -> list[float]:
    return [report.face_width, report.inter_ocular, report.blur, report.yaw, report.roll, report.score]


def _report(values: list[float]) -> QualityReport:
    width, iod, blur, yaw, roll, score = values
    return QualityReport(width, iod, blur, yaw, roll, score, accepted=True, reason=None)


class FaceRecords:
    """Records for image paths, computed in batches and cached in SQLite when a path is given."""

    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder, cache: Path | None = None, bar: Progress | None = None) -> None:
        self.bar = bar  # counts images detected and embedded (services.common.progress)
        self.detector = detector
        self.embedder = embedder
        self.enroller = Enroller(detector, embedder)
        self.prefix = f"v{RECORD_VERSION}|{detector.identity}|{embedder.identity}|"
        self.db = None
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(cache))
            self.db.execute("CREATE TABLE IF NOT EXISTS record (key TEXT PRIMARY KEY, meta TEXT, probe BLOB, enrol BLOB)")
        self.memory: dict[str, FaceRecord] = {}

    def _key(self, path: Path) -> str:
        stat = path.stat()
        return f"{self.prefix}{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}"

    def get(self, paths: list[Path], progress: Callable[[str], None] = lambda _m: None) -> dict[Path, FaceRecord]:
        out: dict[Path, FaceRecord] = {}
        todo: list[tuple[Path, str]] = []
        for path in dict.fromkeys(paths):
            key = self._key(path)
            record = self.memory.get(key) or self._load(key)
            if record is None:
                todo.append((path, key))
            else:
                out[path] = self.memory.setdefault(key, record)
        for start in range(0, len(todo), BATCH):
            chunk = todo[start : start + BATCH]
            for (path, key), record in zip(chunk, self._compute([p for p, _ in chunk]), strict=True):
                self.memory[key] = out[path] = record
                self._store(key, record)
            if self.bar is not None:
                self.bar.update(len(chunk))
            if self.db is not None:
                self.db.commit()
            if (start // BATCH) % 10 == 9 or start + BATCH >= len(todo):
                progress(f"embedded {min(start + BATCH, len(todo))} of {len(todo)} new images")
        return out

    def _compute(self, paths: list[Path]) -> list[FaceRecord]:
        images = []
        for path in paths:
            try:
                images.append(decode_image(path.read_bytes()))
            except (OSError, ImageError):
                images.append(None)
        readable = [im for im in images if im is not None]
        detections = iter(self.detector.detect_batch(readable)) if readable else iter(())
        staged = []  # (status, probe face, enrol face or refusal, image)
        chips = []
        for image in images:
            if image is None:
                staged.append((UNREADABLE, None, None, None, None))
                continue
            found = next(detections)
            centre = nearest_to_centre(found, image.shape)
            if centre is None:
                staged.append((NO_FACE, None, None, None, None))
                continue
            try:
                chosen, refusal = self.enroller.choose_face(found, "image"), None
            except EnrolmentRefused as refused:
                chosen, refusal = None, refused.reason
            centre_chip = align_face(image, centre.landmarks)
            chips.append(centre_chip)
            enrol_chip = None
            if chosen is not None and chosen is not centre:
                enrol_chip = align_face(image, chosen.landmarks)
                chips.append(enrol_chip)
            staged.append((OK, (centre, centre_chip), refusal, (chosen, enrol_chip) if chosen is not None else None, image))
        vectors = iter(self.embedder.embed(np.stack(chips))) if chips else iter(())
        records = []
        for status, probe, refusal, enrol, _image in staged:
            if status != OK:
                records.append(FaceRecord(status))
                continue
            probe_report = assess_quality(probe[0], probe[1])
            probe_vector = next(vectors)
            enrol_report = enrol_vector = None
            if enrol is not None:
                if enrol[1] is None:  # enrolment chose the centre face
                    enrol_report, enrol_vector = probe_report, probe_vector
                else:
                    enrol_report, enrol_vector = assess_quality(enrol[0], enrol[1]), next(vectors)
            records.append(FaceRecord(OK, probe_report, probe_vector, refusal, enrol_report, enrol_vector))
        return records

    def _store(self, key: str, record: FaceRecord) -> None:
        if self.db is None:
            return
        meta = {"status": record.status, "enrol_refusal": record.enrol_refusal,
                "probe": _measures(record.probe) if record.probe else None, "enrol": _measures(record.enrol) if record.enrol else None}
        blob = (lambda v: None if v is None else np.asarray(v, dtype="<f4").tobytes())
        self.db.execute("INSERT OR REPLACE INTO record VALUES (?, ?, ?, ?)", (key, json.dumps(meta), blob(record.probe_vector), blob(record.enrol_vector)))

    def _load(self, key: str) -> FaceRecord | None:
        if self.db is None:
            return None
        row = self.db.execute("SELECT meta, probe, enrol FROM record WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        meta = json.loads(row[0])
        vec = (lambda b: None if b is None else np.frombuffer(b, dtype="<f4").astype(np.float32))
        return FaceRecord(meta["status"], _report(meta["probe"]) if meta["probe"] else None, vec(row[1]), meta["enrol_refusal"],
                          _report(meta["enrol"]) if meta["enrol"] else None, vec(row[2]))


def list_face_images(folder: Path) -> list[Path]:
    """Every image under ``folder`` (recursively), sorted: a filler or equity folder."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))
