"""`lfr privacy audit`: read every store the product writes and report each place where a
stranger's frame, chip or embedding lies.

Method (precise, so a finding means the same thing everywhere):

1. **References.** What counts as a stranger's data is learnt from the pipeline's own biometric
   topics while they still hold it (on a production Kafka they hold the last minute):
   every frame image (a frame shows whoever walked past); every embedding on
   lfr.embeddings.v1 whose best cosine against the watchlist's enrolled vectors (read from
   lfr.watchlist.v1) is below the watchlist threshold, and the chip that came with it; every
   chip on lfr.faces.v1 that is not the chip of a listed person's embedding. Embeddings of
   known strangers can be added (``--strangers file.npy``, the conformance test does).
2. **Stores.** Every topic on the broker read from the beginning (dead letters and the
   dispatcher's changelog included), every Qdrant collection (server, or a copy of each
   local-mode path), every file under the product's data and cache directories, and the
   given service logs. Artefacts are found with services/governance/privacy/artefacts.py.
3. **Findings.** An artefact is a stranger's when its SHA-256 equals a reference's
   (``exact_bytes``) or, for a vector, its cosine to a reference embedding is at or above
   ``similarity`` (``embedding_similarity``; default the matcher's default threshold: the
   pipeline's own rule for "same person"). Outside the stores meant to hold biometrics (the
   pipeline's biometric topics, the watchlist topic and index), any image or embedding at all
   is also a finding (``unattributed``): nothing there may hold one. The pipeline's biometric
   topics themselves (declared biometric, delete policy, with a ``promise_ms`` that
   `lfr topics verify` checks) are not searched; their retention settings are verified
   instead. The dead-letter topic and the changelogs are always searched.

No finding ever carries the artefact itself: only where it is, its kind and how it was matched.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from confluent_kafka.admin import AdminClient

from services.common.topics import load_topic_specs
from services.common.topic_reader import read_to_end

from . import retention
from .artefacts import Artefact, digest, envelope_blobs, from_envelope_blobs, from_raw, from_value, unit_vector

WATCHLIST_TOPIC = "lfr.watchlist.v1"
_MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass
class References:
    digests: dict[str, str] = field(default_factory=dict)  # sha256 -> "frame" | "chip" | "embedding"
    vectors: list[np.ndarray] = field(default_factory=list)

    def matrix(self) -> np.ndarray:
        return np.stack(self.vectors) if self.vectors else np.zeros((0, 0), np.float32)

    def counts(self) -> dict[str, int]:
        kinds = list(self.digests.values())
        return {"frames": kinds.count("frame"), "chips": kinds.count("chip"), "embeddings": len(self.vectors)}


@dataclass(frozen=True)
class AuditOptions:
    kafka_config: dict[str, str]
    data_dirs: tuple[Path, ...] = ()
    log_paths: tuple[Path, ...] = ()
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_paths: tuple[Path, ...] = ()
    strangers: np.ndarray | None = None
    similarity: float = 0.5
    watchlist_threshold: float = 0.5
    read_timeout_s: float = 60.0


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def read_topic(config: dict[str, str], topic: str, partitions: Iterable[int], timeout_s: float) -> list[Record]:
    """Every record of ``topic`` from the beginning to the high watermark at the time of the call."""
    # A read that cannot reach the end raises (TimeoutError) rather than audit part of a topic.
    return [Record(topic, msg.partition(), msg.offset(), msg.key(), msg.value(), list(msg.headers() or []))
            for msg in read_to_end(config, topic, group_id="lfr-privacy-audit", timeout_s=timeout_s, partitions=partitions)]


def read_whole_topic(config: dict[str, str], topic: str, timeout_s: float = 30.0) -> list[Record]:
    partitions = AdminClient(config).list_topics(topic, timeout=10).topics[topic].partitions
    return read_topic(config, topic, partitions, timeout_s)


def build_references(records: dict[str, list[Record]], strangers: np.ndarray | None, threshold: float) -> References:
    refs = References()
    listed = []
    latest: dict[bytes | None, bytes | None] = {}
    for record in records.get(WATCHLIST_TOPIC, []):
        latest[record.key] = record.value
    for value in latest.values():
        blobs = envelope_blobs(value) if value else None
        listed += [a.vector for a in from_envelope_blobs(blobs or iter(())) if a.vector is not None]
    watchlist = np.stack(listed) if listed else np.zeros((0, 128), np.float32)
    listed_chips: set[str] = set()
    for record in records.get("lfr.frames.v1", []):
        for artefact in from_value(record.value):
            if artefact.kind == "image":
                refs.digests[artefact.sha256] = "frame"
    for record in records.get("lfr.embeddings.v1", []):
        artefacts = from_value(record.value)
        vectors = [a.vector for a in artefacts if a.vector is not None]
        chips = [a.sha256 for a in artefacts if a.kind == "image"]
        if not vectors:
            continue
        best = float(np.max(watchlist @ vectors[0])) if len(watchlist) and watchlist.shape[1] == len(vectors[0]) else -1.0
        if best >= threshold:
            listed_chips.update(chips)
            continue
        refs.vectors.append(vectors[0])
        refs.digests[digest(vectors[0].astype("<f4").tobytes())] = "embedding"
        for chip in chips:
            refs.digests[chip] = "chip"
    for record in records.get("lfr.faces.v1", []):
        for artefact in from_value(record.value):
            if artefact.kind == "image" and artefact.sha256 not in listed_chips:
                refs.digests.setdefault(artefact.sha256, "chip")
    if strangers is not None and len(strangers):
        refs.vectors.extend(np.asarray(strangers, np.float32))
    return refs


class Auditor:
    def __init__(self, options: AuditOptions) -> None:
        self.options = options
        self.findings: list[dict] = []
        self.checked: dict = {"topics": {}, "index_collections": {}, "files": 0, "file_bytes": 0, "logs": {}, "notes": []}
        self.refs = References()
        self._matrix = np.zeros((0, 0), np.float32)

    # -- classification ------------------------------------------------------------------------

    def classify(self, artefact: Artefact, store: str, location: str, biometric_store: bool) -> None:
        kind = self.refs.digests.get(artefact.sha256)
        finding = None
        if kind is not None:
            finding = {"kind": kind, "method": "exact_bytes", "score": 1.0}
        elif artefact.vector is not None and self._matrix.size and self._matrix.shape[1] == len(artefact.vector):
            score = float(np.max(self._matrix @ artefact.vector))
            if score >= self.options.similarity:
                finding = {"kind": "embedding", "method": "embedding_similarity", "score": round(score, 4)}
        if finding is None and not biometric_store:
            finding = {"kind": "embedding" if artefact.vector is not None else artefact.kind, "method": "unattributed", "score": None}
        if finding is not None:
            self.findings.append({"store": store, "location": f"{location} {artefact.where}".strip(), **finding})

    # -- stores ----------------------------------------------------------------------------------

    def audit_topics(self) -> None:
        config = self.options.kafka_config
        admin = AdminClient(config)
        metadata = admin.list_topics(timeout=30)
        declared = {s.name: s for s in load_topic_specs()}
        records: dict[str, list[Record]] = {}
        for name in sorted(metadata.topics):
            if name.startswith("__"):
                continue
            records[name] = read_topic(config, name, metadata.topics[name].partitions, self.options.read_timeout_s)
        self.refs = build_references(records, self.options.strangers, self.options.watchlist_threshold)
        self._matrix = self.refs.matrix()
        self.checked["references"] = self.refs.counts()
        for name, topic_records in records.items():
            spec = declared.get(name)
            # Exempt: the biometric topics whose retention promise `lfr topics verify` checks.
            exempt = spec is not None and spec.biometric and spec.promise_ms is not None and spec.config.get("cleanup.policy") == "delete"
            biometric = exempt or name == WATCHLIST_TOPIC  # the watchlist holds listed people by design
            role = "biometric: retention verified, not searched" if exempt else "searched"
            self.checked["topics"][name] = {"records": len(topic_records), "declared": spec is not None, "role": role}
            if exempt:
                continue
            for record in topic_records:
                where = f"{record.partition}/{record.offset}"
                for artefact in from_value(record.value, "value"):
                    self.classify(artefact, f"topic:{name}", where, biometric)
                for header, value in record.headers:
                    for artefact in from_raw(value or b"", f"header:{header}"):
                        self.classify(artefact, f"topic:{name}", where, biometric)
        try:
            verdict = retention.verify(admin)
            self.checked["retention"] = verdict.as_json()
        except Exception as exc:  # noqa: BLE001 - reported, the audit goes on
            self.checked["notes"].append(f"retention verdict unavailable: {type(exc).__name__}")

    def audit_index(self) -> None:
        """Every collection of every index the product controls, read through the same backends
        the matcher writes with (services/governance/watchlist/index_backends.py): a Qdrant server, or a
        copy of each embedded path (the in-process engine's shards, or qdrant-client local mode)."""
        from qdrant_client import QdrantClient  # noqa: PLC0415

        from services.governance.watchlist.index_backends import ClientBackend, EdgeBackend  # noqa: PLC0415

        backends: list[tuple[str, object, Path | None]] = []
        if self.options.qdrant_url:
            client = QdrantClient(url=self.options.qdrant_url, api_key=self.options.qdrant_api_key)
            backends.append((self.options.qdrant_url, ClientBackend(client, kind="server"), None))
        for path in self.options.qdrant_paths:
            if not path.is_dir():
                self.checked["notes"].append(f"qdrant path {path} absent (an in-memory index keeps nothing durable)")
                continue
            # A running matcher holds its folder: read a copy.
            copy = Path(tempfile.mkdtemp(prefix="lfr-audit-qdrant-"))
            shutil.copytree(path, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".lock"))
            local_mode = (copy / "meta.json").exists()  # qdrant-client local mode; else edge shards
            backend = ClientBackend(QdrantClient(path=str(copy)), kind="local") if local_mode else EdgeBackend(copy)
            backends.append((str(path), backend, copy))
        for label, backend, copy in backends:
            try:
                for collection in backend.collection_names():
                    count = 0
                    for point_id, vector in backend.vectors(collection):
                        count += 1
                        artefact = Artefact("embedding", digest(vector.astype("<f4").tobytes()), f"point {point_id}", vector)
                        self.classify(artefact, f"index:{label}", collection, True)
                    self.checked["index_collections"][f"{label}:{collection}"] = count
            finally:
                backend.close()
                if copy is not None:
                    shutil.rmtree(copy, ignore_errors=True)

    def audit_files(self) -> None:
        for root in self.options.data_dirs:
            if not root.exists():
                self.checked["notes"].append(f"data dir {root} absent")
                continue
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                self._file(path, "file", False)

    def audit_logs(self) -> None:
        if not self.options.log_paths:
            self.checked["notes"].append("no service logs given (--logs): logs not checked")
        for given in self.options.log_paths:
            paths = sorted(p for p in given.rglob("*") if p.is_file()) if given.is_dir() else [given]
            for path in paths:
                self.checked["logs"][str(path)] = path.stat().st_size
                self._file(path, "log", False)

    def _file(self, path: Path, store: str, biometric: bool) -> None:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            self.checked["notes"].append(f"{path} skipped: {size} bytes")
            return
        data = path.read_bytes()
        if store == "file":
            self.checked["files"] += 1
            self.checked["file_bytes"] += size
        artefacts = from_raw(data, "")
        if path.suffix == ".npy":
            artefacts += _npy_vectors(path)
        for artefact in artefacts:
            self.classify(artefact, f"{store}:{path}", "", biometric)

    def run(self) -> dict:
        self.audit_topics()
        self.audit_index()
        self.audit_files()
        self.audit_logs()
        return {"findings": self.findings, "checked": self.checked}


def _npy_vectors(path: Path) -> list[Artefact]:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError):
        return []
    rows = array.reshape(-1, array.shape[-1]) if array.ndim >= 1 else array.reshape(0, 0)
    found = []
    for i, row in enumerate(rows.astype(np.float32)):
        vector = unit_vector(row.astype("<f4").tobytes())
        if vector is not None:
            found.append(Artefact("embedding", digest(vector.astype("<f4").tobytes()), f"row {i}", vector))
    return found


def run_audit(options: AuditOptions) -> dict:
    return Auditor(options).run()
