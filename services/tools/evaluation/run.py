"""Runs the evaluation through the product's own decisions: enrolment (Enroller.choose_face and
Enroller.judge: refuse only the unusable, flag the marginal), the live quality gate
(judge_quality with LIVE_BOUNDS), alignment and embedding, and the matcher's rule (a subject's
score is the best of its enrolled embeddings; the top candidate decides). Each image is
detected and embedded once (services/tools/evaluation/faces.py, optionally cached), and the search is
exact (services/tools/evaluation/gallery.py, checked against WatchlistIndex in the tests).
The result depends only on the data, the seed and the models: the same inputs give the same JSON.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from services.common.progress import Progress
from services.engine.face import LIVE_BOUNDS, EMBEDDING_DIM, FaceDetector, FaceEmbedder
from services.engine.face.evaluate import list_identities
from services.engine.face.quality import judge_quality
from services.governance.watchlist.enrol import NO_FACE, UNREADABLE_IMAGE, EnrolmentRefused, Enroller

from . import equity as eq
from .faces import OK, UNREADABLE, FaceRecord, FaceRecords, list_face_images
from .gallery import Gallery
from .metrics import MatedResult, fpir, fpir_by_threshold, summarise, tpir
from .protocol import plan

logger = logging.getLogger(__name__)

#: Watchlist sizes the filler scaling aims for (NPL scaled its filler set the same way).
FILLER_SIZES = (1000, 5000, 10000)
#: Fixed thresholds reported at each watchlist size.
SCALING_THRESHOLDS = (0.40, 0.45, 0.50, 0.52, 0.55, 0.60, 0.65)


def probe_vector(record: FaceRecord) -> tuple[np.ndarray | None, str | None]:
    """The live path's embedding of the image, or (None, failure-to-acquire reason)."""
    if record.status != OK:
        return None, record.status
    report = judge_quality(record.probe.face_width, record.probe.inter_ocular, record.probe.blur, record.probe.yaw,
                           record.probe.roll, record.probe.score, LIVE_BOUNDS)
    if not report.accepted:
        return None, "quality_" + str(report.reason)
    return record.probe_vector, None


def enrolment_vector(enroller: Enroller, record: FaceRecord, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """What Enroller.build would enrol from this image: (embedding, quality flags), or a refusal."""
    if record.status == UNREADABLE:
        raise EnrolmentRefused(UNREADABLE_IMAGE, name)
    if record.status != OK:
        raise EnrolmentRefused(NO_FACE, name)
    if record.enrol_refusal is not None:
        raise EnrolmentRefused(record.enrol_refusal, name)
    return record.enrol_vector, enroller.judge(record.enrol, name)


def _search(gallery: Gallery, vectors: list[np.ndarray | None]) -> list[tuple[str, float] | None]:
    acquired = [i for i, v in enumerate(vectors) if v is not None]
    tops: list[tuple[str, float] | None] = [None] * len(vectors)
    if acquired:
        for i, top in zip(acquired, gallery.top1_ids(np.stack([vectors[i] for i in acquired])), strict=True):
            tops[i] = top
    return tops


def _mated_results(names: list[str], tops: list) -> list[MatedResult]:
    return [MatedResult(top is not None, top is not None and top[0] == name, top[1] if top else float("-inf"))
            for name, top in zip(names, tops, strict=True)]


def _nonmated_scores(tops: list) -> np.ndarray:
    return np.array([top[1] if top else float("-inf") for top in tops], dtype=np.float64)


def default_operating_threshold(model_name: str) -> float | None:
    """The deployments layer's threshold floor from the model's calibration file, if any."""
    from services.governance.deployments.calibration import load, path_for

    path = path_for(model_name)
    return load(path).floor() if path.is_file() else None


def run_eval(
    data_dir: Path,
    seed: int = 7,
    limit: int | None = None,
    threads: int = 2,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
    bar: Progress | None = None,
    enrol_images: int = 1,
    fillers: Path | None = None,
    equity: Path | None = None,
    embedding_cache: Path | None = None,
    operating_threshold: float | None = None,
    alignment: str = "plain",
) -> dict:
    identities = list_identities(data_dir)
    if limit:
        identities = dict(list(identities.items())[:limit])
    protocol = plan(identities, seed, enrol_images)
    detector = FaceDetector(intra_op_threads=threads, cache_dir=cache_dir)
    embedder = FaceEmbedder(intra_op_threads=threads, cache_dir=cache_dir)
    records = FaceRecords(detector, embedder, embedding_cache, bar, alignment=alignment)
    enroller = records.enroller
    needed = [p for _, paths in protocol.enrolled for p in paths] + [p for _, p in protocol.mated] + protocol.nonmated
    faces = records.get(needed, progress)

    gallery = Gallery(EMBEDDING_DIM)
    refused: Counter = Counter()
    flagged: Counter = Counter()
    images_refused: Counter = Counter()
    enrolled: set[str] = set()
    for name, paths in protocol.enrolled:
        vectors, reasons = [], []
        for path in paths:
            try:
                vector, flags = enrolment_vector(enroller, faces[path], path.name)
            except EnrolmentRefused as refusal:
                reasons.append(refusal.reason)
                images_refused[refusal.reason] += 1
                continue
            vectors.append(vector)
            flagged.update(flags)
            flagged["images_flagged"] += bool(flags)
        if vectors:
            gallery.add(name, vectors)
            enrolled.add(name)
        else:
            refused[reasons[0]] += 1
    progress(f"enrolled {len(enrolled)} of {len(protocol.enrolled)} subjects ({sum(refused.values())} refused)")

    nonmated_fta: Counter = Counter()
    mated_vectors = [probe_vector(faces[path])[0] for _, path in protocol.mated]
    nonmated_vectors = []
    for path in protocol.nonmated:
        vector, reason = probe_vector(faces[path])
        nonmated_vectors.append(vector)
        if reason:
            nonmated_fta[reason] += 1
    mated_names = [name for name, _ in protocol.mated]
    mated_all = _mated_results(mated_names, _search(gallery, mated_vectors))
    # Enrolled-only (as before) drops the refused subjects' probes; end-to-end keeps them as misses.
    mated = [m for m, name in zip(mated_all, mated_names, strict=True) if name in enrolled]
    nonmated_scores = _nonmated_scores(_search(gallery, nonmated_vectors))
    mated_fta_enrolled = Counter()
    for name, path in protocol.mated:
        if name in enrolled:
            _, reason = probe_vector(faces[path])
            if reason:
                mated_fta_enrolled[reason] += 1
    fta_mated, fta_nonmated = sum(mated_fta_enrolled.values()), sum(nonmated_fta.values())
    total = len(mated) + len(nonmated_scores)
    result = {
        "model": str(embedder.identity),
        "detector": str(detector.identity),
        "dataset": data_dir.name,
        "seed": seed,
        "identities": len(identities),
        "enrol_images": enrol_images,
        "alignment": alignment,
        "template_rule": "max: a subject scores the best of its enrolled embeddings",
        "intended_subjects": len(protocol.enrolled),
        "watchlist_size": len(enrolled),
        "enrolment_refused": dict(sorted(refused.items())),
        "enrolment_images_refused": dict(sorted(images_refused.items())),
        "enrolment_flags": dict(sorted(flagged.items())),
        "mated": len(mated),
        "mated_end_to_end": len(mated_all),
        "nonmated": int(len(nonmated_scores)),
        "fta": round((fta_mated + fta_nonmated) / max(1, total), 6),
        "fta_counts": {"mated": dict(sorted(mated_fta_enrolled.items())), "nonmated": dict(sorted(nonmated_fta.items()))},
        **summarise(mated, nonmated_scores, mated_all),
    }
    if operating_threshold is None:
        operating_threshold = default_operating_threshold(embedder.identity.name)
    if operating_threshold is None:
        operating_threshold = next(p["threshold"] for p in result["points"] if p["fpir_target"] == 1e-3)
    result["operating_threshold"] = operating_threshold
    if fillers is not None:
        result["scaling"] = _scaling(records, enroller, gallery, fillers, seed, mated_names, mated_vectors, enrolled, nonmated_vectors, progress)
    if equity is not None:
        result["equity"] = _equity(records, enroller, gallery, equity, seed, operating_threshold, progress)
    return result


def _filler_vectors(records: FaceRecords, enroller: Enroller, paths: list[Path], progress) -> tuple[list[tuple[str, np.ndarray]], Counter]:
    """Single-image filler subjects (one per image), enrolled by the product's rule."""
    faces = records.get(paths, progress)
    usable, refused = [], Counter()
    for path in paths:
        try:
            vector, _ = enrolment_vector(enroller, faces[path], path.name)
        except EnrolmentRefused as refusal:
            refused[refusal.reason] += 1
            continue
        usable.append(("filler:" + str(path), vector))
    return usable, refused


def _scaling(records, enroller, base: Gallery, folder: Path, seed: int, mated_names, mated_vectors, enrolled, nonmated_vectors, progress) -> dict:
    """FPIR (and TPIR) as filler subjects grow the watchlist to FILLER_SIZES, or as far as the
    folder's faces go. Filler people must not appear among the non-mated probes."""
    paths = list_face_images(folder)
    random.Random(seed).shuffle(paths)
    faces = records.get(paths, progress)
    paths, duplicates = eq.without_duplicates(paths, [faces[p].probe_vector for p in paths])
    usable, refused = _filler_vectors(records, enroller, paths, progress)
    available = len(base) + len(usable)
    sizes = [s for s in FILLER_SIZES if len(base) < s <= available]
    if available not in sizes and (not sizes or available < FILLER_SIZES[-1]):
        sizes.append(available)
    entries = []
    for size in sizes:
        gallery = Gallery(base.dim)
        gallery.subjects, gallery._vectors, gallery._owners = list(base.subjects), list(base._vectors), list(base._owners)
        for subject, vector in usable[: size - len(base)]:
            gallery.add(subject, [vector])
        mated_all = _mated_results(mated_names, _search(gallery, mated_vectors))
        mated = [m for m, name in zip(mated_all, mated_names, strict=True) if name in enrolled]
        scores = _nonmated_scores(_search(gallery, nonmated_vectors))
        entries.append({
            "watchlist_size": len(gallery),
            "fillers": len(gallery) - len(base),
            "nonmated": int(len(scores)),
            "fixed": [{"threshold": t, "false_alarms": int(np.sum(scores >= t)), "fpir": round(fpir(scores, t), 8),
                       "tpir": round(tpir(mated, t), 6), "tpir_end_to_end": round(tpir(mated_all, t), 6)} for t in SCALING_THRESHOLDS],
            "fpir_by_threshold": fpir_by_threshold(scores),
        })
        progress(f"scaling: watchlist {len(gallery)} searched")
    return {
        "filler_folder": folder.name,
        "filler_images": len(paths),
        "duplicates_dropped": duplicates,
        "fillers_refused": dict(sorted(refused.items())),
        "fillers_usable": len(usable),
        "target_sizes": list(FILLER_SIZES),
        "reached": available >= FILLER_SIZES[-1],
        "sizes": entries,
    }


def _equity(records, enroller, base: Gallery, folder: Path, seed: int, operating: float, progress) -> dict:
    paths = [p for p in list_face_images(folder) if eq.labels_from_name(p) is not None]
    faces = records.get(paths, progress)
    paths, duplicates = eq.without_duplicates(paths, [faces[p].probe_vector for p in paths])

    def probes(chosen: list[Path]) -> tuple[list[np.ndarray], list[tuple[str, ...]], Counter]:
        vectors, labels, fta = [], [], Counter()
        for path in chosen:
            vector, reason = probe_vector(faces[path])
            if vector is None:
                fta[reason] += 1
                continue
            vectors.append(vector)
            labels.append(eq.labels_from_name(path))
        return vectors, labels, fta

    def scores(gallery: Gallery, vectors: list[np.ndarray]) -> np.ndarray:
        return gallery.top1(np.stack(vectors))[1] if vectors else np.zeros(0)

    all_vectors, all_labels, all_fta = probes(paths)
    lfw = eq.watchlist_report(scores(base, all_vectors), all_labels, operating, len(base))
    lfw["failed_to_acquire"] = dict(sorted(all_fta.items()))
    filler_paths, probe_paths = eq.balanced_split(paths, seed)
    usable, refused = _filler_vectors(records, enroller, filler_paths, progress)
    balanced_gallery = Gallery(base.dim)
    balanced_gallery.subjects, balanced_gallery._vectors, balanced_gallery._owners = list(base.subjects), list(base._vectors), list(base._owners)
    for subject, vector in usable:
        balanced_gallery.add(subject, [vector])
    half_vectors, half_labels, half_fta = probes(probe_paths)
    balanced = eq.watchlist_report(scores(balanced_gallery, half_vectors), half_labels, operating, len(balanced_gallery))
    balanced["failed_to_acquire"] = dict(sorted(half_fta.items()))
    balanced["fillers"] = len(usable)
    balanced["fillers_refused"] = dict(sorted(refused.items()))
    progress("equity: both watchlists searched")
    floors = [w["equitable_floor"] for w in (lfw, balanced)]
    return {
        "folder": folder.name,
        "images": len(paths),
        "duplicates_dropped": duplicates,
        "operating_threshold": operating,
        # The headline figures are the balanced watchlist's (the NPL used a balanced filler set).
        "groups": balanced["groups"],
        "max_over_min": balanced["max_over_min"],
        "significant_difference": balanced["significant_difference"] or lfw["significant_difference"],
        "equitable_floor": None if None in floors else max(floors),
        "watchlists": {"balanced": balanced, "lfw": lfw},
    }


def one_line(result: dict) -> str:
    points = "  ".join(f"FPIR={p['fpir_target']:g}: t={p['threshold']:.3f} TPIR={p['tpir']:.3f} (end-to-end {p['tpir_end_to_end']:.3f})"
                       for p in result["points"])
    return (
        f"eval {result['model']}: watchlist {result['watchlist_size']} of {result['intended_subjects']} "
        f"({sum(result['enrolment_refused'].values())} refused), {result['mated']} mated / {result['nonmated']} non-mated, "
        f"FTA {result['fta']:.3f}, rank-1 {result['rank1']:.3f}  {points}"
    )
