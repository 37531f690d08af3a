"""Storage engines behind WatchlistIndex: one small interface, three backends.

- ``EdgeBackend``: Qdrant's engine in process (``qdrant-edge-py``), the embedded default. One
  EdgeShard per collection, in a directory of its own; payload indexes make the deployment,
  expiry, category and snapshot filters cheap inside the query.
- ``ClientBackend`` over a ``QdrantClient``: a Qdrant server (``LFR_QDRANT_URL``), or
  qdrant-client's local mode (pure Python; filters are evaluated point by point, fine for the
  tests and a few hundred subjects, far too slow at force scale: benchmarks/README.md).

WatchlistIndex builds its filters from the neutral ``Filter``/``Condition`` below, so a new
filter (a snapshot, a category list) is written once and every backend runs it in the query.
Every query, count, delete and scroll names one force (``require_tenant``), the tenant field.
Collections are named by the caller; ``collection_names`` and ``drop_collection`` let a caller
remove collections of models that are no longer configured.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import warnings
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from services.common.errors import FatalError, TransientError

logger = logging.getLogger(__name__)

#: Payload fields the index filters on, with their index type.
KEYWORD_FIELDS = ("category", "deployments", "subject_id", "entry_version")
INTEGER_FIELDS = ("expires_at_ms",)
#: The tenant: the force a point belongs to (services/governance/forces). Indexed as Qdrant's tenant
#: keyword index (``is_tenant``: points stored and searched per tenant) on a server, local mode
#: and the edge engine alike; every query, count, delete and scroll must carry it.
TENANT_FIELD = "force"


@dataclass(frozen=True)
class Condition:
    """One payload condition: ``key == value``, ``key in values``, or a numeric bound."""

    key: str
    kind: Literal["match", "any", "gt", "lte"]
    value: Any

    @staticmethod
    def match(key: str, value: str) -> "Condition":
        return Condition(key, "match", value)

    @staticmethod
    def any_of(key: str, values: Sequence[str]) -> "Condition":
        # An empty list matches nothing in our semantics; Qdrant rejects or ignores empty lists,
        # so use a value no payload holds.
        return Condition(key, "any", tuple(values) or ("",))

    @staticmethod
    def greater(key: str, value: int) -> "Condition":
        return Condition(key, "gt", value)

    @staticmethod
    def at_most(key: str, value: int) -> "Condition":
        return Condition(key, "lte", value)


@dataclass(frozen=True)
class Filter:
    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class IndexPoint:
    id: str
    vector: np.ndarray
    payload: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class IndexBackend(Protocol):
    """What WatchlistIndex needs from a vector store. Calls are serialised by the caller."""

    kind: str

    def ensure_collection(self, collection: str, dim: int) -> None: ...
    def upsert(self, collection: str, points: Sequence[IndexPoint]) -> None: ...
    def delete(self, collection: str, where: Filter) -> None: ...
    def count(self, collection: str, where: Filter) -> int: ...
    def payload_values(self, collection: str, key: str, where: Filter) -> set[str]: ...
    def payloads(self, collection: str, keys: Sequence[str], where: Filter) -> Iterator[dict[str, Any]]: ...
    def query_batch(
        self, collection: str, queries: Sequence[tuple[np.ndarray, Filter]], limit: int, fields: Sequence[str]
    ) -> list[list[Hit]]: ...
    def optimize(self, collection: str) -> None: ...
    def collection_names(self) -> list[str]: ...
    def drop_collection(self, collection: str) -> None: ...
    def vectors(self, collection: str) -> Iterator[tuple[str, np.ndarray]]: ...
    def close(self) -> None: ...


@contextmanager
def transient_on_outage() -> Iterator[None]:
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


def require_tenant(where: Filter) -> Filter:
    """``where`` if it names one force (a ``force`` match among its musts); else IndexRefused:
    a query without a force could read or change another force's watchlist, so none runs."""
    if not any(c.key == TENANT_FIELD and c.kind == "match" and isinstance(c.value, str) and c.value for c in where.must):
        raise IndexRefused("watchlist index: a query without a force is refused", "index_no_tenant")
    return where


# --------------------------------------------------------------------------- qdrant-client


class ClientBackend:
    """A Qdrant server, or qdrant-client local mode: the same client API, one code path."""

    def __init__(self, client: Any, kind: str = "client") -> None:
        from qdrant_client import QdrantClient  # noqa: PLC0415 - only this backend needs it

        if not isinstance(client, QdrantClient):
            raise TypeError("ClientBackend needs a QdrantClient, got %s" % type(client).__name__)
        self.client = client
        self.kind = kind  # "server" or "local", for logs and benchmarks

    @staticmethod
    def _filter(where: Filter):
        from qdrant_client import models  # noqa: PLC0415

        def condition(c: Condition):
            if c.kind == "match":
                return models.FieldCondition(key=c.key, match=models.MatchValue(value=c.value))
            if c.kind == "any":
                return models.FieldCondition(key=c.key, match=models.MatchAny(any=list(c.value)))
            if c.kind == "gt":
                return models.FieldCondition(key=c.key, range=models.Range(gt=c.value))
            return models.FieldCondition(key=c.key, range=models.Range(lte=c.value))

        return models.Filter(
            must=[condition(c) for c in where.must] or None, must_not=[condition(c) for c in where.must_not] or None
        )

    def ensure_collection(self, collection: str, dim: int) -> None:
        from qdrant_client import models  # noqa: PLC0415

        with transient_on_outage():
            if self.client.collection_exists(collection):
                return
            self.client.create_collection(collection, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))
            with warnings.catch_warnings():
                # Local mode ignores payload indexes (and says so); a server uses them for filters.
                warnings.filterwarnings("ignore", message="Payload indexes have no effect")
                for name in KEYWORD_FIELDS:
                    self.client.create_payload_index(collection, name, models.PayloadSchemaType.KEYWORD)
                for name in INTEGER_FIELDS:
                    self.client.create_payload_index(collection, name, models.PayloadSchemaType.INTEGER)
                self.client.create_payload_index(collection, TENANT_FIELD, models.KeywordIndexParams(type="keyword", is_tenant=True))

    def upsert(self, collection: str, points: Sequence[IndexPoint]) -> None:
        from qdrant_client import models  # noqa: PLC0415

        structs = [models.PointStruct(id=p.id, vector=np.asarray(p.vector, np.float32).tolist(), payload=p.payload) for p in points]
        with transient_on_outage():
            self.client.upsert(collection, points=structs, wait=True)

    def delete(self, collection: str, where: Filter) -> None:
        from qdrant_client import models  # noqa: PLC0415

        with transient_on_outage():
            self.client.delete(collection, points_selector=models.FilterSelector(filter=self._filter(require_tenant(where))), wait=True)

    def count(self, collection: str, where: Filter) -> int:
        with transient_on_outage():
            return self.client.count(collection, count_filter=self._filter(require_tenant(where)), exact=True).count

    def payload_values(self, collection: str, key: str, where: Filter) -> set[str]:
        """``key`` of every point ``where`` selects (one force's)."""
        scope = self._filter(require_tenant(where))
        found: set[str] = set()
        offset = None
        with transient_on_outage():
            while True:
                points, offset = self.client.scroll(collection, scroll_filter=scope, limit=1000, offset=offset, with_payload=[key],
                                                    with_vectors=False)
                found.update(p.payload[key] for p in points)
                if offset is None:
                    return found

    def payloads(self, collection: str, keys: Sequence[str], where: Filter) -> Iterator[dict[str, Any]]:
        """These payload fields of every point ``where`` selects (one force's), page by page."""
        scope = self._filter(require_tenant(where))
        offset = None
        while True:
            with transient_on_outage():
                points, offset = self.client.scroll(collection, scroll_filter=scope, limit=1000, offset=offset, with_payload=list(keys),
                                                    with_vectors=False)
            for point in points:
                yield point.payload or {}
            if offset is None:
                return

    def query_batch(
        self, collection: str, queries: Sequence[tuple[np.ndarray, Filter]], limit: int, fields: Sequence[str]
    ) -> list[list[Hit]]:
        from qdrant_client import models  # noqa: PLC0415

        requests = [
            models.QueryRequest(
                query=np.asarray(vector, dtype=np.float32).tolist(), filter=self._filter(require_tenant(where)), limit=limit,
                with_payload=list(fields)
            )
            for vector, where in queries
        ]
        with transient_on_outage():
            responses = self.client.query_batch_points(collection, requests=requests)
        return [[Hit(float(p.score), p.payload or {}) for p in response.points] for response in responses]

    def optimize(self, collection: str) -> None:
        """Nothing to do: a server optimises in the background, local mode never indexes."""

    def vectors(self, collection: str) -> Iterator[tuple[str, np.ndarray]]:
        """Every point's id and vector (what `lfr privacy audit` reads), page by page."""
        offset = None
        while True:
            with transient_on_outage():
                points, offset = self.client.scroll(collection, limit=256, offset=offset, with_vectors=True, with_payload=False)
            for point in points:
                yield str(point.id), np.asarray(point.vector, np.float32)
            if offset is None:
                return

    def collection_names(self) -> list[str]:
        with transient_on_outage():
            return [c.name for c in self.client.get_collections().collections]

    def drop_collection(self, collection: str) -> None:
        with transient_on_outage():
            self.client.delete_collection(collection)

    def close(self) -> None:
        self.client.close()


# --------------------------------------------------------------------------- qdrant-edge


def _edge():
    import qdrant_edge  # noqa: PLC0415 - imported on first use: the server path never needs it

    return qdrant_edge


TEMP_PREFIX = "lfr-qdrant-edge-"


def sweep_orphaned_indexes(base: Path) -> list[Path]:
    """Delete the temporary index directories of processes that are gone. A process killed with
    SIGKILL never runs its cleanup, and its directory (watchlist embeddings, in memory-backed
    /dev/shm but alive until reboot) would outlive the watchlist it was built from. The owner's
    pid is in the name; a directory whose owner still runs (or that we cannot tell) is kept."""
    removed = []
    for path in base.glob(f"{TEMP_PREFIX}*"):
        pid_text = path.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            logger.info("removed the index directory of a process that is gone", extra={"path": str(path)})
        except PermissionError:
            continue  # another user's live process
    return removed


class EdgeBackend:
    """Qdrant's own engine in process: one EdgeShard per collection under ``root``.

    ``root=None`` keeps the shards in a private temporary directory (in /dev/shm where there is
    one, so nothing reaches a disk) that is deleted on close or when the backend is collected;
    the watchlist index is derived data, rebuilt from the topic at start. ``optimize`` (after
    bulk loads) gives the collection an HNSW graph over int8-quantised vectors (rescored with
    the float ones); a query whose filter leaves fewer than about 2,000 points is answered
    exactly through the payload index instead, and so are points written since the last
    optimise (an update moves a point out of the indexed segment).

    Why this configuration (benchmarks/README.md, "Matcher"): brute force costs the engine
    about 21 ns per point per query (3.4 ms per batch of 16 at 10k subjects, before filters),
    HNSW over int8 vectors with the settings below 2.1 ms at recall@1 1.0; m = 32 keeps recall
    at 100k, where m = 16 lost it (the 100k build took 31 s to 87 s on the loaded machine).
    """

    kind = "edge"
    HNSW_M = 32
    HNSW_EF_CONSTRUCT = 100
    #: Filters leaving fewer vectors than this (in KB of float vectors: 1,000 KB is about 2,000
    #: vectors of 128 floats) are searched exactly through the payload index.
    FULL_SCAN_THRESHOLD_KB = 1_000
    #: Segments above this size (KB) get an HNSW graph when ``optimize`` runs: about 200 vectors.
    INDEXING_THRESHOLD_KB = 100
    #: Candidates explored per HNSW search, by collection size: HNSW's recall at a fixed ef
    #: falls as the graph grows. Measured on random unit vectors (HNSW's hardest case; face
    #: embeddings cluster), recall@1 against exact: ef 64 gave 1.0 at 10k and 0.984 at 100k,
    #: ef 128 gave 1.0 at 100k at 1.6x the cost.
    HNSW_EF_SMALL, HNSW_EF_LARGE, LARGE_POINTS = 64, 128, 32_000

    def __init__(self, root: str | Path | None = None, search_threads: int = 1) -> None:
        """``search_threads``: the engine's search pool. One by default, like our onnxruntime
        sessions: services scale by processes, and on a busy 2-core machine handing each query
        to a second thread cost more than it saved (1k subjects: 3.5 ms against 0.85 ms per
        batch of 16, measured under load)."""
        qe = _edge()
        self._qe = qe
        self._search_threads = search_threads
        self._temporary = root is None
        if root is None:
            shm = Path("/dev/shm")
            base = str(shm) if shm.is_dir() and _writable(shm) else None
            sweep_orphaned_indexes(Path(base or tempfile.gettempdir()))
            root = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=base)
            self._cleanup = weakref.finalize(self, shutil.rmtree, root, True)
        else:
            Path(root).mkdir(parents=True, exist_ok=True)
            self._cleanup = None
        self.root = Path(root)
        self._shards: dict[str, Any] = {}
        self._lock = threading.Lock()
        # Rescored with the float vectors: the matcher compares scores with thresholds, so a
        # score must be the exact cosine, not its int8 estimate.
        rescore = qe.QuantizationSearchParams(rescore=True)
        self._params_small = qe.SearchParams(hnsw_ef=self.HNSW_EF_SMALL, quantization=rescore)
        self._params_large = qe.SearchParams(hnsw_ef=self.HNSW_EF_LARGE, quantization=rescore)
        self._large: dict[str, bool] = {}  # collection -> over LARGE_POINTS at its last optimise

    def _path(self, collection: str) -> Path:
        return self.root / collection

    def _config(self, dim: int):
        qe = self._qe
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            # Payload in RAM: the filters read it for every candidate.
            payload_memory=qe.Memory.Cached,
            # A temporary index is rebuilt from the topic, so a write-ahead log buys nothing.
            wal_enabled=not self._temporary,
            max_search_threads=self._search_threads,
            hnsw_config=qe.HnswIndexConfig(m=self.HNSW_M, ef_construct=self.HNSW_EF_CONSTRUCT,
                                           full_scan_threshold=self.FULL_SCAN_THRESHOLD_KB),
            quantization_config=qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=True),
            # One segment: one graph to search, not one per segment.
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=self.INDEXING_THRESHOLD_KB, default_segment_number=1),
        )

    def _shard(self, collection: str):
        shard = self._shards.get(collection)
        if shard is None:
            path = self._path(collection)
            if not path.is_dir():
                raise IndexRefused("qdrant collection missing: %s" % collection, "index_missing")
            shard = self._shards[collection] = self._qe.EdgeShard.load(str(path))
        return shard

    def ensure_collection(self, collection: str, dim: int) -> None:
        qe = self._qe
        with self._lock:
            path = self._path(collection)
            if collection in self._shards:
                return
            if path.is_dir() and any(path.iterdir()):
                self._shards[collection] = qe.EdgeShard.load(str(path))
                return
            shard = qe.EdgeShard.create(str(path), self._config(dim))
            for name in KEYWORD_FIELDS:
                shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
            for name in INTEGER_FIELDS:
                shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Integer))
            shard.update(qe.UpdateOperation.create_field_index(TENANT_FIELD, qe.KeywordIndexParams(is_tenant=True)))
            self._shards[collection] = shard

    def _filter(self, where: Filter):
        qe = self._qe

        def condition(c: Condition):
            if c.kind == "match":
                return qe.FieldCondition(key=c.key, match=qe.MatchValue(c.value))
            if c.kind == "any":
                return qe.FieldCondition(key=c.key, match=qe.MatchAny(list(c.value)))
            if c.kind == "gt":
                return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gt=float(c.value)))
            return qe.FieldCondition(key=c.key, range=qe.RangeFloat(lte=float(c.value)))

        if not where.must and not where.must_not:
            return None
        return qe.Filter(must=[condition(c) for c in where.must] or None, must_not=[condition(c) for c in where.must_not] or None)

    def upsert(self, collection: str, points: Sequence[IndexPoint]) -> None:
        qe = self._qe
        if points:
            self._shard(collection).update(
                qe.UpdateOperation.upsert_points([qe.Point(p.id, np.asarray(p.vector, np.float32).tolist(), p.payload) for p in points])
            )

    def delete(self, collection: str, where: Filter) -> None:
        self._shard(collection).update(self._qe.UpdateOperation.delete_points_by_filter(self._filter(require_tenant(where))))

    def count(self, collection: str, where: Filter) -> int:
        return int(self._shard(collection).count(self._qe.CountRequest(exact=True, filter=self._filter(require_tenant(where)))))

    def payload_values(self, collection: str, key: str, where: Filter) -> set[str]:
        """``key`` of every point ``where`` selects (one force's)."""
        qe = self._qe
        shard = self._shard(collection)
        scope = self._filter(require_tenant(where))
        found: set[str] = set()
        offset = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1000, filter=scope, with_payload=qe.PayloadSelector.Include([key]), with_vector=False)
            )
            found.update(r.payload[key] for r in records if r.payload and key in r.payload)
            if offset is None:
                return found

    def payloads(self, collection: str, keys: Sequence[str], where: Filter) -> Iterator[dict[str, Any]]:
        """These payload fields of every point ``where`` selects (one force's), page by page."""
        qe = self._qe
        shard = self._shard(collection)
        scope = self._filter(require_tenant(where))
        offset = None
        while True:
            records, offset = shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1000, filter=scope, with_payload=qe.PayloadSelector.Include(list(keys)),
                                 with_vector=False)
            )
            for record in records:
                yield record.payload or {}
            if offset is None:
                return

    def query_batch(
        self, collection: str, queries: Sequence[tuple[np.ndarray, Filter]], limit: int, fields: Sequence[str]
    ) -> list[list[Hit]]:
        qe = self._qe
        selector = qe.PayloadSelector.Include(list(fields))
        params = self._params_large if self._large.get(collection) else self._params_small
        converted: dict[int, Any] = {}  # one engine filter per distinct Filter object in the batch
        requests = []
        for vector, where in queries:
            engine_filter = converted.get(id(where))
            if engine_filter is None:
                engine_filter = converted[id(where)] = self._filter(require_tenant(where))
            requests.append(
                qe.QueryRequest(
                    limit=limit,
                    query=qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
                    filter=engine_filter,
                    with_payload=selector,
                    params=params,
                )
            )
        responses = self._shard(collection).query_batch(qe.QueryBatchRequest(requests))
        return [[Hit(float(p.score), p.payload or {}) for p in points] for points in responses]

    def optimize(self, collection: str) -> None:
        shard = self._shard(collection)
        shard.optimize()
        self._large[collection] = shard.info().points_count > self.LARGE_POINTS

    def vectors(self, collection: str) -> Iterator[tuple[str, np.ndarray]]:
        """Every point's id and vector (what `lfr privacy audit` reads), page by page."""
        qe = self._qe
        shard = self._shard(collection)
        offset = None
        while True:
            records, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=256, with_payload=False, with_vector=True))
            for record in records:
                yield str(record.id), np.asarray(record.vector, np.float32)
            if offset is None:
                return

    def collection_names(self) -> list[str]:
        with self._lock:
            return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def drop_collection(self, collection: str) -> None:
        with self._lock:
            shard = self._shards.pop(collection, None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._path(collection), ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                if not self._temporary:
                    shard.flush()
                shard.close()
            self._shards.clear()
        if self._cleanup is not None:
            self._cleanup()


def _writable(path: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False
