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
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from services.common.progress import Progress  # noqa: E402
from services.engine.face.align import align_face  # noqa: E402
from services.engine.face.convert import convert_model  # noqa: E402
from services.engine.face.detector import FaceDetector  # noqa: E402
from services.engine.face.embedder import FaceEmbedder  # noqa: E402
from services.engine.face.evaluate import nearest_to_centre  # noqa: E402
from services.engine.face.models import SFACE, YUNET, locate_model, prepare_model  # noqa: E402
from services.engine.face.session import create_session  # noqa: E402

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
    results["conversion"] = conversion_comparison(chips, args)
    return results


def _bench_session(path: Path) -> ort.InferenceSession:
    return create_session(path, intra_op_threads=1)


def profile_by_op(path: Path, blob: np.ndarray, runs: int) -> dict[str, float]:
    """Share of kernel time per operator type (onnxruntime's profiler, 1 thread)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(runs):
            session.run(None, {name: blob})
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"]
    whole = sum(totals.values()) or 1.0
    return {op: round(100.0 * us / whole, 1) for op, us in sorted(totals.items(), key=lambda kv: -kv[1])}


def interleaved_median_ms(sessions: dict[str, ort.InferenceSession], blob: np.ndarray, warmup: int, repeats: int) -> dict[str, float]:
    """Median ms per call of each session, alternating calls so load changes hit both alike."""
    samples: dict[str, list[float]] = {key: [] for key in sessions}
    for round_ in range(warmup + repeats):
        for key, session in sessions.items():
            name = session.get_inputs()[0].name
            start = time.perf_counter()
            session.run(None, {name: blob})
            if round_ >= warmup:
                samples[key].append((time.perf_counter() - start) * 1000.0)
    return {key: statistics.median(values) for key, values in samples.items()}


def conversion_comparison(chips: np.ndarray, args: argparse.Namespace) -> dict:
    """SFace as converted before the PRelu rewrite (baseline) against today's conversion.

    Same process, same chips, interleaved calls, 1 intra-op thread; also checks that both give
    bit-identical embeddings and records where each spends its time. YuNet's conversion did not
    change (no PRelu): only its profile is recorded.
    """
    warmup, repeats, profile_runs = (1, 2, 2) if args.smoke else (10, 80, 40)
    out: dict = {"threads": 1, "repeats": repeats, "statistic": "median, interleaved calls"}
    with tempfile.TemporaryDirectory() as tmp:
        baseline_model, _ = convert_model(onnx.load(str(locate_model(SFACE))), rewrite_prelu=False)
        baseline_path = Path(tmp) / "sface-baseline.onnx"
        onnx.save(baseline_model, str(baseline_path))
        current_path = prepare_model(SFACE, cache_dir=args.cache_dir).path
        sessions = {"baseline": _bench_session(baseline_path), "current": _bench_session(current_path)}
        rows = []
        for batch in (1, 8):
            blob = np.ascontiguousarray(chips[:batch, ..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
            ms = interleaved_median_ms(sessions, blob, warmup, repeats if batch == 1 else max(1, repeats // 4))
            outputs = [s.run(None, {s.get_inputs()[0].name: blob})[0] for s in sessions.values()]
            rows.append({
                "batch": batch,
                "baseline_ms_per_chip": round(ms["baseline"] / batch, 2),
                "current_ms_per_chip": round(ms["current"] / batch, 2),
                "speedup": round(ms["baseline"] / ms["current"], 2),
                "identical_outputs": bool(np.array_equal(outputs[0], outputs[1])),
            })
        one = np.ascontiguousarray(chips[:1, ..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        out["sface"] = {
            "baseline": "converter without the PRelu rewrite (version 1 graph)",
            "by_batch": rows,
            "profile_share_pct": {
                "baseline": profile_by_op(baseline_path, one, profile_runs),
                "current": profile_by_op(current_path, one, profile_runs),
            },
        }
    yunet_path = prepare_model(YUNET, cache_dir=args.cache_dir).path
    frame = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32) * 255.0
    out["yunet"] = {"profile_share_pct": profile_by_op(yunet_path, frame, max(1, profile_runs // 2))}
    return out


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
    conv = " ".join("b%d %.2f->%.2fms x%.2f%s" % (r["batch"], r["baseline_ms_per_chip"], r["current_ms_per_chip"], r["speedup"],
                                                   "" if r["identical_outputs"] else " DIFFERENT")
                    for r in results["conversion"]["sface"]["by_batch"])
    return "models benchmark (%s%s): detect %s | embed per chip %s | sface conversion %s" % (
        results["input"]["source"], ", smoke" if results["smoke"] else "", det, emb, conv)


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
