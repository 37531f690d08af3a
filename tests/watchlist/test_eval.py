"""`lfr eval`: the protocol, the metrics, and a deterministic run on a slice of the shared data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from services.tools.evaluation.equity import balanced_split, labels_from_name, significant_pairs, wilson
from services.tools.evaluation.gallery import Gallery
from services.engine.face.models import ModelIdentity
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.governance.watchlist.index import WatchlistIndex

from services.tools.evaluation.metrics import MatedResult, fpir, threshold_for_fpir, tpir
from services.tools.evaluation.protocol import plan


def test_protocol_is_seeded_and_disjoint():
    identities = {f"id{i:03d}": [Path(f"id{i:03d}/{j}.jpg") for j in range(1 + i % 13)] for i in range(60)}
    first, again, other = plan(identities, 7), plan(identities, 7), plan(identities, 8)
    assert first == again and first.enrolled != other.enrolled
    enrolled = {name for name, _ in first.enrolled}
    assert all(paths == identities[name][:1] for name, paths in first.enrolled)
    assert all(name in enrolled and path != identities[name][0] for name, path in first.mated)
    assert max(sum(1 for n, _ in first.mated if n == name) for name in enrolled) == 10
    assert not {p.parent.name for p in first.nonmated} & enrolled
    multi = [n for n, imgs in identities.items() if len(imgs) >= 2]
    assert len(enrolled) == len(multi) // 2


def test_an_alias_of_an_enrolled_identity_is_never_a_nonmated_probe():
    from services.tools.evaluation.protocol import ALIASES

    a, b = ALIASES[0]
    identities = {a: [Path(f"{a}/{j}.jpg") for j in range(3)], b: [Path(f"{b}/{j}.jpg") for j in range(1)]}
    identities.update({f"id{i}": [Path(f"id{i}/{j}.jpg") for j in range(2)] for i in range(3)})
    for seed in range(10):
        chosen = plan(identities, seed)
        if a in {name for name, _ in chosen.enrolled}:
            assert not [p for p in chosen.nonmated if p.parent.name == b]
            return
    raise AssertionError("no seed enrolled the alias")


def test_threshold_meets_fpir_target_exactly_at_the_boundary():
    nonmated = np.array([0.9, 0.8, 0.7, 0.6] + [0.1] * 996)  # 1000 searches
    t = threshold_for_fpir(nonmated, 1e-3)  # one alarm allowed
    assert fpir(nonmated, t) == 1e-3 and 0.8 < t < 0.9 + 1e-6
    assert fpir(nonmated, threshold_for_fpir(nonmated, 2.5e-4)) == 0.0
    mated = [MatedResult(True, True, 0.95), MatedResult(True, False, 0.99), MatedResult(False, False, float("-inf")), MatedResult(True, True, 0.5)]
    assert tpir(mated, t) == 0.25  # wrong subject and failure to acquire are misses


def _run(lfw_dir: Path, out: Path, *extra: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "services.cli", "eval", "--data", str(lfw_dir), "--out", str(out), "--limit", "120", "--threads", "1",
                             *extra], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("eval sface")
    assert out.with_suffix(".png").stat().st_size > 1000
    return json.loads(out.read_text())


def _utk_slice(lfw_dir: Path, folder: Path, every: int = 200) -> Path:
    """A few UTKFace images (links, never copies) spread across its sorted names."""
    source = lfw_dir.parent / "utkface-dev"
    if not source.is_dir():
        pytest.skip(f"UTKFace not found at {source}")
    folder.mkdir(parents=True)
    for path in sorted(source.iterdir())[::every]:
        (folder / path.name).symlink_to(path)
    return folder


def test_eval_on_a_slice_gives_the_same_json_twice(lfw_dir, tmp_path):
    """Every mode at once on a slice; the second run reads the first's embedding cache, so this
    also shows cached records give exactly the figures of computed ones."""
    utk = _utk_slice(lfw_dir, tmp_path / "utk")
    extra = ("--fillers", str(utk), "--equity", str(utk), "--embedding-cache", str(tmp_path / "cache.sqlite"), "--enrol-images", "2")
    first = _run(lfw_dir, tmp_path / "a" / "eval.json", *extra)
    second = _run(lfw_dir, tmp_path / "b" / "eval.json", *extra)
    assert first == second
    assert (tmp_path / "a" / "eval-equity.png").stat().st_size > 1000
    for point in first["points"]:
        assert point["tpir_end_to_end"] <= point["tpir"]
    assert first["mated_end_to_end"] >= first["mated"] and first["enrol_images"] == 2
    scaling = first["scaling"]
    assert scaling["reached"] is False and scaling["sizes"][-1]["watchlist_size"] == first["watchlist_size"] + scaling["fillers_usable"]
    equity = first["equity"]
    assert equity["operating_threshold"] == first["operating_threshold"]
    assert {"race:white", "gender:female", "gender:male"} <= set(equity["groups"])
    for group in equity["groups"].values():
        assert group["ci_low"] <= group["fpir"] <= group["ci_high"] and group["n"] > 0
    assert isinstance(equity["significant_difference"], bool)
    for key in ("model", "watchlist_size", "mated", "nonmated", "fta", "rank1", "points", "det"):
        assert key in first
    assert [p["fpir_target"] for p in first["points"]] == [1e-2, 1e-3, 2.5e-4]
    assert first["watchlist_size"] > 5 and first["mated"] > 10 and first["nonmated"] > 50
    assert first["rank1"] > 0.8


def test_end_to_end_counts_a_refused_subjects_probes_as_misses():
    from services.tools.evaluation.metrics import summarise

    hit = MatedResult(True, True, 0.9)
    enrolled_only = [hit] * 9
    everyone = enrolled_only + [MatedResult(False, False, float("-inf"))] * 3  # a refused subject's 3 probes
    point = summarise(enrolled_only, np.array([0.1] * 1000), everyone)["points"][1]
    assert point["tpir"] == 1.0 and point["tpir_end_to_end"] == 0.75


def test_gallery_search_agrees_with_the_watchlist_index():
    """The evaluation's numpy search gives the index's top candidate: best subject by its best embedding."""
    rng = np.random.default_rng(3)
    model = ModelIdentity("test-model", "0" * 64)
    index = WatchlistIndex(QdrantClient(location=":memory:"), model, dim=16)
    index.ensure_collection()
    gallery = Gallery(16)
    for s in range(40):
        vectors = [v / np.linalg.norm(v) for v in rng.normal(size=(1 + s % 3, 16)).astype(np.float32)]
        entry = WatchlistEntry(f"s{s}", "R", "suspect", "red", Provenance("x", 0, "y", "z", 0), 10**13, ("d",),
                               tuple(EnrolledEmbedding(model, v) for v in vectors))
        index.upsert(entry)
        gallery.add(entry.subject_id, vectors)
    probes = rng.normal(size=(50, 16)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    expected = [(c[0].subject_id, c[0].score) for c in index.search(probes, ["d"] * 50, 0, limit=1)]
    got = gallery.top1_ids(probes)
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert np.allclose([v for _, v in got], [v for _, v in expected], atol=1e-5)


def test_equity_labels_intervals_and_balanced_split():
    assert labels_from_name(Path("15_1_1_20170109.jpg.chip.jpg")) == ("race:black", "gender:female", "age:under18")
    assert labels_from_name(Path("40_0_4_x.jpg.chip.jpg")) == ("race:other", "gender:male", "age:adult")
    assert labels_from_name(Path("face.jpg")) is None
    low, high = wilson(2, 100)  # reference values of the Wilson score interval
    assert abs(low - 0.0055) < 1e-3 and abs(high - 0.0700) < 1e-3
    assert wilson(0, 50)[0] == 0.0 and wilson(0, 50)[1] > 0.05
    paths = [Path(f"{20 + i % 30}_{i % 2}_{i % 5}_{i}.jpg.chip.jpg") for i in range(200)]
    fillers, probes = balanced_split(paths, 7)
    assert not set(fillers) & set(probes) and len(fillers) + len(probes) == 200
    assert abs(sum(labels_from_name(p)[0] == "race:black" for p in fillers) - sum(labels_from_name(p)[0] == "race:black" for p in probes)) <= 2
    groups = {"race:black": {"ci_low": 0.02, "ci_high": 0.06}, "race:white": {"ci_low": 0.001, "ci_high": 0.01},
              "gender:male": {"ci_low": 0.001, "ci_high": 0.05}}
    assert significant_pairs(groups) == [["race:black", "race:white"]]


def test_eval_refuses_fillers_that_overlap_the_evaluation_data(tmp_path):
    """Fillers are enrolled as non-mated subjects: a folder holding the probes' own people
    (the data itself, a folder inside it, or one containing it) would turn probes into mates."""
    data = tmp_path / "faces"
    (data / "Some_One").mkdir(parents=True)
    for fillers in (data, data / "Some_One", tmp_path):
        result = subprocess.run([sys.executable, "-m", "services.cli", "eval", "--data", str(data), "--out", str(tmp_path / "e.json"),
                                 "--fillers", str(fillers)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and "overlaps --data" in result.stderr, result.stderr[-500:]
