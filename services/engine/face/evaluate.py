"""Verification accuracy on an LFW-layout folder, to choose and document defaults.

Run ``python -m services.engine.face.evaluate --data-dir DIR`` to reproduce the figures in
services/engine/face/README.md. It embeds every image once (detection nearest the centre, aligned,
with and without flip augmentation) and scores fixed, seeded samples of same-identity and
different-identity pairs. Nothing here is used on the live path; the data set is read in place
and never copied.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from services.engine.face.align import align_face
from services.engine.face.detector import Detection, FaceDetector
from services.engine.face.embedder import FaceEmbedder, l2_normalize
from services.engine.face.errors import ImageError
from services.engine.face.imageio import read_image_file

logger = logging.getLogger(__name__)


def list_identities(data_dir: Path) -> dict[str, list[Path]]:
    """Identity name -> sorted image paths (LFW layout: one folder per identity)."""
    identities: dict[str, list[Path]] = {}
    for folder in sorted(p for p in Path(data_dir).iterdir() if p.is_dir()):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if images:
            identities[folder.name] = images
    return identities


def sample_pairs(
    identities: dict[str, list[Path]], n_same: int, n_diff: int, seed: int = 0
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """Deterministic same-identity and different-identity image pairs, without repeats.

    Identities are drawn uniformly (then images within them), as in the LFW protocol, so the
    few people with hundreds of photos do not dominate the sample.
    """
    rng = random.Random(seed)
    multi = sorted(name for name, images in identities.items() if len(images) >= 2)
    available = sum(len(identities[n]) * (len(identities[n]) - 1) // 2 for n in multi)
    same_set: set[tuple[Path, Path]] = set()
    while len(same_set) < min(n_same, available):
        a, b = rng.sample(identities[rng.choice(multi)], 2)
        same_set.add((min(a, b), max(a, b)))
    names = sorted(identities)
    diff_set: set[tuple[Path, Path]] = set()
    while len(diff_set) < n_diff:
        a, b = rng.sample(names, 2)
        x, y = rng.choice(identities[a]), rng.choice(identities[b])
        diff_set.add((min(x, y), max(x, y)))
    return sorted(same_set), sorted(diff_set)


def nearest_to_centre(detections: list[Detection], shape: tuple[int, ...]) -> Detection | None:
    """The detection whose box centre is closest to the image centre (LFW's labelled face)."""
    if not detections:
        return None
    cy, cx = shape[0] / 2.0, shape[1] / 2.0
    return min(detections, key=lambda d: (d.center[0] - cx) ** 2 + (d.center[1] - cy) ** 2)


@dataclass(frozen=True)
class VerificationMetrics:
    n_same: int
    n_diff: int
    mean_same: float
    mean_diff: float
    gap: float
    best_accuracy: float  # balanced: (TAR + TRR) / 2 at the best threshold
    best_threshold: float
    eer: float
    tar_at_far_1e2: float
    tar_at_far_1e3: float
    tar_at_far_1e4: float


def verification_metrics(same: np.ndarray, diff: np.ndarray) -> VerificationMetrics:
    """Gap of means, best balanced accuracy, equal error rate and TAR at fixed FARs.

    A TAR at a FAR below 1/len(diff) cannot be measured and is reported as NaN.
    """
    same = np.sort(np.asarray(same, dtype=np.float64))
    diff = np.sort(np.asarray(diff, dtype=np.float64))
    thresholds = np.concatenate([same, diff])
    tar = 1.0 - np.searchsorted(same, thresholds, side="left") / len(same)  # same >= t
    far = 1.0 - np.searchsorted(diff, thresholds, side="left") / len(diff)  # diff >= t
    balanced = (tar + (1.0 - far)) / 2.0
    best = int(np.argmax(balanced))
    eer_index = int(np.argmin(np.abs((1.0 - tar) - far)))

    def tar_at(target: float) -> float:
        allowed = int(np.floor(target * len(diff)))
        if allowed < 1:
            return float("nan")
        # Threshold just above the (allowed+1)-th highest impostor score.
        t = diff[len(diff) - allowed - 1]
        return float(np.mean(same > t))

    return VerificationMetrics(
        n_same=len(same),
        n_diff=len(diff),
        mean_same=float(same.mean()),
        mean_diff=float(diff.mean()),
        gap=float(same.mean() - diff.mean()),
        best_accuracy=float(balanced[best]),
        best_threshold=float(thresholds[best]),
        eer=float(((1.0 - tar[eer_index]) + far[eer_index]) / 2.0),
        tar_at_far_1e2=tar_at(1e-2),
        tar_at_far_1e3=tar_at(1e-3),
        tar_at_far_1e4=tar_at(1e-4),
    )


def embed_images(
    paths: list[Path],
    detector: FaceDetector,
    embedder: FaceEmbedder,
    cache_file: Path | None = None,
) -> tuple[dict[Path, int], np.ndarray, np.ndarray]:
    """Plain and mirrored-chip embeddings (no flip averaging) of the labelled face per image.

    ``cache_file`` (an .npz outside the repository) keeps them between runs; entries are only
    reused when made by the same model.
    """
    cached: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if cache_file is not None and cache_file.is_file():
        data = np.load(cache_file, allow_pickle=False)
        if str(data["model"]) == str(embedder.identity):
            cached = {k: (p, m) for k, p, m in zip(data["keys"], data["plain"], data["mirror"])}
    todo, chips = [], []
    for path in paths:
        if str(path) in cached:
            continue
        try:
            image = read_image_file(path)  # header and pixel limits checked before decoding
        except (ImageError, OSError):
            image = None
        face = nearest_to_centre(detector.detect(image), image.shape) if image is not None else None
        if face is None:
            logger.warning("no face in %s", path.name)
            continue
        todo.append(path)
        chips.append(align_face(image, face.landmarks))
    if chips:
        stack = np.stack(chips)
        plain = embedder.embed(stack)
        mirror = embedder.embed(np.ascontiguousarray(stack[:, :, ::-1, :]))
        for i, path in enumerate(todo):
            cached[str(path)] = (plain[i], mirror[i])
        if cache_file is not None:
            keys = sorted(cached)
            np.savez(cache_file, model=str(embedder.identity), keys=np.array(keys),
                     plain=np.stack([cached[k][0] for k in keys]), mirror=np.stack([cached[k][1] for k in keys]))
    index, plain_rows, mirror_rows = {}, [], []
    for path in paths:
        if str(path) in cached:
            index[path] = len(plain_rows)
            plain_rows.append(cached[str(path)][0])
            mirror_rows.append(cached[str(path)][1])
    return index, np.stack(plain_rows), np.stack(mirror_rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--same", type=int, default=3000)
    parser.add_argument("--diff", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write the metrics as JSON")
    parser.add_argument("--embedding-cache", type=Path, default=None, help=".npz to reuse embeddings between runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    identities = list_identities(args.data_dir)
    same_pairs, diff_pairs = sample_pairs(identities, args.same, args.diff, args.seed)
    needed = sorted({p for pair in same_pairs + diff_pairs for p in pair})
    detector = FaceDetector(intra_op_threads=args.threads)
    plain = FaceEmbedder(flip_augment=False, intra_op_threads=args.threads)

    started = time.perf_counter()
    index, plain_vecs, mirror_vecs = embed_images(needed, detector, plain, args.embedding_cache)
    missed = len(needed) - len(index)
    flip_vecs = l2_normalize(plain_vecs + mirror_vecs)
    elapsed = time.perf_counter() - started

    def scores(vecs: np.ndarray, pairs: list[tuple[Path, Path]]) -> np.ndarray:
        kept = [(index[a], index[b]) for a, b in pairs if a in index and b in index]
        ia, ib = np.array(kept).T
        return np.einsum("ij,ij->i", vecs[ia], vecs[ib])

    result = {
        "data_dir": str(args.data_dir),
        "images": len(needed),
        "no_face": missed,
        "model": str(plain.identity),
        "seed": args.seed,
        "seconds": round(elapsed, 1),
        "no_flip": asdict(verification_metrics(scores(plain_vecs, same_pairs), scores(plain_vecs, diff_pairs))),
        "flip": asdict(verification_metrics(scores(flip_vecs, same_pairs), scores(flip_vecs, diff_pairs))),
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
