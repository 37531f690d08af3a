"""Record signatures and keys, without a broker: what verifies, what is refused and why."""

from __future__ import annotations

import json

import pytest

from services.common.signing import (
    Keyring,
    KeyFileError,
    ReplayGuard,
    SignatureRefused,
    Signer,
    verify_record,
)

TOPIC = "lfr.watchlist.v1"


@pytest.fixture
def ring(tmp_path):
    operator = Signer.generate("PC 1 Operator")
    keyring = Keyring(tmp_path / "keyring.json")
    keyring.add(operator, 1)
    keyring.save()
    return operator, Keyring.load(tmp_path / "keyring.json")


def refusal(ring_, topic, key, value, headers) -> str:
    with pytest.raises(SignatureRefused) as refused:
        verify_record(ring_, topic, key, value, headers)
    return refused.value.reason


def test_signed_record_and_tombstone_verify_to_the_key_owner(ring):
    operator, keyring = ring
    for value in (b"entry", None):
        headers = operator.record_headers(TOPIC, b"s1", value, audit_hash="ab" * 32)
        verified = verify_record(keyring, TOPIC, b"s1", value, headers)
        assert (verified.owner, verified.key_id, verified.audit_hash) == ("PC 1 Operator", operator.key_id, "ab" * 32)


def test_any_change_to_topic_key_value_or_signed_headers_is_refused(ring):
    operator, keyring = ring
    headers = operator.record_headers(TOPIC, b"s1", b"entry", audit_hash="ab" * 32)
    assert refusal(keyring, "lfr.other.v1", b"s1", b"entry", headers) == "bad_signature"
    assert refusal(keyring, TOPIC, b"s2", b"entry", headers) == "bad_signature"
    assert refusal(keyring, TOPIC, b"s1", b"entrY", headers) == "bad_signature"
    assert refusal(keyring, TOPIC, b"s1", None, headers) == "bad_signature"  # a signed add is not a signed removal
    assert refusal(keyring, TOPIC, b"s1", b"", headers) == "bad_signature"
    moved = [(k, b"cd" * 32 if k == "lfr_audit_hash" else v) for k, v in headers]
    assert refusal(keyring, TOPIC, b"s1", b"entry", moved) == "bad_signature"
    assert refusal(keyring, TOPIC, b"s1", b"entry", []) == "unsigned"
    assert refusal(keyring, TOPIC, b"s1", b"entry", [(k, v) for k, v in headers if k != "lfr_sig"]) == "unsigned"


def test_untrusted_and_revoked_keys_are_refused_and_revocation_reloads(ring, tmp_path):
    operator, keyring = ring
    stranger = Signer.generate("PC 1 Operator")  # the same name does not make a key trusted
    assert refusal(keyring, TOPIC, b"s1", b"x", stranger.record_headers(TOPIC, b"s1", b"x")) == "unknown_key"
    headers = operator.record_headers(TOPIC, b"s1", b"x")
    writer = Keyring.load(tmp_path / "keyring.json")
    writer.revoke(operator.key_id, "left the force", 2)
    writer.save()
    keyring.refresh(min_interval_s=0)
    assert refusal(keyring, TOPIC, b"s1", b"x", headers) == "revoked_key"
    assert json.loads((tmp_path / "keyring.json").read_text())["keys"][0]["revoked_reason"] == "left the force"


def test_replay_of_an_older_signed_record_for_the_same_key_is_refused(ring):
    operator, keyring = ring
    guard = ReplayGuard()
    old_add = verify_record(keyring, TOPIC, b"s1", b"v1", operator.record_headers(TOPIC, b"s1", b"v1", now_ms=1000))
    removal = verify_record(keyring, TOPIC, b"s1", None, operator.record_headers(TOPIC, b"s1", None, now_ms=2000))
    guard.check(b"s1", old_add)
    guard.check(b"s1", removal)
    with pytest.raises(SignatureRefused, match="replayed"):
        guard.check(b"s1", old_add)
    guard.check(b"s2", old_add)  # per key


def test_private_key_is_encrypted_and_never_printed(tmp_path):
    signer = Signer.generate("Insp 9")
    signer.save(tmp_path / "k.json", "correct horse battery")
    text = (tmp_path / "k.json").read_text()
    assert "ENCRYPTED PRIVATE KEY" in text and (tmp_path / "k.json").stat().st_mode & 0o077 == 0
    assert Signer.load(tmp_path / "k.json", "correct horse battery").key_id == signer.key_id
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        Signer.load(tmp_path / "k.json", "wrong horse battery")
    with pytest.raises(KeyFileError, match="at least 8"):
        signer.save(tmp_path / "short.json", "short")
    assert "Ed25519PrivateKey" not in repr(signer) and signer.key_id in repr(signer)
