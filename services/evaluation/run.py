"""Runs the evaluation through the product's own code: enrolment (with its quality bar), the
live quality gate, alignment, embedding and the matcher's batched index search (embedded Qdrant).
The result depends only on the data, the seed and the models: the same inputs give the same JSON.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient

from services.common.progress import Progress
from services.face import LIVE_BOUNDS, FaceDetector, FaceEmbedder, align_face, assess_quality, decode_image
from services.face.errors import ImageError
from services.face.evaluate import list_identities, nearest_to_centre
from services.watchlist.enrol import EnrolmentRefused, EnrolmentRequest, Enroller
from services.watchlist.index import WatchlistIndex

from .metrics import MatedResult, summarise
from .protocol import plan

logger = logging.getLogger(__name__)

DEPLOYMENT = "eval"
BATCH = 32
YEAR_MS = 365 * 86_400_000


def _no_tick(_n: int) -> None:
    pass


def _probe_chips(detector: FaceDetector, paths: list[Path], tick: Callable[[int], None] = _no_tick) -> tuple[list[np.ndarray | None], Counter]:
    """Aligned chip of the face nearest the centre of each image, or None (failure to acquire)."""
    chips: list[np.ndarray | None] = []
    reasons: Counter = Counter()
    for start in range(0, len(paths), BATCH):
        images = []
        for path in paths[start : start + BATCH]:
            try:
                images.append(decode_image(path.read_bytes()))
            except (OSError, ImageError):
                images.append(None)
        readable = [im for im in images if im is not None]
        tick(len(images))
        detections = iter(detector.detect_batch(readable)) if readable else iter(())
        for image in images:
            if image is None:
                reasons["unreadable"] += 1
                chips.append(None)
                continue
            face = nearest_to_centre(next(detections), image.shape)
            if face is None:
                reasons["no_face"] += 1
                chips.append(None)
                continue
            chip = align_face(image, face.landmarks)
            report = assess_quality(face, chip, LIVE_BOUNDS)
            if not report.accepted:
                reasons["quality_" + str(report.reason)] += 1
                chips.append(None)
                continue
            chips.append(chip)
    return chips, reasons


def _top_candidates(index: WatchlistIndex, embedder: FaceEmbedder, chips: list[np.ndarray | None], now_ms: int,
                    tick: Callable[[int], None] = _no_tick) -> list:
    """(subject, score) of the best candidate per probe; None where nothing was acquired."""
    acquired = [i for i, chip in enumerate(chips) if chip is not None]
    tops: list = [None] * len(chips)
    for start in range(0, len(acquired), BATCH):
        positions = acquired[start : start + BATCH]
        vectors = embedder.embed(np.stack([chips[i] for i in positions]))
        tick(len(positions))
        for position, candidates in zip(positions, index.search(vectors, [DEPLOYMENT] * len(positions), now_ms, limit=1), strict=True):
            tops[position] = (candidates[0].subject_id, candidates[0].score) if candidates else ("", float("-inf"))
    return tops


def run_eval(
    data_dir: Path,
    seed: int = 7,
    limit: int | None = None,
    threads: int = 2,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
    bar: Progress | None = None,
) -> dict:
    """``progress`` gets a line per phase; ``bar`` (services.common.progress) counts images."""
    identities = list_identities(data_dir)
    if limit:
        identities = dict(list(identities.items())[:limit])
    protocol = plan(identities, seed)
    detector = FaceDetector(intra_op_threads=threads, cache_dir=cache_dir)
    embedder = FaceEmbedder(intra_op_threads=threads, cache_dir=cache_dir)
    enroller = Enroller(detector, embedder)
    index = WatchlistIndex(QdrantClient(location=":memory:"), embedder.identity)
    index.ensure_collection()
    now = int(time.time() * 1000)

    tick = bar.update if bar is not None else _no_tick
    if bar is not None:
        # Upper bound: every enrolment, then each probe detected and (if acquired) embedded.
        bar.set_total(len(protocol.enrolled) + 2 * (len(protocol.mated) + len(protocol.nonmated)))
    refused: Counter = Counter()
    enrolled: set[str] = set()
    for name, path in protocol.enrolled:
        tick(1)
        request = EnrolmentRequest(
            subject_id=name, reference="EVAL-" + name, category="suspect", priority="amber", image_source="evaluation data set",
            image_captured_at_ms=0, legal_basis="evaluation", added_by="lfr eval", expires_at_ms=now + YEAR_MS,
            deployments=(DEPLOYMENT,), images=[path.read_bytes()], image_names=[path.name],
        )
        try:
            index.upsert(enroller.build(request, now))
            enrolled.add(name)
        except EnrolmentRefused as refusal:
            refused[refusal.reason] += 1
    progress(f"enrolled {len(enrolled)} of {len(protocol.enrolled)} subjects ({sum(refused.values())} refused)")

    mated_probes = [(name, path) for name, path in protocol.mated if name in enrolled]
    mated_chips, mated_fta = _probe_chips(detector, [path for _, path in mated_probes], tick)
    mated_tops = _top_candidates(index, embedder, mated_chips, now, tick)
    progress(f"searched {len(mated_probes)} mated probes")
    nonmated_chips, nonmated_fta = _probe_chips(detector, protocol.nonmated, tick)
    nonmated_tops = _top_candidates(index, embedder, nonmated_chips, now, tick)
    progress(f"searched {len(protocol.nonmated)} non-mated probes")
    if bar is not None:
        bar.set_total(bar.count)  # the bound counted an embedding for every probe, acquired or not

    mated = [
        MatedResult(acquired=top is not None, correct=top is not None and top[0] == name, score=top[1] if top else float("-inf"))
        for (name, _), top in zip(mated_probes, mated_tops, strict=True)
    ]
    nonmated_scores = np.array([top[1] if top else float("-inf") for top in nonmated_tops], dtype=np.float64)
    fta_mated, fta_nonmated = sum(mated_fta.values()), sum(nonmated_fta.values())
    total = len(mated) + len(nonmated_scores)
    return {
        "model": str(embedder.identity),
        "detector": str(detector.identity),
        "dataset": data_dir.name,
        "seed": seed,
        "identities": len(identities),
        "watchlist_size": len(enrolled),
        "enrolment_refused": dict(sorted(refused.items())),
        "mated": len(mated),
        "nonmated": int(len(nonmated_scores)),
        "fta": round((fta_mated + fta_nonmated) / max(1, total), 6),
        "fta_counts": {"mated": dict(sorted(mated_fta.items())), "nonmated": dict(sorted(nonmated_fta.items()))},
        **summarise(mated, nonmated_scores),
    }


def one_line(result: dict) -> str:
    points = "  ".join(f"FPIR={p['fpir_target']:g}: t={p['threshold']:.3f} TPIR={p['tpir']:.3f}" for p in result["points"])
    return (
        f"eval {result['model']}: watchlist {result['watchlist_size']}, {result['mated']} mated / {result['nonmated']} non-mated, "
        f"FTA {result['fta']:.3f}, rank-1 {result['rank1']:.3f}  {points}"
    )
