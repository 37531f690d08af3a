"""The watchlist index: derived data, rebuilt from lfr.watchlist.v1 at any time.

One collection per model identity (its name carries the model name and hash), so vectors of
different models can never be compared. One point per enrolment image; the payload carries
what matching needs (subject, category, priority, reference, expiry, deployments, entry
version). The storage engine is a backend (services/governance/watchlist/index_backends.py) chosen by
settings through ``connect``: a Qdrant server when ``LFR_QDRANT_URL`` is set, else Qdrant's
in-process engine (qdrant-edge-py, the embedded default) or qdrant-client local mode
(``LFR_QDRANT_EMBEDDED=local``). Every filter (deployment, expiry, snapshot, category,
exclusions) is part of the query on all three.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from services.common.errors import MessageError
from services.governance.deployments.snapshot import entry_version
from services.engine.face.models import ModelIdentity
from services.governance.forces.naming import DEFAULT_FORCE, check_force_id

from .entry import WatchlistEntry
from .snapshot_scope import Held, HeldVersions
from .index_backends import (  # noqa: F401
    TENANT_FIELD,
    ClientBackend,
    Condition,
    EdgeBackend,
    Filter,
    IndexBackend,
    IndexPoint,
    IndexRefused,
)

logger = logging.getLogger(__name__)

_POINT_NAMESPACE = uuid.UUID("5b6f3f38-7c1e-4f0e-9d55-0c0a1f6c2e11")
_CANDIDATE_FIELDS = ("subject_id", "category", "priority", "reference")

EmbeddedEngine = Literal["edge", "local"]


class EntryRefused(MessageError):
    """A watchlist entry this index cannot hold (wrong vector size): skipped and reported."""


@dataclass(frozen=True)
class Candidate:
    subject_id: str
    score: float
    category: str
    priority: str
    reference: str


COLLECTION_PREFIX = "lfr_watchlist__"


def collection_name(model: ModelIdentity) -> str:
    return COLLECTION_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", model.name) + "__" + model.sha256[:12]


def connect(url: str | None, api_key: str | None, path: str, embedded: EmbeddedEngine = "edge") -> IndexBackend:
    """A server when ``url`` is set; else the embedded engine on ``path`` (":memory:" = no files).

    ``embedded="edge"`` is Qdrant's engine in process (qdrant-edge-py); ``"local"`` is
    qdrant-client local mode, kept for comparison and for setups without the edge wheel.
    """
    if url:
        from qdrant_client import QdrantClient  # noqa: PLC0415

        return ClientBackend(QdrantClient(url=url, api_key=api_key, timeout=10), kind="server")
    if embedded == "edge":
        return EdgeBackend(None if path == ":memory:" else path)
    if embedded != "local":
        raise ValueError("embedded engine must be 'edge' or 'local', got %r" % embedded)
    from qdrant_client import QdrantClient  # noqa: PLC0415

    client = QdrantClient(location=":memory:") if path == ":memory:" else QdrantClient(path=path)
    return ClientBackend(client, kind="local")


def _as_backend(store: Any) -> IndexBackend:
    """Accept a backend, or a bare QdrantClient (wrapped: older callers and tests pass one)."""
    if hasattr(store, "query_batch") and hasattr(store, "ensure_collection"):
        return store
    return ClientBackend(store, kind="client")


class WatchlistIndex:
    """Search and maintenance of one force's watchlist in one model's collection. Thread-safe.

    The collection is shared by every force (one per model); each point carries its ``force``
    (the tenant field) and every query, count, delete and scroll this class makes names
    ``force``: it can neither see nor change another force's points (the backends refuse a
    query without a force).
    """

    def __init__(self, backend: IndexBackend | Any, model: ModelIdentity, dim: int = 128, *, force: str = DEFAULT_FORCE) -> None:
        self.backend = _as_backend(backend)
        self.model = model
        self.dim = dim
        self.force = check_force_id(force)
        self._tenant = Condition.match(TENANT_FIELD, force)
        self.collection = collection_name(model)
        self._lock = threading.RLock()  # local mode and edge shards are used from one thread at a time
        # What the collection holds per subject, for snapshot filters (snapshot_scope.py);
        # None until a snapshot search needs it, and again after a write that failed part-way.
        self._held: HeldVersions | None = None

    @property
    def client(self) -> Any:
        """The QdrantClient of a server or local-mode backend (None for the edge engine)."""
        return getattr(self.backend, "client", None)

    def ensure_collection(self) -> None:
        with self._lock:
            self.backend.ensure_collection(self.collection, self.dim)

    def check(self, entry: WatchlistEntry) -> None:
        """Raise EntryRefused unless every vector of this model fits the collection."""
        for vector in entry.vectors_for(self.model):
            if vector.shape != (self.dim,):
                raise EntryRefused(f"entry has a {vector.shape[0]}-dim vector for {self.model}; the index holds {self.dim}")

    def upsert(self, entry: WatchlistEntry) -> int:
        """Replace the subject's points by the entry's vectors for this model; returns the count.

        New points are written first (ids derive from subject and position, so they overwrite
        in place) and only then are the subject's points of other entry versions deleted: a
        refused or failed update leaves the old entry searchable instead of removing the subject.
        """
        self.check(entry)
        points = self._points(entry)
        with self._lock, self._tracking_writes():
            if points:
                self.backend.upsert(self.collection, points)
                stale = Filter(must=self._subject_is(entry.subject_id).must,
                               must_not=(Condition.match("entry_version", entry_version(entry)),))
            else:
                stale = self._subject_is(entry.subject_id)
            self.backend.delete(self.collection, stale)
            self._hold(entry.subject_id, points)
        if not points:
            logger.warning("entry has no embedding for this model; not searchable", extra={"model": str(self.model)})
        return len(points)

    def add_new(self, entries: Iterable[WatchlistEntry], chunk: int = 1000) -> int:
        """Bulk insert subjects not yet in the collection (no per-subject delete: linear, not quadratic).

        Ends with the engine's optimisation pass (an HNSW index on a large edge collection).
        """
        count = 0
        batch: list[IndexPoint] = []
        for entry in entries:
            batch.extend(self._points(entry))
            if len(batch) >= chunk:
                count += self._upsert_points(batch)
                batch = []
        count += self._upsert_points(batch) if batch else 0
        with self._lock:
            self.backend.optimize(self.collection)
        return count

    def _upsert_points(self, points: list[IndexPoint]) -> int:
        with self._lock, self._tracking_writes():
            self.backend.upsert(self.collection, points)
            for point in points:
                self._hold(point.payload["subject_id"], [point])
        return len(points)

    @contextmanager
    def _tracking_writes(self) -> Iterator[None]:
        """A write that fails part-way leaves the held versions unknown: reload them when next needed."""
        try:
            yield
        except BaseException:
            self._held = None
            raise

    def _hold(self, subject_id: str, points: Sequence[IndexPoint]) -> None:
        if self._held is None:
            return  # loaded from the collection when a snapshot search needs it
        if not points:
            self._held.drop(subject_id)
            return
        payload = points[0].payload
        self._held.put(subject_id, Held(payload["entry_version"], frozenset(payload["deployments"]), payload["expires_at_ms"]))

    def _held_versions(self) -> HeldVersions:
        if self._held is None:
            self._held = HeldVersions(
                (p["subject_id"], Held(p["entry_version"], frozenset(p["deployments"]), p["expires_at_ms"]))
                for p in self.backend.payloads(self.collection, ("subject_id", "entry_version", "deployments", "expires_at_ms"),
                                               Filter(must=(self._tenant,)))
            )
        return self._held

    def _points(self, entry: WatchlistEntry) -> list[IndexPoint]:
        vectors = entry.vectors_for(self.model)
        payload = {
            "subject_id": entry.subject_id,
            "category": entry.category,
            "priority": entry.priority,
            "reference": entry.reference,
            "expires_at_ms": entry.expires_at_ms,
            "deployments": list(entry.deployments),
            # A deployment's snapshot names the entry versions it may match (services/governance/deployments).
            "entry_version": entry_version(entry),
            TENANT_FIELD: self.force,
        }
        # Force default keeps the ids it always had; another force's never collide with them.
        owner = "" if self.force == DEFAULT_FORCE else f"{self.force}/"
        return [
            IndexPoint(str(uuid.uuid5(_POINT_NAMESPACE, f"{owner}{entry.subject_id}/{i}")), np.asarray(v, dtype=np.float32), payload)
            for i, v in enumerate(vectors)
        ]

    def remove(self, subject_id: str) -> None:
        with self._lock, self._tracking_writes():
            self.backend.delete(self.collection, self._subject_is(subject_id))
            self._hold(subject_id, [])

    def remove_expired(self, now_ms: int) -> int:
        expired = Filter(must=(self._tenant, Condition.at_most("expires_at_ms", now_ms)))
        with self._lock, self._tracking_writes():
            count = self.backend.count(self.collection, expired)
            if count:
                self.backend.delete(self.collection, expired)
                if self._held is not None:
                    self._held.drop_expired(now_ms)
        return count

    def subjects(self) -> set[str]:
        with self._lock:
            return self.backend.payload_values(self.collection, "subject_id", Filter(must=(self._tenant,)))

    def drop_other_models(self) -> list[str]:
        """Drop the watchlist collections of models no longer configured: their vectors are
        embeddings of people, derived from a topic that may since have removed them."""
        with self._lock:
            names = self.backend.collection_names()
            stale = [n for n in names if n.startswith(COLLECTION_PREFIX) and n != self.collection]
            for name in stale:
                self.backend.drop_collection(name)
        if stale:
            logger.info("watchlist collections of other models dropped", extra={"collections": stale})
        return stale

    def rebuild(self, entries: Mapping[str, WatchlistEntry], now_ms: int) -> None:
        """Make the collection hold exactly the live entries (idempotent; safe for replicas)."""
        self.ensure_collection()
        self.drop_other_models()
        live = {sid: e for sid, e in entries.items() if not e.is_expired(now_ms)}
        present = self.subjects()
        for stale in present - set(live):
            self.remove(stale)
        for sid in present & set(live):
            self.upsert(live[sid])  # may have changed: replace its points
        self.add_new(e for sid, e in live.items() if sid not in present)
        logger.info("watchlist index rebuilt", extra={"collection": self.collection, "subjects": len(live)})

    def search(
        self,
        vectors: np.ndarray,
        deployments: Sequence[str | None],
        now_ms: int,
        limit: int = 5,
        exclude: Iterable[str] = (),
        versions: Sequence[Collection[str]] | None = None,
        categories: Collection[str] | None = None,
    ) -> list[list[Candidate]]:
        """Best candidates per query vector, one per subject, best first: one batched call.

        Every restriction is part of the query: unexpired entries only; the probe's deployment
        (None: any); ``versions`` (one set per vector) restricts each search to those entry
        versions (a deployment's snapshot), an empty set searches nothing; ``categories``
        restricts to those watchlist categories; ``exclude`` drops subjects.
        """
        if len(vectors) == 0:
            return []
        excluded = tuple(exclude)
        must_not = (Condition.any_of("subject_id", excluded),) if excluded else ()
        category_condition = Condition.any_of("category", sorted(categories)) if categories is not None else None
        # Every probe of a deployment shares one filter object (the backend converts it once per
        # batch); a snapshot becomes the few versions it leaves out (snapshot_scope.py).
        filters: dict[tuple[str | None, int], Filter] = {}
        queries = []
        with self._lock:
            for i, (vector, deployment) in enumerate(zip(vectors, deployments, strict=True)):
                key = (deployment, id(versions[i]) if versions is not None else 0)
                where = filters.get(key)
                if where is None:
                    must = [self._tenant, Condition.greater("expires_at_ms", now_ms)]
                    if deployment is not None:
                        must.append(Condition.match("deployments", deployment))
                    not_in: tuple[Condition, ...] = ()
                    if versions is not None:
                        in_snapshot, not_in = self._held_versions().conditions(versions[i], deployment)
                        must.extend(in_snapshot)
                    if category_condition is not None:
                        must.append(category_condition)
                    where = filters[key] = Filter(must=tuple(must), must_not=must_not + not_in)
                queries.append((vector, where))
            # Several points may belong to one subject; over-fetch, then keep each subject's best.
            responses = self.backend.query_batch(self.collection, queries, limit * 4, _CANDIDATE_FIELDS)
        results = []
        for hits in responses:
            best: dict[str, Candidate] = {}
            for hit in hits:
                sid = hit.payload["subject_id"]
                if sid not in best:
                    best[sid] = Candidate(sid, hit.score, hit.payload["category"], hit.payload["priority"], hit.payload["reference"])
            results.append(sorted(best.values(), key=lambda c: -c.score)[:limit])
        return results

    def close(self) -> None:
        with self._lock:
            self.backend.close()

    def _subject_is(self, subject_id: str) -> Filter:
        return Filter(must=(self._tenant, Condition.match("subject_id", subject_id)))
