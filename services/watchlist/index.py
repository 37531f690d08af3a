"""The Qdrant index of the watchlist: derived data, rebuilt from lfr.watchlist.v1 at any time.

One collection per model identity (its name carries the model name and hash), so vectors of
different models can never be compared. One point per enrolment image; the payload carries
what matching needs (subject, category, priority, reference, expiry, deployments). Works the
same against a Qdrant server (production) and qdrant-client local mode (embedded default).
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from qdrant_client import QdrantClient, models

from services.common.errors import FatalError, TransientError
from services.face.models import ModelIdentity

from services.deployments.snapshot import entry_version

from .entry import WatchlistEntry

logger = logging.getLogger(__name__)

_POINT_NAMESPACE = uuid.UUID("5b6f3f38-7c1e-4f0e-9d55-0c0a1f6c2e11")


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


def connect(url: str | None, api_key: str | None, path: str) -> QdrantClient:
    """A server when ``url`` is set, else local mode on ``path`` (":memory:" for no files)."""
    if url:
        return QdrantClient(url=url, api_key=api_key, timeout=10)
    if path == ":memory:":
        return QdrantClient(location=":memory:")
    return QdrantClient(path=path)


@contextmanager
def _transient_on_outage() -> Iterator[None]:
    """Network and server-side failures are transient: the batch is retried, not dead-lettered."""
    try:
        yield
    except (ConnectionError, TimeoutError) as exc:
        raise TransientError(f"qdrant unavailable: {type(exc).__name__}") from exc
    except Exception as exc:
        name = type(exc).__name__
        status = getattr(exc, "status_code", None)
        if name in ("ResponseHandlingException", "ConnectError", "ReadTimeout", "ConnectTimeout", "RpcError", "AioRpcError") or (
            isinstance(status, int) and status >= 500
        ):
            raise TransientError(f"qdrant unavailable: {name}") from exc
        # Refused credentials or a missing collection fail every probe alike: stop the service
        # (FatalError) rather than dead-letter a stream of faces.
        if status in (401, 403):
            raise IndexRefused(f"qdrant refused the request (HTTP {status}): check LFR_QDRANT_API_KEY", "index_unauthorised") from exc
        if status == 404 or (isinstance(exc, ValueError) and "not found" in str(exc)):
            raise IndexRefused(f"qdrant collection missing: {str(exc)[:200]}", "index_missing") from exc
        raise


class IndexRefused(FatalError):
    """Qdrant refuses every request alike (credentials, missing collection)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class WatchlistIndex:
    """Search and maintenance of one model's watchlist collection. Thread-safe."""

    def __init__(self, client: QdrantClient, model: ModelIdentity, dim: int = 128) -> None:
        self.client = client
        self.model = model
        self.dim = dim
        self.collection = collection_name(model)
        self._lock = threading.RLock()  # local mode is not safe across threads

    def ensure_collection(self) -> None:
        with self._lock, _transient_on_outage():
            if not self.client.collection_exists(self.collection):
                self.client.create_collection(
                    self.collection, vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
                )
                with warnings.catch_warnings():
                    # Local mode ignores payload indexes (and says so); a server uses them for filters.
                    warnings.filterwarnings("ignore", message="Payload indexes have no effect")
                    for field_name in ("category", "deployments", "subject_id", "entry_version"):
                        self.client.create_payload_index(self.collection, field_name, models.PayloadSchemaType.KEYWORD)
                    self.client.create_payload_index(self.collection, "expires_at_ms", models.PayloadSchemaType.INTEGER)

    def upsert(self, entry: WatchlistEntry) -> int:
        """Replace the subject's points by the entry's vectors for this model; returns the count."""
        points = self._points(entry)
        with self._lock, _transient_on_outage():
            self._delete_where("subject_id", entry.subject_id)
            if points:
                self.client.upsert(self.collection, points=points, wait=True)
        if not points:
            logger.warning("entry has no embedding for this model; not searchable", extra={"model": str(self.model)})
        return len(points)

    def add_new(self, entries: Iterable[WatchlistEntry], chunk: int = 1000) -> int:
        """Bulk insert subjects not yet in the collection (no per-subject delete: linear, not quadratic)."""
        count = 0
        batch: list[models.PointStruct] = []
        for entry in entries:
            batch.extend(self._points(entry))
            if len(batch) >= chunk:
                count += self._upsert_points(batch)
                batch = []
        return count + (self._upsert_points(batch) if batch else 0)

    def _upsert_points(self, points: list[models.PointStruct]) -> int:
        with self._lock, _transient_on_outage():
            self.client.upsert(self.collection, points=points, wait=True)
        return len(points)

    def _points(self, entry: WatchlistEntry) -> list[models.PointStruct]:
        vectors = entry.vectors_for(self.model)
        payload = {
            "subject_id": entry.subject_id,
            "category": entry.category,
            "priority": entry.priority,
            "reference": entry.reference,
            "expires_at_ms": entry.expires_at_ms,
            "deployments": list(entry.deployments),
            # A deployment's snapshot names the entry versions it may match (services/deployments).
            "entry_version": entry_version(entry),
        }
        return [
            models.PointStruct(id=str(uuid.uuid5(_POINT_NAMESPACE, f"{entry.subject_id}/{i}")), vector=v.tolist(), payload=payload)
            for i, v in enumerate(vectors)
        ]

    def remove(self, subject_id: str) -> None:
        with self._lock, _transient_on_outage():
            self._delete_where("subject_id", subject_id)

    def remove_expired(self, now_ms: int) -> int:
        expired = models.Filter(must=[models.FieldCondition(key="expires_at_ms", range=models.Range(lte=now_ms))])
        with self._lock, _transient_on_outage():
            count = self.client.count(self.collection, count_filter=expired, exact=True).count
            if count:
                self.client.delete(self.collection, points_selector=models.FilterSelector(filter=expired), wait=True)
        return count

    def subjects(self) -> set[str]:
        found: set[str] = set()
        offset = None
        with self._lock, _transient_on_outage():
            while True:
                points, offset = self.client.scroll(self.collection, limit=1000, offset=offset, with_payload=["subject_id"], with_vectors=False)
                found.update(p.payload["subject_id"] for p in points)
                if offset is None:
                    return found

    def drop_other_models(self) -> list[str]:
        """Drop the watchlist collections of models no longer configured: their vectors are
        embeddings of people, derived from a topic that may since have removed them."""
        with self._lock, _transient_on_outage():
            names = [c.name for c in self.client.get_collections().collections]
            stale = [n for n in names if n.startswith(COLLECTION_PREFIX) and n != self.collection]
            for name in stale:
                self.client.delete_collection(name)
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
    ) -> list[list[Candidate]]:
        """Best candidates per query vector, one per subject, best first: one batched call.

        ``versions`` (one set per vector) restricts each search to those entry versions, inside
        the query (a deployment's snapshot); an empty set searches nothing.
        """
        if len(vectors) == 0:
            return []
        excluded = list(exclude)
        requests = []
        for i, (vector, deployment) in enumerate(zip(vectors, deployments, strict=True)):
            must = [models.FieldCondition(key="expires_at_ms", range=models.Range(gt=now_ms))]
            if deployment is not None:
                must.append(models.FieldCondition(key="deployments", match=models.MatchValue(value=deployment)))
            if versions is not None:
                must.append(models.FieldCondition(key="entry_version", match=models.MatchAny(any=sorted(versions[i]) or [""])))
            must_not = [models.FieldCondition(key="subject_id", match=models.MatchAny(any=excluded))] if excluded else None
            # Several points may belong to one subject; over-fetch, then keep each subject's best.
            requests.append(
                models.QueryRequest(
                    query=np.asarray(vector, dtype=np.float32).tolist(),
                    filter=models.Filter(must=must, must_not=must_not),
                    limit=limit * 4,
                    with_payload=True,
                )
            )
        with self._lock, _transient_on_outage():
            responses = self.client.query_batch_points(self.collection, requests=requests)
        results = []
        for response in responses:
            best: dict[str, Candidate] = {}
            for point in response.points:
                payload = point.payload or {}
                sid = payload["subject_id"]
                if sid not in best:
                    best[sid] = Candidate(sid, float(point.score), payload["category"], payload["priority"], payload["reference"])
            results.append(sorted(best.values(), key=lambda c: -c.score)[:limit])
        return results

    def _delete_where(self, key: str, value: str) -> None:
        selector = models.FilterSelector(filter=models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))]))
        self.client.delete(self.collection, points_selector=selector, wait=True)
