"""Matcher benchmark: watchlist query latency for Qdrant local mode (the product's index path)
against exact numpy search, at several watchlist sizes, and Qdrant's recall@1 against exact.

    python benchmarks/matcher.py [--sizes 1000 10000 100000] [--queries 256] [--out FILE] [--smoke]

Vectors are synthetic unit vectors (no face data): a gallery of one vector per subject and
probes made by perturbing gallery vectors to a cosine of about 0.7, like a genuine face match.
Queries go through WatchlistIndex.search in batches of 16, as the matcher sends them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient, models

from services.face.models import SFACE, ModelIdentity
from services.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.watchlist.index import WatchlistIndex

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)
DIM = 128
BATCH = 16
RESULTS = Path(__file__).resolve().parent / "results"


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def workload(size: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gallery = unit_rows(rng.normal(size=(size, DIM)))
    targets = rng.integers(0, size, queries)
    noise = unit_rows(rng.normal(size=(queries, DIM)))
    probes = unit_rows(0.7 * gallery[targets] + 0.714 * noise)
    return gallery, probes, targets


def build_index(gallery: np.ndarray, now_ms: int) -> WatchlistIndex:
    index = WatchlistIndex(QdrantClient(location=":memory:"), MODEL, dim=DIM)
    index.ensure_collection()
    provenance = Provenance("benchmark", 0, "benchmark", "benchmark", now_ms)
    index.add_new(
        WatchlistEntry(f"s{i}", f"R{i}", "suspect", "red", provenance, now_ms + 10**10, ("van-1",), (EnrolledEmbedding(MODEL, vector),))
        for i, vector in enumerate(gallery)
    )
    return index


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(samples_ms, 50)), 3), "p99": round(float(np.percentile(samples_ms, 99)), 3)}


def bench_size(size: int, queries: int, seed: int) -> dict:
    gallery, probes, targets = workload(size, queries, seed)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    index = build_index(gallery, now)
    build_s = time.perf_counter() - started

    exact_ms, exact_top = [], []
    for start in range(0, queries, BATCH):
        batch = probes[start : start + BATCH]
        t0 = time.perf_counter()
        top = np.argmax(gallery @ batch.T, axis=0)
        exact_ms.append((time.perf_counter() - t0) * 1000 / len(batch))
        exact_top.extend(top.tolist())

    # Local mode evaluates payload filters in Python, per point: cap its query count at large sizes.
    local_queries = queries if size < 10_000 else min(queries, 64)
    unfiltered_ms = []
    for start in range(0, local_queries, BATCH):
        batch = probes[start : start + BATCH]
        t0 = time.perf_counter()
        index.client.query_batch_points(index.collection, requests=[models.QueryRequest(query=q.tolist(), limit=4) for q in batch])
        unfiltered_ms.append((time.perf_counter() - t0) * 1000 / len(batch))

    qdrant_ms, qdrant_top = [], []
    for start in range(0, local_queries, BATCH):
        batch = probes[start : start + BATCH]
        t0 = time.perf_counter()
        results = index.search(batch, ["van-1"] * len(batch), now, limit=1)
        qdrant_ms.append((time.perf_counter() - t0) * 1000 / len(batch))
        qdrant_top.extend(int(r[0].subject_id[1:]) if r else -1 for r in results)

    recall = float(np.mean(np.array(qdrant_top) == np.array(exact_top[:local_queries])))
    exact_correct = float(np.mean(np.array(exact_top) == targets))
    index.client.close()
    return {
        "subjects": size,
        "queries": queries,
        "index_build_s": round(build_s, 2),
        "qdrant_local_queries": local_queries,
        "qdrant_local_ms_per_query": percentiles(qdrant_ms),
        "qdrant_local_unfiltered_ms_per_query": percentiles(unfiltered_ms),
        "exact_numpy_ms_per_query": percentiles(exact_ms),
        "qdrant_over_exact_p50": round(percentiles(qdrant_ms)["p50"] / max(1e-9, percentiles(exact_ms)["p50"]), 1),
        "qdrant_recall_at_1_vs_exact": round(recall, 4),
        "exact_identification_rate": round(exact_correct, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "matcher.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves the benchmark runs")
    args = parser.parse_args(argv)
    sizes, queries = ([200, 500], 32) if args.smoke else (args.sizes, args.queries)
    from services.common.progress import track

    rows = [bench_size(size, queries, args.seed) for size in track(sizes, "matcher benchmark", unit="gallery size")]
    result = {
        "benchmark": "matcher",
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "batch": BATCH,
        "smoke": args.smoke,
        "sizes": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("matcher: " + "; ".join(
        f"{r['subjects']} subjects qdrant-local p50 {r['qdrant_local_ms_per_query']['p50']} ms p99 {r['qdrant_local_ms_per_query']['p99']} ms, "
        f"exact p50 {r['exact_numpy_ms_per_query']['p50']} ms, recall@1 {r['qdrant_recall_at_1_vs_exact']}" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
