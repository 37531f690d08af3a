"""A watchlist that fails safe (issue #14), against the real broker and local Qdrant.

Regression: one bad record on lfr.watchlist.v1 (deep nesting, or a schema-valid entry with a
64-dim vector) killed the loader thread after it had deleted the subject's old points, while
``lfr_watchlist_ready`` stayed 1; a later removal was never applied and the removed person was
still alerted. Random bytes made `lfr watchlist list` and `remove` fail.
"""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common.envelope import encode
from services.common.jsonevents import decode_record
from services.common.settings import MatcherSettings, WatchlistSettings, load_settings
from services.engine.face.models import SFACE, ModelIdentity
from services.pipeline.matcher.service import build
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.governance.watchlist.store import WatchlistStore
from tests.kafka_helpers import create_topics, produce, unique, wait_until

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)
FAR_FUTURE_MS = 4_102_444_800_000  # 2100


def unit(seed: int, dim: int = 128) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def entry(subject_id: str, vector: np.ndarray) -> WatchlistEntry:
    return WatchlistEntry(
        subject_id=subject_id,
        reference=f"ref-{subject_id}",
        category="wanted_by_courts",
        priority="red",
        provenance=Provenance("custody", 1, "PACE", "tester", 1),
        expires_at_ms=FAR_FUTURE_MS,
        deployments=("dep-1",),
        embeddings=(EnrolledEmbedding(MODEL, vector),),
    )


def record(e: WatchlistEntry) -> bytes:
    return encode("lfr.watchlist.v1", e.to_data())


def deep_record() -> bytes:
    header = ('{"schema":"lfr.watchlist.v1","data":' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    return b"LFR\x01" + struct.pack(">I", len(header)) + header


BAD = {"random_bytes": b"\x8f\x02garbage\xff" * 10, "deep_nesting": deep_record()}


@pytest.fixture
def topics(broker, kafka_env, monkeypatch, tmp_path):
    names = {name: unique(name) for name in ("watchlist", "audit", "dlq", "embeddings", "matches")}
    create_topics(broker.bootstrap_servers, *names.values(), partitions=1)
    monkeypatch.setenv("LFR_WATCHLIST_TOPIC", names["watchlist"])
    monkeypatch.setenv("LFR_AUDIT_TOPIC", names["audit"])
    monkeypatch.setenv("LFR_DLQ_TOPIC", names["dlq"])
    monkeypatch.setenv("LFR_INPUT_TOPIC", names["embeddings"])
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", names["matches"])
    monkeypatch.setenv("LFR_GROUP_ID", unique("matcher"))
    # Probes are sent before the matcher has joined its group: not a test of the latency budget.
    monkeypatch.setenv("LFR_LATENCY_BUDGET_MS", "600000")
    monkeypatch.setenv("LFR_QDRANT_PATH", ":memory:")
    monkeypatch.setenv("LFR_EXPIRY_SWEEP_INTERVAL_S", "0.2")
    return names


def best(materialiser, vector: np.ndarray) -> list[tuple[str, float]]:
    hits = materialiser.index.search(vector[None, :], [None], 1, limit=3)[0]
    return [(h.subject_id, round(h.score, 3)) for h in hits]


def _invalid_updates() -> float:
    return REGISTRY.get_sample_value("lfr_watchlist_updates_total", {"action": "invalid"}) or 0.0


def bad_records(vector_a_64: np.ndarray) -> list[bytes]:
    return [BAD["random_bytes"], BAD["deep_nesting"], record(entry("alice", vector_a_64))]


def write_signed(store: WatchlistStore, values: list[bytes | None], keys: list[bytes]) -> None:
    """Write records as a trusted operator would (audited and signed), however broken their value:
    the matcher must survive a bad record from a trusted writer too (an unsigned one is refused
    before it is read at all: tests/security)."""
    for key, value in zip(keys, values, strict=True):
        store._change(key.decode(), value, "test.write", None, None)  # the store's one signed-write path


@pytest.mark.parametrize("when", ["at_start", "live"])
def test_bad_watchlist_records_are_skipped_reported_and_later_changes_applied(broker, topics, reader, when):
    alice, bob = unit(1), unit(2)
    store = WatchlistStore(load_settings(WatchlistSettings))
    write_signed(store, [record(entry("alice", alice)), record(entry("bob", bob))], keys=[b"alice", b"bob"])
    bad = bad_records(unit(3, dim=64))
    later_keys = [b"x", b"y", b"alice", b"bob"]
    before = _invalid_updates()
    materialiser, _deps = build(load_settings(MatcherSettings))
    if when == "at_start":
        write_signed(store, [*bad, None], keys=later_keys)
    materialiser.start()
    try:
        materialiser.wait_ready(30)
        if when == "live":
            write_signed(store, [*bad, None], keys=later_keys)
        # bob's removal, which comes after the bad records, is applied; alice keeps her old entry.
        wait_until(lambda: materialiser.index.subjects() == {"alice"}, 20, "bob removed, alice kept")
        assert best(materialiser, alice)[0] == ("alice", 1.0)
        assert materialiser.healthy and materialiser.ready.is_set()
        assert _invalid_updates() - before == 3
        dead = reader(topics["dlq"]).read_until(3)
        for dead_letter in dead:
            headers = {k: v.decode() for k, v in dead_letter.headers()}
            assert headers["lfr_dlq_payload"] == "withheld" and dead_letter.value() is None
            assert headers["lfr_dlq_topic"] == topics["watchlist"] and headers["lfr_dlq_reason"]
        audit = reader(topics["audit"])
        wait_until(lambda: sum(decode_record(r.value(), r.headers()).data["action"] == "watchlist.record_rejected" for r in audit.poll()) >= 3,
                   20, "three watchlist.record_rejected audit records")
    finally:
        materialiser.stop()
        materialiser.index.close()


def test_loader_that_stops_makes_the_matcher_not_ready_and_refuse_to_match(broker, topics):
    from services.common.errors import TransientError
    from services.pipeline.matcher.stage import process

    produce(broker.bootstrap_servers, topics["watchlist"], [record(entry("alice", unit(1)))], keys=[b"alice"])
    materialiser, deps = build(load_settings(MatcherSettings))
    materialiser.start()
    materialiser.wait_ready(30)
    # The index under the loader goes away: its next sweep fails and the loader stops.
    materialiser.index.close()
    wait_until(lambda: not materialiser.healthy, 10, "the loader to report itself stopped")
    assert not materialiser.ready.is_set()
    assert REGISTRY.get_sample_value("lfr_watchlist_ready") == 0
    with pytest.raises(TransientError):
        process([], deps)  # even an empty batch: no matching against a stale watchlist
    materialiser.stop()


def test_matcher_service_exits_nonzero_when_the_loader_stops(broker, topics):
    from services.pipeline.matcher.service import serve

    produce(broker.bootstrap_servers, topics["watchlist"], [record(entry("alice", unit(1)))], keys=[b"alice"])
    settings = load_settings(MatcherSettings)
    materialiser, deps = build(settings)
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", serve(settings, materialiser, deps)), daemon=True)
    thread.start()
    materialiser.wait_ready(30)
    materialiser.index.close()
    thread.join(30)
    assert not thread.is_alive() and result["code"] == 5  # EXIT_WATCHLIST_STOPPED


def test_admin_tools_skip_unreadable_records_with_a_warning(broker, topics, caplog, face_engine):
    from services.governance.watchlist.admin import WatchlistAdmin
    from services.governance.watchlist.enrol import Enroller
    from services.governance.watchlist.thresholds import Thresholds

    from services.governance.audit.writer import change_digest

    store = WatchlistStore(load_settings(WatchlistSettings))
    topic = topics["watchlist"]

    def signed(key: bytes, value: bytes) -> list[tuple[str, bytes]]:
        """Audited and signed by a trusted key, as a careless administrator's tool would write
        bytes that are no entry: past the signature check, so only decoding can refuse them."""
        _audit, audit_hash = store.audit_writer.write("watchlist.add", key.decode(), {"change_sha256": change_digest(topic, key, value)})
        return store.signer.record_headers(topic, key, value, audit_hash=audit_hash)

    store.publish(entry("alice", unit(1)))
    produce(broker.bootstrap_servers, topic, [BAD["random_bytes"], BAD["deep_nesting"]], keys=[b"junk", b"deep"],
            headers=[signed(b"junk", BAD["random_bytes"]), signed(b"deep", BAD["deep_nesting"])])
    store.publish(entry("bob", unit(2)))
    store.publish(entry("carol", unit(3, dim=64)))
    entries = store.read_all()
    assert set(entries) == {"alice", "bob", "carol"}
    assert sum("unreadable watchlist record skipped" in r.getMessage() for r in caplog.records) == 2
    # `lfr watchlist list` and `remove` go through the admin: both work past the bad records.
    admin = WatchlistAdmin(store, Enroller(*face_engine), Thresholds(0.5))
    assert {e.subject_id for e in admin.list()} == {"alice", "bob", "carol"}
    assert admin.remove("carol", "Sgt 1", "bad entry") and admin.remove("bob", "Sgt 1", "test")
    assert set(store.read_all()) == {"alice"}
