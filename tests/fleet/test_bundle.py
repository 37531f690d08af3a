"""Deployment bundles: built by the force, opened only by its van inside the window, crypto-erased on time."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.jsonevents import decode_record
from services.common.signing import Keyring, Signer
from services.governance.deployments.record import Window
from services.engine.face.models import SFACE, ModelIdentity
from services.van.fleet.bundle import BundleContents, BundleError, BundleRefused, SealedBundle, build_bundle, force_owner, unwrap_data_key
from services.van.fleet.vankey import VanKey
from services.van.fleet.vanstore import VanBundleStore
from services.van.link.outbox import Outbox
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
from services.governance.watchlist.reference import ReferenceImage
from services.governance.watchlist.thresholds import Thresholds
from tests.deployment_helpers import active_deployment

MODEL = ModelIdentity(SFACE.name, SFACE.sha256)
HOUR = 3_600_000
GRACE = 600_000


def entry(subject: str, seed: int) -> WatchlistEntry:
    rng = np.random.default_rng(seed)
    vector = rng.normal(size=128).astype(np.float32)
    now = int(time.time() * 1000)
    # A recognisable stand-in for a JPEG: the at-rest scan looks for these bytes.
    image = ReferenceImage(b"\xff\xd8REFERENCE-IMAGE-" + subject.encode() + rng.bytes(2000), 100, 120)
    return WatchlistEntry(subject, f"REF-{subject}", "suspect", "red", Provenance("custody", now, "PACE s.64A", "PC 1", now),
                          now + 86_400_000, ("dep-van",), (EnrolledEmbedding(MODEL, vector / np.linalg.norm(vector)),), image)


@pytest.fixture
def world(tmp_path):
    """Force gmp's signing key and another force's, a keyring the van trusts, two vans, contents."""
    now = int(time.time() * 1000)
    gmp, wyp = Signer.generate(force_owner("gmp")), Signer.generate(force_owner("wyp"))
    trust = Keyring()
    trust.add(gmp, now)
    trust.add(wyp, now)
    entries = [entry("subject-a", 1), entry("subject-b", 2)]
    deployment = dataclasses.replace(active_deployment("dep-van", ["cam-1"], entries=entries), force="gmp")
    contents = BundleContents(deployment, tuple(entries), Thresholds(0.5, {"missing_person_at_risk": 0.45}), tuple(trust.keys()))
    van, other_van = VanKey.generate("van-3"), VanKey.generate("van-4")
    outbox = Outbox(tmp_path / "van-3" / "outbox.sqlite")
    store = VanBundleStore(tmp_path / "van-3", van, "gmp", trust, outbox)
    return dataclasses.make_dataclass("World", ["now", "gmp", "wyp", "trust", "contents", "van", "other_van", "store", "outbox", "dir"])(
        now, gmp, wyp, trust, contents, van, other_van, store, outbox, tmp_path / "van-3")


def build(world, **overrides) -> bytes:
    args = {"contents": world.contents, "van": world.van.public(), "force": "gmp", "signer": world.gmp, "grace_ms": GRACE, "now_ms": world.now}
    args.update(overrides)
    return build_bundle(args.pop("contents"), args.pop("van"), args.pop("force"), args.pop("signer"), **args)


def files_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_the_van_opens_its_bundle_and_gets_everything_back(world):
    header = world.store.take_in(build(world), world.now)
    contents = world.store.unlock(header.bundle_id, world.now)
    assert header.van_id == "van-3" and header.force == "gmp" and header.entries == 2
    assert header.erase_at_ms == world.contents.deployment.window.end_ms + GRACE
    assert [e.subject_id for e in contents.entries] == ["subject-a", "subject-b"]
    for got, sent in zip(contents.entries, world.contents.entries, strict=True):
        assert np.array_equal(got.embeddings[0].vector, sent.embeddings[0].vector)
        assert got.reference_image.jpeg == sent.reference_image.jpeg
    assert contents.thresholds.for_category("missing_person_at_risk") == 0.45
    assert {k.key_id for k in contents.keyring} == {world.gmp.key_id, world.wyp.key_id}
    assert contents.deployment.deployment_id == "dep-van" and contents.deployment.window == world.contents.deployment.window


def test_only_ciphertext_is_at_rest(world):
    raw = build(world)
    data_key = unwrap_data_key(SealedBundle.parse(raw), world.van)
    world.store.take_in(raw, world.now)
    secrets = [data_key, *(e.reference_image.jpeg[:64] for e in world.contents.entries),
               *(e.embeddings[0].vector.astype("<f4").tobytes()[:64] for e in world.contents.entries), b"subject-a", b"REF-subject"]
    for path, data in files_under(world.dir).items():
        for secret in secrets:
            assert secret not in data, f"{path.name} holds plaintext"


def test_erasure_at_window_end_plus_grace_makes_the_ciphertext_unreadable_without_a_link(world, tmp_path):
    header = world.store.take_in(build(world), world.now)
    folder = world.dir / "bundles" / header.bundle_id
    remnant = tmp_path / "flash-remnant"  # what the flash may keep of the ciphertext after deletion
    shutil.copytree(folder, remnant)
    (remnant / "datakey.wrapped").unlink()  # only the data key is destroyed in place (overwritten, fsynced)
    world.store.unlock(header.bundle_id, world.now)

    assert world.store.erase_due(header.erase_at_ms - 1) == []  # the grace period is honoured
    erased = world.store.erase_due(header.erase_at_ms)
    assert [e.bundle_id for e in erased] == [header.bundle_id] and not folder.exists()
    with pytest.raises(BundleRefused) as refused:
        world.store.unlock(header.bundle_id, header.erase_at_ms)
    assert refused.value.reason == "erased"

    # The proof: whatever the van still holds (its state folder, its private key, the key derived
    # from it for this bundle) opens neither the ciphertext nor a data key for it.
    assert opens(remnant, world, header.bundle_id, files_under(world.dir).values()) == 0

    # Audited, queued durably for the link.
    (row,) = world.outbox.peek(10)
    record = decode_record(row.value, row.headers)
    assert record.schema == "lfr.audit.v2" and record.data["action"] == "bundle.erased"
    assert record.data["details"]["bundle_id"] == header.bundle_id and record.data["deployment_id"] == "dep-van"
    assert record.data["actor"] == "van:van-3"


def opens(remnant: Path, world, bundle_id: str, held) -> int:
    """How many ways the material held opens the remnant ciphertext: every 32-byte window tried
    as the data key itself, and every file tried as the data key wrapped under the van's key."""
    payload, aad = (remnant / "payload.bin").read_bytes(), (remnant / "header.json").read_bytes()
    held = list(held)
    kek = world.store._kek(bundle_id)
    candidates = []
    for blob in held:
        try:
            candidates.append(AESGCM(kek).decrypt(blob[:12], blob[12:], bundle_id.encode()))
        except Exception:  # noqa: BLE001 - not a wrapped key of this bundle
            pass
    material = b"".join(held) + world.van.secret_bytes() + kek
    assert len(material) > 1000
    candidates += [material[start:start + 32] for start in range(len(material) - 31)]
    opened = 0
    for key in candidates:
        try:
            AESGCM(key).decrypt(payload[:12], payload[12:], aad)
            opened += 1
        except Exception:  # noqa: BLE001 - InvalidTag: not the key
            pass
    return opened


def test_the_proof_would_find_a_key_that_survived(world, tmp_path):
    """The erasure proof is not vacuous: a wrapped data key left behind, or the data key itself
    in any file, is found by the same search."""
    header = world.store.take_in(build(world), world.now)
    folder = world.dir / "bundles" / header.bundle_id
    shutil.copytree(folder, tmp_path / "remnant")
    wrapped = (folder / "datakey.wrapped").read_bytes()
    data_key = world.store._unwrap(header.bundle_id)
    world.store.erase_due(header.erase_at_ms)
    held = list(files_under(world.dir).values())
    assert opens(tmp_path / "remnant", world, header.bundle_id, [*held, wrapped]) == 1
    assert opens(tmp_path / "remnant", world, header.bundle_id, [*held, b"log line " + data_key + b" more"]) == 1


def test_a_van_switched_off_past_the_window_erases_at_start_and_remembers(world):
    header = world.store.take_in(build(world), world.now)
    later = header.erase_at_ms + HOUR
    restarted = VanBundleStore(world.dir, world.van, "gmp", world.trust, world.outbox)  # after a power cut
    assert [e.bundle_id for e in restarted.erase_due(later)] == [header.bundle_id]
    assert len(world.outbox.peek(10)) == 1
    assert restarted.erase_due(later) == []  # erased once, audited once


def test_a_power_cut_before_the_ledger_was_written_leaves_nothing_behind(world):
    header = world.store.take_in(build(world), world.now)
    ledger = world.dir / "ledger.json"
    document = json.loads(ledger.read_text())
    del document["bundles"][header.bundle_id]  # as if the power went before the ledger was written
    ledger.write_text(json.dumps(document))
    VanBundleStore(world.dir, world.van, "gmp", world.trust)  # the next start
    assert not (world.dir / "bundles" / header.bundle_id).exists()


def reason(world, raw: bytes, now_ms: int | None = None, store=None) -> str:
    with pytest.raises(BundleRefused) as refused:
        (store or world.store).take_in(raw, world.now if now_ms is None else now_ms)
    return refused.value.reason


def test_a_bundle_for_another_van_is_refused(world):
    assert reason(world, build(world, van=world.other_van.public())) == "wrong_van"
    # the other van's id but sealed to this van's key id: the header says whom it is for
    impostor = dataclasses.replace(world.other_van.public(), van_id="van-3")
    assert reason(world, build(world, van=impostor)) == "wrong_van"


def test_a_bundle_of_another_force_is_refused(world):
    other = dataclasses.replace(world.contents, deployment=dataclasses.replace(world.contents.deployment, force="wyp"))
    assert reason(world, build(world, contents=other, force="wyp", signer=world.wyp)) == "wrong_force"


def test_a_bundle_signed_by_another_forces_key_is_refused(world):
    """wyp's key signing a bundle that claims to be gmp's (the builder would not; an attacker might)."""
    raw = build(world)
    sealed = SealedBundle.parse(raw)
    forged = SealedBundle(sealed.header_bytes.replace(world.gmp.key_id.encode(), world.wyp.key_id.encode()), sealed.wrapped_key, sealed.payload, b"")
    forged = dataclasses.replace(forged, signature=world.wyp.sign(forged.signed_bytes))
    assert reason(world, forged.to_bytes()) == "wrong_force"


def test_an_unknown_or_revoked_key_is_refused(world):
    stranger = Signer.generate(force_owner("gmp"))
    assert reason(world, build(world, signer=stranger)) == "unknown_key"
    raw = build(world)
    world.trust.revoke(world.gmp.key_id, "laptop stolen", world.now)
    assert reason(world, raw) == "revoked_key"


def test_an_expired_window_is_refused(world):
    raw = build(world)
    end = world.contents.deployment.window.end_ms
    assert reason(world, raw, now_ms=end) == "expired"


@pytest.mark.parametrize("region", ["header", "wrapped_key", "payload", "signature"])
def test_a_tampered_byte_is_refused(world, region):
    raw = bytearray(build(world))
    sealed = SealedBundle.parse(bytes(raw))
    if region == "header":  # one hex digit of the bundle id: still valid JSON
        position = raw.index(b'"bundle_id":"') + len(b'"bundle_id":"')
        raw[position] = ord("0") if raw[position] != ord("0") else ord("1")
    else:
        part = getattr(sealed, region)
        position = raw.index(part) + len(part) // 2
        raw[position] ^= 0x01
    assert reason(world, bytes(raw)) == "tampered"
    assert world.store.held() == {}


def test_a_truncated_bundle_is_refused(world):
    raw = build(world)
    for length in (0, 3, 10, 200, len(raw) // 2, len(raw) - 1):
        assert reason(world, raw[:length]) == "truncated", length
    assert reason(world, raw + b"x") == "malformed"


def test_a_replayed_bundle_is_refused(world):
    raw = build(world)
    world.store.take_in(raw, world.now)
    assert reason(world, raw) == "replayed"  # the same bundle twice
    older = build(world, now_ms=world.now - 60_000)
    assert reason(world, older) == "replayed"  # built before the one held


def test_a_bundle_of_an_erased_deployment_is_refused(world):
    """A van re-used for the same deployment id after erasure (e.g. replayed from an earlier
    day, window still open on its face) takes nothing back in."""
    header = world.store.take_in(build(world), world.now)
    world.store.erase(header.bundle_id, world.now, "rekey")
    assert reason(world, build(world)) == "replayed"


def test_the_builder_refuses_what_does_not_belong_together(world):
    with pytest.raises(BundleError, match="force"):
        build(world, force="wyp", signer=world.wyp)  # a gmp deployment built by wyp
    with pytest.raises(BundleError, match="belongs to"):
        build(world, signer=Signer.generate("PC 1234"))  # not a force key
    stray = dataclasses.replace(world.contents, entries=(*world.contents.entries, entry("subject-c", 3)))
    with pytest.raises(BundleError, match="snapshot"):
        build(world, contents=stray)
    ended = dataclasses.replace(world.contents.deployment, window=Window(world.now - 2 * HOUR, world.now - HOUR))
    with pytest.raises(BundleError, match="ended"):
        build(world, contents=dataclasses.replace(world.contents, deployment=ended))


def test_the_van_key_round_trips_encrypted(tmp_path):
    key = VanKey.generate("van-9")
    key.save(tmp_path / "van-9.key.json", "correct horse")
    assert os.stat(tmp_path / "van-9.key.json").st_mode & 0o777 == 0o600
    assert VanKey.load(tmp_path / "van-9.key.json", "correct horse").public() == key.public()
    assert key.secret_bytes() not in (tmp_path / "van-9.key.json").read_bytes()
