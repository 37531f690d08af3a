"""A deployment's snapshot as a short filter: exclude the few versions it leaves out.

A snapshot is a set of entry versions (10,000 at force scale). Sent as it is, a ``MatchAny``
over every version, each query checked its points against the whole set: 56 ms per batch of 16
at 10k subjects against 5 ms without it, 100x at 100k (benchmarks/README.md, "Matcher"). But
the index holds one current version per subject, and almost every version it holds for a
deployment's subjects is in that deployment's snapshot. So the index keeps a mirror of what it
holds (subject -> version, deployments, expiry) and sends the smaller of two equivalent
conditions: ``entry_version not in`` the versions it holds for that deployment that the
snapshot lacks (usually none: no condition at all), or ``entry_version in`` the ones it has.

A tag per snapshot on each point (a keyword-indexed payload field) was measured first and
dropped: the engine copies every point whose payload changes out of its HNSW segment, so tagging
a new snapshot turned a 10k index back into brute force until a rebuild of the graph (7 s at
10k on the busy machine, minutes at 100k).

Correctness needs the mirror to hold at least every version in the index (an extra version is
harmless: excluding a version no point has changes nothing). WatchlistIndex updates it after
each successful write, discards it when a write fails part-way, and reloads it from the index.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from .index_backends import Condition

FIELD = "entry_version"


@dataclass(frozen=True)
class Held:
    version: str
    deployments: frozenset[str]
    expires_at_ms: int


class HeldVersions:
    """What the index holds, per subject, and the snapshot conditions derived from it.

    Loaded from the points, a subject may show more than one version (a write interrupted
    between adding the new version and deleting the old): all are kept until the next write."""

    def __init__(self, held: Iterable[tuple[str, Held]] = (), cache_size: int = 64) -> None:
        self._held: dict[str, dict[str, Held]] = {}
        for subject_id, one in held:
            self._held.setdefault(subject_id, {})[one.version] = one
        self._generation = 0
        self._cache_size = cache_size
        # (id of the version set, deployment) -> (the set, generation, conditions): a
        # deployment's probes share one set object (its snapshot's), so each batch after the
        # first reuses the conditions until the index changes.
        self._cache: OrderedDict[tuple[int, str | None], tuple[Collection[str], int, tuple[tuple[Condition, ...], tuple[Condition, ...]]]] = OrderedDict()

    def put(self, subject_id: str, held: Held) -> None:
        """The subject now has this version only (an upsert deletes its other versions)."""
        self._held[subject_id] = {held.version: held}
        self._generation += 1

    def drop(self, subject_id: str) -> None:
        if self._held.pop(subject_id, None) is not None:
            self._generation += 1

    def drop_expired(self, now_ms: int) -> None:
        expired = [sid for sid, versions in self._held.items() if all(h.expires_at_ms <= now_ms for h in versions.values())]
        for sid in expired:
            del self._held[sid]
        if expired:
            self._generation += 1

    def conditions(self, versions: Collection[str], deployment: str | None) -> tuple[tuple[Condition, ...], tuple[Condition, ...]]:
        """(must, must_not) that keep exactly the points whose entry version is in ``versions``,
        among the points of ``deployment`` (None: all points)."""
        key = (id(versions), deployment)
        cached = self._cache.get(key)
        # Only immutable sets are cached by identity: a mutable set may change between calls.
        if cached is not None and cached[0] is versions and cached[1] == self._generation:
            self._cache.move_to_end(key)
            return cached[2]
        inside, outside = set(), set()
        for subject_versions in self._held.values():
            for held in subject_versions.values():
                if deployment is None or deployment in held.deployments:
                    (inside if held.version in versions else outside).add(held.version)
        if len(outside) <= len(inside):
            result = ((), (Condition.any_of(FIELD, sorted(outside)),) if outside else ())
        else:
            result = ((Condition.any_of(FIELD, sorted(inside)),), ())  # an empty list matches nothing
        if isinstance(versions, frozenset):
            self._cache[key] = (versions, self._generation, result)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result
