"""WatchlistIndex over its backends: the embedded edge engine answers like qdrant-client local
mode with every filter in the query, persists on a path, cleans up its temporary directory,
lists and drops collections; settings choose the backend."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from services.common.settings import MatcherSettings, WatchlistSettings, load_settings
from services.governance.deployments.snapshot import entry_version
from services.engine.face.models import SFACE, ModelIdentity
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.governance.watchlist.index import WatchlistIndex, collection_name, connect
from services.governance.watchlist.index_backends import ClientBackend, EdgeBackend

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)
OTHER = ModelIdentity("arcface-r100", "1" * 64)
NOW = int(time.time() * 1000)
CATEGORIES = ("suspect", "missing_person_at_risk", "witness_or_victim")


def unit_rows(n: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def entries(n: int = 120, seed: int = 3) -> dict[str, WatchlistEntry]:
    """Subjects with one or two images, mixed categories, deployments and expiries."""
    rng = np.random.default_rng(seed)
    vectors = unit_rows(2 * n, seed)
    out = {}
    for i in range(n):
        images = 2 if i % 5 == 0 else 1
        expires = NOW - 1 if i % 7 == 0 else NOW + 10**9
        deployments = (("van-1",), ("van-2",), ("van-1", "van-2"))[i % 3]
        out[f"s{i}"] = WatchlistEntry(
            f"s{i}", f"R{i}", CATEGORIES[int(rng.integers(0, 3))], "red", Provenance("custody", 0, "PACE", "PC1", NOW),
            expires, deployments, tuple(EnrolledEmbedding(MODEL, vectors[2 * i + k]) for k in range(images)),
        )
    return out


def built(engine: str, watchlist: dict[str, WatchlistEntry]) -> WatchlistIndex:
    index = WatchlistIndex(connect(None, None, ":memory:", engine), MODEL)
    index.ensure_collection()
    index.add_new(watchlist.values())
    return index


def test_edge_answers_like_local_mode_with_every_filter() -> None:
    watchlist = entries()
    edge, local = built("edge", watchlist), built("local", watchlist)
    try:
        assert isinstance(edge.backend, EdgeBackend) and isinstance(local.backend, ClientBackend)
        probes = unit_rows(12, 99)
        probes[:6] = 0.7 * np.stack([watchlist[f"s{i}"].embeddings[0].vector for i in range(1, 7)]) + 0.3 * probes[:6]
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        deployments = ["van-1", "van-2", None] * 4
        versions_of = {sid: entry_version(e) for sid, e in watchlist.items()}
        snapshot = {versions_of[f"s{i}"] for i in range(0, 120, 2)}
        cases = [
            {},
            {"exclude": ["s1", "s2"]},
            {"versions": [snapshot] * 12},
            {"versions": [set()] * 12},
            {"categories": {"suspect", "witness_or_victim"}},
        ]
        for kwargs in cases:
            a = edge.search(probes, deployments, NOW, limit=5, **kwargs)
            b = local.search(probes, deployments, NOW, limit=5, **kwargs)
            assert [[c.subject_id for c in row] for row in a] == [[c.subject_id for c in row] for row in b], kwargs
            for row_a, row_b in zip(a, b):
                assert np.allclose([c.score for c in row_a], [c.score for c in row_b], atol=1e-5)
            for row, deployment in zip(a, deployments):
                for candidate in row:
                    e = watchlist[candidate.subject_id]
                    assert not e.is_expired(NOW)
                    assert deployment is None or deployment in e.deployments
                    assert candidate.subject_id not in kwargs.get("exclude", ())
                    assert "categories" not in kwargs or e.category in kwargs["categories"]
                    assert "versions" not in kwargs or versions_of[candidate.subject_id] in kwargs["versions"][0]
        assert edge.search(probes, deployments, NOW, versions=[set()] * 12) == [[]] * 12
        # Maintenance: expiry sweep, removal, rebuild give the same subjects on both.
        for index in (edge, local):
            assert index.remove_expired(NOW) == sum(e.is_expired(NOW) for e in watchlist.values()) + sum(
                len(e.embeddings) - 1 for e in watchlist.values() if e.is_expired(NOW)
            )
            index.remove("s1")
        assert edge.subjects() == local.subjects() == {s for s, e in watchlist.items() if not e.is_expired(NOW)} - {"s1"}
        smaller = {sid: e for sid, e in list(watchlist.items())[:40]}
        for index in (edge, local):
            index.rebuild(smaller, NOW)
        assert edge.subjects() == local.subjects() == {s for s, e in smaller.items() if not e.is_expired(NOW)}
    finally:
        edge.close()
        local.close()


def test_edge_on_a_path_persists_and_lists_and_drops_collections(tmp_path: Path) -> None:
    watchlist = entries(30)
    index = WatchlistIndex(connect(None, None, str(tmp_path / "q")), MODEL)
    index.ensure_collection()
    index.add_new(watchlist.values())
    other = WatchlistIndex(index.backend, OTHER, dim=128)
    other.ensure_collection()
    assert index.backend.collection_names() == sorted([collection_name(MODEL), collection_name(OTHER)])
    index.close()

    reopened = WatchlistIndex(connect(None, None, str(tmp_path / "q")), MODEL)
    reopened.ensure_collection()
    assert reopened.subjects() == set(watchlist)
    reopened.backend.drop_collection(collection_name(OTHER))
    assert reopened.backend.collection_names() == [collection_name(MODEL)]
    reopened.close()


def test_temporary_edge_index_leaves_nothing_behind() -> None:
    index = built("edge", entries(10))
    root = index.backend.root
    assert root.is_dir() and any(root.iterdir())
    index.close()
    assert not root.exists()


def test_settings_choose_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(MatcherSettings).qdrant_embedded == "edge"
    assert isinstance(connect(None, None, ":memory:"), EdgeBackend)
    monkeypatch.setenv("LFR_QDRANT_EMBEDDED", "local")
    settings = load_settings(WatchlistSettings)
    backend = connect(settings.qdrant_url, None, ":memory:", settings.qdrant_embedded)
    assert isinstance(backend, ClientBackend) and backend.kind == "local"
    server = connect("http://qdrant.invalid:6333", None, ":memory:", "edge")  # the URL wins; nothing connects yet
    assert isinstance(server, ClientBackend) and server.kind == "server"
    monkeypatch.setenv("LFR_QDRANT_EMBEDDED", "faiss")
    with pytest.raises(Exception, match="LFR_QDRANT_EMBEDDED"):
        load_settings(WatchlistSettings)


def test_a_killed_process_index_directory_is_swept_by_the_next_backend(tmp_path):
    """A process killed with SIGKILL never deletes its temporary index (watchlist embeddings in
    /dev/shm until reboot): the next embedded backend removes directories whose owner is gone
    and keeps those of live processes."""
    import os
    import subprocess
    import sys

    from services.governance.watchlist.index_backends import TEMP_PREFIX, sweep_orphaned_indexes

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    orphan = tmp_path / f"{TEMP_PREFIX}{gone.pid}-abcd"
    (orphan / "shard").mkdir(parents=True)
    (orphan / "shard" / "segment").write_bytes(b"embeddings")
    alive = tmp_path / f"{TEMP_PREFIX}{os.getppid()}-efgh"
    alive.mkdir()
    assert sweep_orphaned_indexes(tmp_path) == [orphan]
    assert not orphan.exists() and alive.exists()

    # The backend sweeps where it creates its own directory.
    backend = EdgeBackend()
    base = backend.root.parent
    stale = base / f"{TEMP_PREFIX}{gone.pid}-ijkl"
    stale.mkdir()
    second = EdgeBackend()
    assert not stale.exists() and backend.root.exists() and second.root.name.startswith(f"{TEMP_PREFIX}{os.getpid()}-")
    backend.close()
    second.close()
