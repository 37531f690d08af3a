"""Matcher benchmark: watchlist query latency per batch of 16 for the embedded engine (the
default, qdrant-edge in process), qdrant-client local mode and exact numpy search, at several
watchlist sizes, with recall@1 against exact search.

    python benchmarks/matcher.py [--sizes 1000 10000 100000] [--queries 640] [--out FILE] [--smoke]

Vectors are synthetic unit vectors (no face data): a gallery of one vector per subject and
probes made by perturbing gallery vectors to a cosine of about 0.7, like a genuine face match.
The embedded and local figures go through WatchlistIndex.search in batches of 16, as the
matcher sends them, with its deployment and expiry filters in the query; ``embedded_snapshot``
adds the deployment snapshot filter (every subject's entry version, as the deployments layer
sends it). Exact search is numpy over the whole gallery (``gallery @ probes.T``, argmax), the
recall reference. Local mode evaluates filters in Python point by point (2.5 s per query at
100k), so slow paths run for a bounded time (at least two batches; ``batches`` in the JSON).

JSON (benchmarks/results/matcher.json): ``<engine>.<size>.{p50_ms,p99_ms,recall_at_1,batches}``
for engine in embedded, embedded_snapshot, local, exact, plus build times, the load average
around each size and the machine.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Exact search is timed on one BLAS thread: tiny matrix products with a multi-threaded BLAS
# spend their time waking threads, and on a shared 2-core machine that turns into noise.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from services.governance.deployments.snapshot import entry_version  # noqa: E402
from services.engine.face.models import SFACE, ModelIdentity  # noqa: E402
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry  # noqa: E402
from services.governance.watchlist.index import WatchlistIndex, connect  # noqa: E402

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)
DIM = 128
BATCH = 16
RESULTS = Path(__file__).resolve().parent / "results"
DEPLOYMENT = "van-1"
#: Seconds of queries per size for the slow paths (local mode; the snapshot filter at 100k):
#: at least two batches each, then stop, so the whole run stays within minutes.
SLOW_PATH_BUDGET_S = 30.0


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def workload(size: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gallery = unit_rows(rng.normal(size=(size, DIM)))
    targets = rng.integers(0, size, queries)
    noise = unit_rows(rng.normal(size=(queries, DIM)))
    probes = unit_rows(0.7 * gallery[targets] + 0.714 * noise)
    return gallery, probes, targets


def watchlist(gallery: np.ndarray, now_ms: int) -> list[WatchlistEntry]:
    provenance = Provenance("benchmark", 0, "benchmark", "benchmark", now_ms)
    return [
        WatchlistEntry(f"s{i}", f"R{i}", "suspect", "red", provenance, now_ms + 10**10, (DEPLOYMENT,), (EnrolledEmbedding(MODEL, vector),))
        for i, vector in enumerate(gallery)
    ]


def build_index(engine: str, entries: list[WatchlistEntry]) -> tuple[WatchlistIndex, float]:
    started = time.perf_counter()
    index = WatchlistIndex(connect(None, None, ":memory:", engine), MODEL, dim=DIM)
    index.ensure_collection()
    index.add_new(entries)  # ends with the engine's optimisation pass (HNSW on large edge sets)
    return index, time.perf_counter() - started


def stats(timing: tuple[list[float], list[float]], top: list[int], exact_top: np.ndarray) -> dict:
    batch_ms, cpu_ms = timing
    return {
        "p50_ms": round(float(np.percentile(batch_ms, 50)), 3),
        "p99_ms": round(float(np.percentile(batch_ms, 99)), 3),
        "mean_ms": round(float(np.mean(batch_ms)), 3),
        # CPU time of this process per batch (all its threads): what the search costs, whatever
        # else the shared machine is doing; wall-clock figures above include waiting for a core.
        "cpu_p50_ms": round(float(np.percentile(cpu_ms, 50)), 3),
        "batches": len(batch_ms),
        "recall_at_1": round(float(np.mean(np.array(top) == exact_top[: len(top)])), 4),
    }


def search_batches(
    index: WatchlistIndex, probes: np.ndarray, batches: int, now: int, versions=None, budget_s: float = float("inf")
) -> tuple[tuple[list[float], list[float]], list[int]]:
    """Up to ``batches`` batches of 16 through WatchlistIndex.search; stops early (after at least
    two) once ``budget_s`` is spent, so the slow paths stay within minutes."""
    batch_ms, cpu_ms, top = [], [], []
    started_all = time.perf_counter()
    for b in range(batches):
        if b >= 2 and time.perf_counter() - started_all > budget_s:
            break
        batch = probes[b * BATCH : (b + 1) * BATCH]
        started, cpu_started = time.perf_counter(), time.process_time()
        results = index.search(batch, [DEPLOYMENT] * len(batch), now, limit=1,
                               versions=None if versions is None else [versions] * len(batch))
        batch_ms.append((time.perf_counter() - started) * 1000)
        cpu_ms.append((time.process_time() - cpu_started) * 1000)
        top.extend(int(r[0].subject_id[1:]) if r else -1 for r in results)
    return (batch_ms, cpu_ms), top


def bench_size(size: int, queries: int, seed: int) -> dict:
    gallery, probes, targets = workload(size, queries, seed)
    now = int(time.time() * 1000)
    entries = watchlist(gallery, now)
    batches = queries // BATCH
    load_before = os.getloadavg()
    row: dict = {"subjects": size}

    exact_ms, exact_cpu, exact_top = [], [], []
    for b in range(batches):
        batch = probes[b * BATCH : (b + 1) * BATCH]
        started, cpu_started = time.perf_counter(), time.process_time()
        top = np.argmax(gallery @ batch.T, axis=0)
        exact_ms.append((time.perf_counter() - started) * 1000)
        exact_cpu.append((time.process_time() - cpu_started) * 1000)
        exact_top.extend(top.tolist())
    exact_top_arr = np.array(exact_top)
    row["exact"] = stats((exact_ms, exact_cpu), exact_top, exact_top_arr)
    row["exact"]["identification_rate"] = round(float(np.mean(exact_top_arr == targets[: len(exact_top)])), 4)

    index, build_s = build_index("edge", entries)
    search_batches(index, probes, 2, now)  # warm-up
    row["embedded"] = {**stats(*search_batches(index, probes, batches, now), exact_top_arr), "build_s": round(build_s, 2)}
    snapshot = frozenset(entry_version(e) for e in entries)
    # The first batch of a snapshot reads what the index holds and derives the filter
    # (services/governance/watchlist/snapshot_scope.py): once per snapshot and watchlist change, timed apart.
    started = time.perf_counter()
    search_batches(index, probes, 1, now, versions=snapshot)
    first_snapshot_ms = round((time.perf_counter() - started) * 1000, 2)
    row["embedded_snapshot"] = stats(*search_batches(index, probes, batches, now, versions=snapshot, budget_s=SLOW_PATH_BUDGET_S), exact_top_arr)
    row["embedded_snapshot"]["snapshot_versions"] = len(snapshot)
    row["embedded_snapshot"]["first_batch_ms"] = first_snapshot_ms
    index.close()

    index, build_s = build_index("local", entries)
    row["local"] = {**stats(*search_batches(index, probes, batches, now, budget_s=SLOW_PATH_BUDGET_S), exact_top_arr), "build_s": round(build_s, 2)}
    index.close()

    row["ratios"] = {
        "local_over_embedded_p50": round(row["local"]["p50_ms"] / max(1e-9, row["embedded"]["p50_ms"]), 1),
        "embedded_over_exact_p50": round(row["embedded"]["p50_ms"] / max(1e-9, row["exact"]["p50_ms"]), 1),
    }
    row["loadavg_1m"] = {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=640, help="probes per size (batches of 16)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "matcher.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves the benchmark runs")
    args = parser.parse_args(argv)
    sizes, queries = ([200, 500], 32) if args.smoke else (args.sizes, args.queries)
    from services.common.progress import track  # noqa: PLC0415

    rows = [bench_size(size, max(BATCH, queries), args.seed) for size in track(sizes, "matcher benchmark", unit="gallery size")]
    result: dict = {
        "benchmark": "matcher",
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_model(), "logical_cores": os.cpu_count(), "python": platform.python_version()},
        "batch": BATCH,
        "smoke": args.smoke,
        "sizes": rows,
    }
    for engine in ("embedded", "embedded_snapshot", "local", "exact"):
        result[engine] = {str(r["subjects"]): r[engine] for r in rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("matcher (ms per batch of 16, p50/p99, recall@1): " + "; ".join(
        f"{r['subjects']}: embedded {r['embedded']['p50_ms']}/{r['embedded']['p99_ms']} (cpu {r['embedded']['cpu_p50_ms']}) r{r['embedded']['recall_at_1']}, "
        f"snapshot {r['embedded_snapshot']['p50_ms']}/{r['embedded_snapshot']['p99_ms']}, "
        f"local {r['local']['p50_ms']}/{r['local']['p99_ms']} ({r['local']['batches']} batches), "
        f"exact {r['exact']['p50_ms']}/{r['exact']['p99_ms']}" for r in rows))
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())
