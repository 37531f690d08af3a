"""The snapshot filter as the index sends it (services/governance/watchlist/snapshot_scope.py): the smaller
of "not one of the versions the snapshot lacks" and "one of the versions it has", derived from
what the index holds; it must keep exactly the snapshot's versions through upserts, removals,
expiry and a reopened index; and the edge engine's HNSW path finds what exact search finds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from services.governance.deployments.snapshot import entry_version
from services.governance.watchlist.index import WatchlistIndex, connect
from services.governance.watchlist.index_backends import Condition
from services.governance.watchlist.snapshot_scope import Held, HeldVersions

from tests.watchlist.test_index_backends import MODEL, NOW, built, entries, unit_rows


def test_conditions_send_the_shorter_list() -> None:
    held = HeldVersions((f"s{i}", Held(f"v{i}", frozenset({"van-1"} if i < 8 else {"van-2"}), NOW + 1)) for i in range(10))
    most = frozenset(f"v{i}" for i in range(7))  # van-1 holds v0..v7: only v7 is left out
    assert held.conditions(most, "van-1") == ((), (Condition.any_of("entry_version", ["v7"]),))
    assert held.conditions(frozenset(f"v{i}" for i in range(8)), "van-1") == ((), ())  # nothing left out: no condition
    few = frozenset({"v1", "v9"})
    assert held.conditions(few, "van-1") == ((Condition.any_of("entry_version", ["v1"]),), ())
    assert held.conditions(few, None) == ((Condition.any_of("entry_version", ["v1", "v9"]),), ())
    assert held.conditions(frozenset(), "van-1") == ((Condition.any_of("entry_version", []),), ())  # matches nothing
    # A change to what the index holds is seen even for a set already asked about.
    held.put("s11", Held("v11", frozenset({"van-1"}), NOW + 1))
    assert held.conditions(most, "van-1") == ((), (Condition.any_of("entry_version", ["v11", "v7"]),))
    held.drop("s11")
    held.drop_expired(NOW + 1)
    assert held.conditions(most, "van-1") == ((), ())


def subjects(rows) -> list[list[str]]:
    return [[c.subject_id for c in row] for row in rows]


def test_snapshot_search_follows_every_change_to_the_index(tmp_path: Path) -> None:
    watchlist = entries(60)
    live = {sid: e for sid, e in watchlist.items() if not e.is_expired(NOW)}
    snapshot = frozenset(entry_version(e) for sid, e in live.items() if sid != "s2")
    probes = np.stack([live[s].embeddings[0].vector for s in ("s1", "s2", "s4", "s5")])
    everyone = [None] * 4

    index = WatchlistIndex(connect(None, None, str(tmp_path / "q")), MODEL)
    index.ensure_collection()
    index.add_new(watchlist.values())
    top = subjects(index.search(probes, everyone, NOW, limit=1, versions=[snapshot] * 4))
    assert top[0] == ["s1"] and top[1] != ["s2"] and top[2:] == [["s4"], ["s5"]]

    # A new version of s1 (same photo, record changed) is not in the snapshot: s1 no longer
    # matches under it, but still does without a snapshot.
    changed = dataclasses.replace(live["s1"], reference="R1-amended")
    assert entry_version(changed) not in snapshot
    index.upsert(changed)
    assert subjects(index.search(probes[:1], [None], NOW, limit=1))[0] == ["s1"]
    assert subjects(index.search(probes[:1], [None], NOW, limit=3, versions=[snapshot]))[0].count("s1") == 0
    # The same version with a narrower scope is still the snapshot's (scope is not in the version).
    narrowed = dataclasses.replace(live["s4"], deployments=("van-9",))
    index.upsert(narrowed)
    assert subjects(index.search(probes[2:3], ["van-9"], NOW, limit=1, versions=[snapshot]))[0] == ["s4"]
    index.remove("s5")
    assert "s5" not in subjects(index.search(probes[3:4], [None], NOW, limit=3, versions=[snapshot]))[0]
    index.close()

    # Reopened: what it holds is read back from the collection, with the same answers.
    reopened = WatchlistIndex(connect(None, None, str(tmp_path / "q")), MODEL)
    reopened.ensure_collection()
    again = subjects(reopened.search(probes, everyone, NOW, limit=3, versions=[snapshot] * 4))
    assert "s1" not in again[0] and "s2" not in again[1] and again[2][0] == "s4" and "s5" not in again[3]
    reopened.close()


def test_edge_hnsw_path_finds_what_exact_search_finds() -> None:
    """3,000 subjects: above the engine's indexing threshold, so queries go through the HNSW graph
    over int8 vectors; the snapshot and deployment filters stay in the query."""
    watchlist = entries(3000, seed=11)
    live = {sid: e for sid, e in watchlist.items() if not e.is_expired(NOW) and "van-1" in e.deployments}
    index = built("edge", watchlist)
    try:
        shard = index.backend._shard(index.collection)
        assert shard.info().indexed_vectors_count > 0  # the graph exists: this is the HNSW path
        rng = np.random.default_rng(2)
        sids = sorted(live)[:: max(1, len(live) // 48)][:48]
        genuine = np.stack([live[s].embeddings[0].vector for s in sids])
        noise = unit_rows(len(sids), 8)
        probes = 0.7 * genuine + 0.714 * noise
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        snapshot = frozenset(entry_version(e) for sid, e in live.items() if rng.random() < 0.98)
        got = index.search(probes, ["van-1"] * len(sids), NOW, limit=1, versions=[snapshot] * len(sids))
        allowed = [sid for sid, e in live.items() if entry_version(e) in snapshot]
        gallery = [(sid, v) for sid in allowed for v in (e.vector for e in live[sid].embeddings)]
        matrix = np.stack([v for _, v in gallery])
        scores = matrix @ probes.T
        expected = [gallery[int(i)][0] for i in np.argmax(scores, axis=0)]
        assert [row[0].subject_id for row in got] == expected
        # Scores are exact cosines (rescored), not int8 estimates: thresholds apply to them.
        assert np.allclose([row[0].score for row in got], scores.max(axis=0), atol=1e-5)
    finally:
        index.close()


def test_a_subject_read_back_with_two_versions_keeps_both_until_written() -> None:
    """A write interrupted between adding a subject's new version and deleting its old one leaves
    both in the collection: the one outside the snapshot must still be excluded."""
    held = HeldVersions([("s1", Held("old", frozenset({"van-1"}), NOW + 1)), ("s1", Held("new", frozenset({"van-1"}), NOW + 1)),
                         ("s2", Held("v2", frozenset({"van-1"}), NOW + 1))])
    assert held.conditions(frozenset({"old", "v2"}), "van-1") == ((), (Condition.any_of("entry_version", ["new"]),))
    held.put("s1", Held("old", frozenset({"van-1"}), NOW + 1))  # rewritten: the other version was deleted
    assert held.conditions(frozenset({"old", "v2"}), "van-1") == ((), ())
