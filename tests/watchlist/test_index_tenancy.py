"""The watchlist index's tenant: one collection per model shared by every force, each point
carrying its ``force`` (a Qdrant tenant keyword index), every query naming one force, and a
query without one refused by the backend (services/governance/watchlist/index_backends.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from services.engine.face.models import SFACE, ModelIdentity
from services.governance.forces.naming import NamingError
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.governance.watchlist.index import WatchlistIndex, connect
from services.governance.watchlist.index_backends import TENANT_FIELD, Condition, Filter, IndexRefused

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)
NOW = int(time.time() * 1000)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def entry(subject: str, vector: np.ndarray, expires: int = NOW + 10**9) -> WatchlistEntry:
    return WatchlistEntry(subject, f"R-{subject}", "suspect", "red", Provenance("custody", 0, "PACE", "PC1", NOW), expires,
                          ("van-1",), (EnrolledEmbedding(MODEL, vector),))


@pytest.fixture(params=["edge", "local"])
def two_forces(request):
    backend = connect(None, None, ":memory:", request.param)
    gmp, wyp = WatchlistIndex(backend, MODEL, force="gmp"), WatchlistIndex(backend, MODEL, force="wyp")
    gmp.ensure_collection()
    wyp.ensure_collection()
    yield gmp, wyp
    backend.close()


def test_one_collection_two_forces_each_sees_only_its_own(two_forces):
    gmp, wyp = two_forces
    assert gmp.collection == wyp.collection
    # The same subject id in both forces: different people, different points.
    gmp.upsert(entry("S-1", unit(1)))
    wyp.upsert(entry("S-1", unit(2)))
    wyp.upsert(entry("S-2", unit(3)))
    assert gmp.subjects() == {"S-1"} and wyp.subjects() == {"S-1", "S-2"}
    (hits,) = gmp.search(np.stack([unit(2)]), [None], NOW)  # wyp's S-1 exactly: gmp never sees it
    assert [h.subject_id for h in hits] == ["S-1"] and hits[0].score < 0.5
    (hits,) = gmp.search(np.stack([unit(3)]), ["van-1"], NOW)
    assert "S-2" not in [h.subject_id for h in hits]
    (hits,) = wyp.search(np.stack([unit(2)]), [None], NOW)
    assert hits[0].subject_id == "S-1" and hits[0].score > 0.99
    # maintenance of one force leaves the other's points alone
    wyp.remove("S-1")
    assert gmp.subjects() == {"S-1"}
    gmp.rebuild({}, NOW)
    assert gmp.subjects() == set() and wyp.subjects() == {"S-2"}
    wyp.upsert(entry("S-3", unit(4), expires=NOW - 1))
    gmp.upsert(entry("S-3", unit(5), expires=NOW - 1))
    assert gmp.remove_expired(NOW) == 1 and wyp.subjects() == {"S-2", "S-3"}


def test_a_query_without_a_force_is_refused(two_forces):
    gmp, _ = two_forces
    gmp.upsert(entry("S-1", unit(1)))
    backend, collection = gmp.backend, gmp.collection
    unscoped = Filter(must=(Condition.greater("expires_at_ms", 0),))
    for call in (lambda w: backend.query_batch(collection, [(unit(1), w)], 5, ("subject_id",)),
                 lambda w: backend.count(collection, w), lambda w: backend.delete(collection, w),
                 lambda w: backend.payload_values(collection, "subject_id", w),
                 lambda w: list(backend.payloads(collection, ("subject_id",), w))):
        for where in (unscoped, Filter(), Filter(must=(Condition.match(TENANT_FIELD, ""),)),
                      Filter(must=(Condition.any_of(TENANT_FIELD, ["gmp", "wyp"]),))):
            with pytest.raises(IndexRefused, match="without a force") as refused:
                call(where)
            assert refused.value.reason == "index_no_tenant"
    assert gmp.subjects() == {"S-1"}  # nothing was deleted


def test_the_force_is_a_tenant_index_in_the_edge_engine():
    gmp = WatchlistIndex(connect(None, None, ":memory:", "edge"), MODEL, force="gmp")
    gmp.ensure_collection()
    try:
        schema = gmp.backend._shard(gmp.collection).info().payload_schema
        assert schema[TENANT_FIELD].params.is_tenant is True
    finally:
        gmp.close()


def test_an_index_needs_a_usable_force_id():
    with pytest.raises(NamingError):
        WatchlistIndex(connect(None, None, ":memory:", "local"), MODEL, force="Greater Manchester")


def test_force_default_keeps_its_point_ids():
    """Points of force default keep the ids they had before forces (an existing index stays valid)."""
    import uuid

    from services.governance.watchlist.index import _POINT_NAMESPACE

    default = WatchlistIndex(connect(None, None, ":memory:", "local"), MODEL)
    (point,) = default._points(entry("S-1", unit(1)))
    assert point.id == str(uuid.uuid5(_POINT_NAMESPACE, "S-1/0")) and point.payload[TENANT_FIELD] == "default"
    (other,) = WatchlistIndex(default.backend, MODEL, force="gmp")._points(entry("S-1", unit(1)))
    assert other.id != point.id
