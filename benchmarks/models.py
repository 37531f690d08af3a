"""Model inference benchmark: YuNet detection and SFace embedding latency on this CPU.

    python benchmarks/models.py [--out FILE] [--smoke] [--data-dir DIR] [--cache-dir DIR]

Writes JSON (default benchmarks/results/models.json) with detection ms per frame at 640x640
and 1280x720 input and embedding ms per chip at batch 1, 8 and 32, each with 1 and 2
intra-op threads, plus the machine. Frames are synthetic scenes made of LFW faces pasted on a
textured background when the data set is present (read in place, never written anywhere),
else random noise (the JSON says which). Each figure is the median over repeats after warm-up.
``--smoke`` uses tiny repeat counts so a test can run it in seconds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from services.common.progress import Progress  # noqa: E402
from services.face.align import align_face  # noqa: E402
from services.face.detector import FaceDetector  # noqa: E402
from services.face.embedder import FaceEmbedder  # noqa: E402
from services.face.evaluate import nearest_to_centre  # noqa: E402

logger = logging.getLogger("benchmarks.models")

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "models.json"
FRAME_SIZES = ((640, 640), (1280, 720))
BATCHES = (1, 8, 32)
THREADS = (1, 2)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def default_data_dir() -> Path | None:
    configured = os.environ.get("LFR_DATA_DIR")
    path = Path(configured) if configured else ROOT.parent / "shared" / "datasets" / "lfw-dev"
    return path if path.is_dir() else None


def lfw_sample(data_dir: Path, count: int, seed: int = 0) -> list[Path]:
    paths = sorted(data_dir.glob("*/*.jpg"))
    return random.Random(seed).sample(paths, min(count, len(paths)))


def background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth gradient plus mild noise: a plausible, face-free scene."""
    xs = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
    ys = np.linspace(0, 50, height, dtype=np.float32)[:, None, None]
    base = np.broadcast_to(xs + ys, (height, width, 3)).copy()
    base += rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    return np.clip(base, 0, 255).astype(np.uint8)


def composite_frame(width: int, height: int, faces: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Paste LFW images (scaled to 0.4-1.0) at random non-overlapping-ish spots."""
    frame = background(width, height, rng)
    for face in faces:
        scale = float(rng.uniform(0.4, 1.0))
        side = max(32, int(round(min(face.shape[:2]) * scale)))
        side = min(side, width, height)
        patch = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        x = int(rng.integers(0, width - side + 1))
        y = int(rng.integers(0, height - side + 1))
        frame[y : y + side, x : x + side] = patch
    return frame


def median_ms(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(1234)
    data_dir = None if args.no_data else (args.data_dir or default_data_dir())
    if args.smoke:  # seconds, for tests: the numbers are not meaningful
        det_warmup, det_repeats = 1, 1
        emb_warmup, emb_repeats = {1: 1, 8: 0, 32: 0}, {1: 1, 8: 1, 32: 1}
        n_faces = 12
    else:
        det_warmup, det_repeats = 3, 30
        emb_warmup, emb_repeats = {1: 3, 8: 2, 32: 1}, {1: 60, 8: 20, 32: 8}
        n_faces = 40

    faces: list[np.ndarray] = []
    if data_dir is not None:
        faces = [cv2.imread(str(p)) for p in lfw_sample(data_dir, n_faces)]
        faces = [f for f in faces if f is not None]
    if faces:
        source = "lfw-composite"
        frames = {
            size: composite_frame(size[0], size[1], faces[i * 4 : i * 4 + 4], rng)
            for i, size in enumerate(FRAME_SIZES)  # 4 faces per frame, different ones
        }
    else:
        source = "random-noise"
        frames = {size: rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) for size in FRAME_SIZES}

    results: dict = {
        "benchmark": "models",
        "smoke": bool(args.smoke),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "input": {
            "source": source,
            "note": (
                "synthetic frames: LFW faces (scaled 0.4-1.0) pasted on a textured background"
                if source == "lfw-composite"
                else "random noise frames and chips: the face data set was not found"
            ),
        },
        "settings": {
            "detection": {"warmup": det_warmup, "repeats": det_repeats, "measures": "FaceDetector.detect end to end"},
            "embedding": {"warmup": emb_warmup, "repeats": emb_repeats, "flip_augment": False,
                          "measures": "FaceEmbedder.embed on aligned BGR chips, model cost without flip"},
            "statistic": "median",
        },
        "detection": [],
        "embedding": [],
    }

    chips = None
    bar = Progress("models benchmark", total=len(THREADS) * (len(frames) + len(BATCHES)), unit="config")
    for threads in THREADS:
        detector = FaceDetector(intra_op_threads=threads, cache_dir=args.cache_dir)
        results["models"] = {"detector": str(detector.identity)}
        for (width, height), frame in frames.items():
            ms = median_ms(lambda: detector.detect(frame), det_warmup, det_repeats)
            results["detection"].append({
                "width": width, "height": height, "threads": threads,
                "ms_per_frame": round(ms, 2), "faces_found": len(detector.detect(frame)),
            })
            bar.update()
        if chips is None:
            chips = _chips(detector, faces, rng)

        embedder = FaceEmbedder(flip_augment=False, intra_op_threads=threads, max_batch=max(BATCHES),
                                cache_dir=args.cache_dir)
        results["models"]["embedder"] = str(embedder.identity)
        for batch in BATCHES:
            part = chips[:batch]
            ms = median_ms(lambda: embedder.embed(part), emb_warmup[batch], emb_repeats[batch])
            results["embedding"].append({
                "batch": batch, "threads": threads,
                "ms_per_batch": round(ms, 2), "ms_per_chip": round(ms / batch, 2),
            })
            bar.update()
    bar.close()
    return results


def _chips(detector: FaceDetector, faces: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """32 aligned chips from LFW faces (repeated if needed), else noise chips."""
    chips = []
    for image in faces:
        face = nearest_to_centre(detector.detect(image), image.shape)
        if face is not None:
            chips.append(align_face(image, face.landmarks))
    if not chips:
        return rng.integers(0, 256, (max(BATCHES), 112, 112, 3), dtype=np.uint8)
    while len(chips) < max(BATCHES):
        chips.extend(chips[: max(BATCHES) - len(chips)])
    return np.stack(chips[: max(BATCHES)])


def summary(results: dict) -> str:
    det = " ".join(
        "%dx%d/%dt=%.1fms" % (r["width"], r["height"], r["threads"], r["ms_per_frame"]) for r in results["detection"]
    )
    emb = " ".join("b%d/%dt=%.2fms" % (r["batch"], r["threads"], r["ms_per_chip"]) for r in results["embedding"])
    return "models benchmark (%s%s): detect %s | embed per chip %s" % (
        results["input"]["source"], ", smoke" if results["smoke"] else "", det, emb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="YuNet/SFace inference latency benchmark")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="tiny repeat counts, for tests")
    parser.add_argument("--data-dir", type=Path, default=None, help="LFW-layout folder (default: LFR_DATA_DIR or ../shared/datasets/lfw-dev)")
    parser.add_argument("--no-data", action="store_true", help="use random noise frames even if the data set exists")
    parser.add_argument("--cache-dir", type=Path, default=None, help="converted-model cache (default: LFR_MODEL_CACHE_DIR, XDG cache)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
