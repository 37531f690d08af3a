"""Governed enrolment on real photos: refusals write nothing, look-alikes are flagged and audited."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from services.common.envelope import decode, encode
from services.common.jsonevents import decode_record
from services.common.settings import WatchlistSettings, load_settings
from services.governance.watchlist.admin import WatchlistAdmin
from services.governance.watchlist.enrol import EnrolmentRefused, EnrolmentRequest, Enroller
from services.governance.watchlist.entry import WatchlistEntry
from services.governance.watchlist.store import WatchlistStore
from services.governance.watchlist.thresholds import Thresholds
from tests.face_helpers import side_by_side
from tests.kafka_helpers import create_topics, unique

YEAR_MS = 365 * 86_400_000


def request(subject: str, images: list[bytes], **changes) -> EnrolmentRequest:
    now = int(time.time() * 1000)
    fields = dict(
        subject_id=subject, reference="W-" + subject, category="suspect", priority="red", image_source="custody",
        image_captured_at_ms=now - YEAR_MS, legal_basis="PACE s.64A", added_by="PC 1234", expires_at_ms=now + YEAR_MS,
        deployments=("van-1",), images=images,
    )
    fields.update(changes)
    return EnrolmentRequest(**fields)


@pytest.fixture(scope="module")
def enroller(face_engine):
    return Enroller(*face_engine)


def photo(lfw_dir, name: str, n: int = 1) -> bytes:
    return (lfw_dir / name / f"{name}_{n:04d}.jpg").read_bytes()


def blurred(data: bytes) -> bytes:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".jpg", cv2.GaussianBlur(image, (0, 0), 4))[1].tobytes()


@pytest.mark.parametrize(
    "case, reason",
    [
        ("unreadable", "unreadable_image"),
        ("blank", "no_face"),
        ("two_people", "multiple_faces"),
        ("blurred", "low_quality"),
        ("no_legal_basis", "missing_provenance"),
        ("no_capture_date", "missing_provenance"),
        ("expired", "expiry_in_past"),
    ],
)
def test_refusals_name_their_reason(enroller, lfw_dir, case, reason):
    putin = photo(lfw_dir, "Vladimir_Putin")
    images, changes = [putin], {}
    if case == "unreadable":
        images = [b"\xff\xd8\xff\xe0 truncated jpeg"]
    elif case == "blank":
        images = [cv2.imencode(".png", np.full((250, 250, 3), 128, np.uint8))[1].tobytes()]
    elif case == "two_people":
        images = [side_by_side(lfw_dir / "Vladimir_Putin" / "Vladimir_Putin_0001.jpg", lfw_dir / "Ariel_Sharon" / "Ariel_Sharon_0001.jpg")]
    elif case == "blurred":
        images = [blurred(putin)]
    elif case == "no_legal_basis":
        changes = {"legal_basis": " "}
    elif case == "no_capture_date":
        changes = {"image_captured_at_ms": None}
    elif case == "expired":
        changes = {"expires_at_ms": int(time.time() * 1000) - 1}
    with pytest.raises(EnrolmentRefused) as refused:
        enroller.build(request("s1", images, **changes), int(time.time() * 1000))
    assert refused.value.reason == reason


def test_enrolment_keeps_model_identity_and_one_vector_per_photo(enroller, lfw_dir):
    entry = enroller.build(request("sharon", [photo(lfw_dir, "Ariel_Sharon", 1), photo(lfw_dir, "Ariel_Sharon", 2)]), int(time.time() * 1000))
    assert len(entry.embeddings) == 2
    assert all(e.model == enroller.embedder.identity for e in entry.embeddings)
    assert all(abs(float(np.linalg.norm(e.vector)) - 1) < 1e-3 for e in entry.embeddings)


def test_enrolment_keeps_one_downscaled_reference_image(enroller, lfw_dir):
    """The first photo, as a JPEG at most 160 px wide, travels with the entry (for the review console)."""
    import cv2

    entry = enroller.build(request("sharon", [photo(lfw_dir, "Ariel_Sharon", 1), photo(lfw_dir, "Ariel_Sharon", 2)]), int(time.time() * 1000))
    ref = entry.reference_image
    assert ref is not None and ref.jpeg[:2] == b"\xff\xd8" and ref.width <= 160
    decoded = cv2.imdecode(np.frombuffer(ref.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape[1] == ref.width <= 160 and decoded.shape[0] == ref.height
    again = WatchlistEntry.from_data(decode(encode("lfr.watchlist.v1", entry.to_data())).data)
    assert again.reference_image.jpeg == ref.jpeg
    assert "reference_image" in entry.describe() and b"\xff\xd8" not in repr(entry.describe()).encode()


@pytest.fixture
def admin(broker, face_engine, monkeypatch):
    watchlist, audit = unique("watchlist"), unique("audit")
    create_topics(broker.bootstrap_servers, watchlist, audit, partitions=1)
    monkeypatch.setenv("LFR_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("LFR_WATCHLIST_TOPIC", watchlist)
    monkeypatch.setenv("LFR_AUDIT_TOPIC", audit)
    settings = load_settings(WatchlistSettings)
    return WatchlistAdmin(WatchlistStore(settings), Enroller(*face_engine), Thresholds(default=0.5)), watchlist, audit


def test_refused_enrolment_writes_nothing(admin, reader, lfw_dir):
    watchlist_admin, watchlist, audit = admin
    outcome = watchlist_admin.add(request("s1", [photo(lfw_dir, "Vladimir_Putin")], legal_basis=""))
    assert (outcome.status, outcome.reason) == ("refused", "missing_provenance")
    assert watchlist_admin.store.read_all() == {}
    assert reader(audit).poll() == [] and reader(watchlist).poll() == []


def test_lookalike_is_flagged_in_output_and_audit(admin, reader, lfw_dir):
    watchlist_admin, watchlist, audit = admin
    assert watchlist_admin.add(request("putin-a", [photo(lfw_dir, "Vladimir_Putin", 1)])).status == "enrolled"
    assert watchlist_admin.add(request("sharon", [photo(lfw_dir, "Ariel_Sharon", 1)])).lookalikes == ()
    flagged = watchlist_admin.add(request("putin-b", [photo(lfw_dir, "Vladimir_Putin", 2)]))
    assert flagged.status == "enrolled"
    assert [x.subject_id for x in flagged.lookalikes] == ["putin-a"]
    records = [decode_record(r.value(), r.headers()).data for r in reader(audit).read_until(4)]
    actions = [(r["action"], r.get("subject_id")) for r in records]
    assert actions == [("watchlist.add", "putin-a"), ("watchlist.add", "sharon"), ("watchlist.add", "putin-b"),
                       ("watchlist.lookalike_flagged", "putin-b")]
    assert records[3]["details"]["other_subject_id"] == "putin-a"
    # The actor is the signing key's owner; the free-text --added-by is only a recorded claim.
    assert all(r["actor"] == "test:operator" and r["details"]["requested_by"] == "PC 1234" for r in records)
    assert records[0]["details"]["quality_flags"] == "ok"
    # The audit trail never carries images or embeddings.
    assert all(len(r.value()) < 1024 for r in reader(audit).poll())
    assert set(watchlist_admin.store.read_all()) == {"putin-a", "putin-b", "sharon"}


def test_marginal_photo_flag_reaches_the_officers(admin, reader, lfw_dir):
    watchlist_admin, watchlist, audit = admin
    outcome = watchlist_admin.add(request("small", [scaled(photo(lfw_dir, "Vladimir_Putin"), 0.55), photo(lfw_dir, "Vladimir_Putin", 2)]))
    assert outcome.status == "enrolled" and "small_face" in outcome.as_dict()["quality_flags"][0]
    assert outcome.as_dict()["quality_flags"][1] == []
    listed = watchlist_admin.list()[0].describe()["embeddings"]
    assert "small_face" in listed[0]["quality_flags"] and "quality_flags" not in listed[1]
    (record,) = reader(audit).read_until(1)
    assert decode_record(record.value(), record.headers()).data["details"]["quality_flags"].startswith("small_face")


def test_remove_writes_tombstone_and_audit(admin, reader, lfw_dir):
    watchlist_admin, watchlist, audit = admin
    watchlist_admin.add(request("sharon", [photo(lfw_dir, "Ariel_Sharon")]))
    assert watchlist_admin.remove("sharon", "Sgt 42", "warrant executed")
    assert not watchlist_admin.remove("sharon", "Sgt 42", "again")
    records = reader(watchlist).read_until(2)
    assert records[-1].key() == b"sharon" and records[-1].value() is None
    last = reader(audit).read_until(2)[-1]
    assert decode_record(last.value(), last.headers()).data["action"] == "watchlist.remove"
    assert watchlist_admin.store.read_all() == {}


def scaled(data: bytes, factor: float) -> bytes:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".png", cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA))[1].tobytes()


def test_marginal_photo_is_enrolled_with_a_flag_and_a_useless_one_refused(enroller, lfw_dir):
    now = int(time.time() * 1000)
    # About 55 px wide: under the 80 px enrolment bar but well inside what the live gate matches.
    entry = enroller.build(request("small", [scaled(photo(lfw_dir, "Vladimir_Putin"), 0.55)]), now)
    assert "small_face" in entry.embeddings[0].quality_flags
    assert entry.to_data()["embeddings"][0]["quality_flags"] == list(entry.embeddings[0].quality_flags)
    assert entry.describe()["embeddings"][0]["quality_flags"] == list(entry.embeddings[0].quality_flags)
    from services.governance.watchlist.entry import WatchlistEntry

    assert WatchlistEntry.from_data(entry.to_data()).embeddings[0].quality_flags == entry.embeddings[0].quality_flags
    from services.common.envelope import encode

    encode("lfr.watchlist.v1", entry.to_data())  # the schema accepts the flags
    good = enroller.build(request("good", [photo(lfw_dir, "Vladimir_Putin")]), now)
    assert good.embeddings[0].quality_flags == () and "quality_flags" not in good.to_data()["embeddings"][0]
    with pytest.raises(EnrolmentRefused) as refused:  # about 25 px wide: far below size
        enroller.build(request("tiny", [scaled(photo(lfw_dir, "Vladimir_Putin"), 0.25)]), now)
    assert refused.value.reason == "low_quality"
