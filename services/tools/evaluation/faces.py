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
from services.engine.face import FaceDetector, FaceEmbedder, align_face, decode_image
from services.engine.face.errors import ImageError
from services.engine.face.evaluate import nearest_to_centre
from services.engine.face.quality import QualityReport, assess_quality
from services.engine.face.refine import refine_landmarks
from services.governance.watchlist.enrol import EnrolmentRefused, Enroller

RECORD_VERSION = 1
BATCH = 32
OK, UNREADABLE, NO_FACE = "ok", "unreadable", "no_face"
#: Alignment options (`lfr eval --alignment`): "plain" is the product's; "antialias" pre-shrinks
#: large faces before the warp (align_face(antialias=True)); "redetect" refines the landmarks by
#: re-detecting on a crop around the face (services/engine/face/refine.py). Experiments, off by default.
ALIGNMENTS = ("plain", "antialias", "redetect", "redetect+antialias")


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

    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder, cache: Path | None = None, bar: Progress | None = None,
                 alignment: str = "plain") -> None:
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
        self.bar = bar  # counts images detected and embedded (services.common.progress)
        self.detector = detector
        self.embedder = embedder
        self.enroller = Enroller(detector, embedder)
        self.alignment = alignment
        # The plain key is unchanged, so caches made before the option existed stay valid.
        self.prefix = f"v{RECORD_VERSION}|{detector.identity}|{embedder.identity}|" + ("" if alignment == "plain" else f"{alignment}|")
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
        picked = []  # (image or None if unreadable, centre face or None if no face, enrolment's face or None, refusal)
        for image in images:
            if image is None:
                picked.append((None, None, None, None))
                continue
            found = next(detections)
            centre = nearest_to_centre(found, image.shape)
            if centre is None:
                picked.append((image, None, None, None))
                continue
            try:
                chosen, refusal = self.enroller.choose_face(found, "image"), None
            except EnrolmentRefused as refused:
                chosen, refusal = None, refused.reason
            picked.append((image, centre, chosen, refusal))
        # The quality gate always judges the detector's landmarks and the plain chip (as the live
        # path does); an alignment option changes only the chip that is embedded.
        embedded = self._refined(picked) if self.alignment.startswith("redetect") else picked
        antialias = self.alignment.endswith("antialias")
        staged = []  # (status, probe report, refusal, enrol report or None, enrolment embeds its own chip)
        chips = []
        for (image, centre, chosen, refusal), (_, e_centre, e_chosen, _) in zip(picked, embedded, strict=True):
            if image is None or centre is None:
                staged.append((UNREADABLE if image is None else NO_FACE, None, None, None, False))
                continue
            plain_chip = align_face(image, centre.landmarks)
            probe_report = assess_quality(centre, plain_chip)
            chips.append(plain_chip if self.alignment == "plain" else align_face(image, e_centre.landmarks, antialias=antialias))
            enrol_report, own_chip = (probe_report if chosen is not None else None), False
            if chosen is not None and chosen is not centre:
                plain_chip = align_face(image, chosen.landmarks)
                enrol_report, own_chip = assess_quality(chosen, plain_chip), True
                chips.append(plain_chip if self.alignment == "plain" else align_face(image, e_chosen.landmarks, antialias=antialias))
            staged.append((OK, probe_report, refusal, enrol_report, own_chip))
        vectors = iter(self.embedder.embed(np.stack(chips))) if chips else iter(())
        records = []
        for status, probe_report, refusal, enrol_report, own_chip in staged:
            if status != OK:
                records.append(FaceRecord(status))
                continue
            probe_vector = next(vectors)
            enrol_vector = None if enrol_report is None else next(vectors) if own_chip else probe_vector
            records.append(FaceRecord(OK, probe_report, probe_vector, refusal, enrol_report, enrol_vector))
        return records

    def _refined(self, picked: list) -> list:
        """The picked faces with re-detected landmarks (one detector batch for the chunk); the
        enrolment face stays the same object as the centre face when it was the same face."""
        items = [(image, face) for image, centre, chosen, _ in picked if centre is not None
                 for face in ([centre] if chosen is None or chosen is centre else [centre, chosen])]
        refined = iter(refine_landmarks(self.detector, items))
        out = []
        for image, centre, chosen, refusal in picked:
            if centre is None:
                out.append((image, centre, chosen, refusal))
                continue
            new_centre = next(refined)
            new_chosen = None if chosen is None else new_centre if chosen is centre else next(refined)
            out.append((image, new_centre, new_chosen, refusal))
        return out

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
