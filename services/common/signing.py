"""Ed25519 signatures over Kafka records and audit entries: keys on disk, the trusted keyring.

A record's signature covers its canonical bytes: the topic, the key, the value (a tombstone is
signed too) and the signed headers (key id, signing time, the audit hash it carries), each
length-prefixed so no two records share canonical bytes. The signature and key id travel in
Kafka headers; the value is left byte for byte as it was, so readers that do not verify still
decode it. Private keys are PKCS#8 encrypted with a passphrase and stay on the admin's disk
(or a Kubernetes Secret for a service); only public keys are shared, in the keyring file.

The actor of a signed change is the keyring's owner of the key that signed it: a free-text
flag never decides who did something.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_HEADER = "lfr_sig"
KEY_ID_HEADER = "lfr_sig_key"
SIGNED_AT_HEADER = "lfr_sig_at_ms"
AUDIT_HASH_HEADER = "lfr_audit_hash"
#: headers whose values the signature covers (absent = empty)
SIGNED_HEADERS = (KEY_ID_HEADER, SIGNED_AT_HEADER, AUDIT_HASH_HEADER)
RECORD_CONTEXT = b"lfr.record-signature.v1"

# Why a record was refused; bounded (metric label, DLQ header, audit detail).
REFUSAL_REASONS = ("unsigned", "unknown_key", "revoked_key", "bad_signature", "replayed", "unaudited", "not_countersigned", "self_authorised",
                   "creator_changed", "rank_not_registered",
                   "force_mismatch", "key_force")  # forces (services/governance/forces): another force's record, or key


class KeyFileError(Exception):
    """A key cannot be created, loaded or decrypted (the message says which and why)."""


class SignatureRefused(Exception):
    def __init__(self, reason: str, key_id: str = "") -> None:
        assert reason in REFUSAL_REASONS
        super().__init__(reason)
        self.reason = reason
        self.key_id = key_id


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _frame(*parts: bytes) -> bytes:
    return b"".join(len(part).to_bytes(8, "big") + part for part in parts)


def canonical_record_bytes(topic: str, key: bytes | None, value: bytes | None, signed: Mapping[str, str]) -> bytes:
    """What a record signature covers. A tombstone (value None) differs from an empty value."""
    value_part = b"\x00" if value is None else b"\x01" + value
    headers = json.dumps({name: signed.get(name, "") for name in SIGNED_HEADERS}, sort_keys=True).encode()
    return _frame(RECORD_CONTEXT, topic.encode(), key or b"", value_part, headers)


def headers_dict(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers -> {name: text}; the last value of a repeated name wins."""
    return {name: (value or b"").decode("utf-8", "replace") for name, value in (headers or [])}


# -- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """A private key loaded for signing, with its owner's identity from the key file."""

    key_id: str
    owner: str
    _private: Ed25519PrivateKey = field(repr=False)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def public_key(self) -> Ed25519PublicKey:
        return self._private.public_key()

    def record_headers(self, topic: str, key: bytes | None, value: bytes | None, audit_hash: str = "",
                       now_ms: int | None = None) -> list[tuple[str, bytes]]:
        """Headers that sign (topic, key, value); add them to the produce call."""
        signed = {KEY_ID_HEADER: self.key_id, SIGNED_AT_HEADER: str(now_ms if now_ms is not None else int(time.time() * 1000))}
        if audit_hash:
            signed[AUDIT_HASH_HEADER] = audit_hash
        signature = self.sign(canonical_record_bytes(topic, key, value, signed))
        return [*((name, text.encode()) for name, text in signed.items()), (SIGNATURE_HEADER, base64.b64encode(signature))]

    @classmethod
    def generate(cls, owner: str) -> Signer:
        private = Ed25519PrivateKey.generate()
        return cls(key_id_of(private.public_key()), owner, private)

    def save(self, path: Path, passphrase: str) -> None:
        """Write the private key encrypted with ``passphrase`` (mode 0600, never overwritten)."""
        if len(passphrase) < 8:
            raise KeyFileError("the passphrase must be at least 8 characters")
        pem = self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(passphrase.encode())
        )
        document = {"key_id": self.key_id, "owner": self.owner, "private_key_pem": pem.decode()}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)

    @classmethod
    def load(cls, path: Path, passphrase: str) -> Signer:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
            private = serialization.load_pem_private_key(document["private_key_pem"].encode(), passphrase.encode())
        except FileNotFoundError:
            raise KeyFileError(f"no signing key at {path}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise KeyFileError(f"cannot open the signing key {path}: wrong passphrase or not a key file ({type(exc).__name__})") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyFileError(f"{path} is not an Ed25519 key")
        return cls(key_id_of(private.public_key()), str(document["owner"]), private)


KEY_ROLES = ("key_admin", "authorising_officer", "operator", "service")
REGISTRATION_CONTEXT = b"lfr.key-registration.v1\x00"
_MAX_REGISTRAR_DEPTH = 8


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    owner: str
    public_key: str  # base64 of the raw 32 bytes
    created_at_ms: int
    revoked_at_ms: int | None = None
    revoked_reason: str = ""
    # What the owner is, registered by a key administrator (`lfr keys register`), signed by the
    # registrar's key: a rank is believed only when this registration verifies (Keyring.registration).
    rank: str = ""
    role: str = ""
    force: str = ""  # optional until the force registry exists
    registered_by: str = ""  # key id of the registrar
    registration_signature: str = ""

    def verifier(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))

    def registration_bytes(self) -> bytes:
        body = {"key_id": self.key_id, "owner": self.owner, "public_key": self.public_key, "rank": self.rank, "role": self.role,
                "force": self.force, "registered_by": self.registered_by}
        return REGISTRATION_CONTEXT + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class Keyring:
    """The trusted public keys (a JSON file, or a Kubernetes Secret mounted as one), revocations
    included. Reloaded when the file changes, so a revocation applies without a restart."""

    def __init__(self, path: Path | None = None, keys: Iterable[TrustedKey] = ()) -> None:
        self.path = path
        self._keys = {k.key_id: k for k in keys}
        self._mtime: float | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> Keyring:
        ring = cls(Path(path))
        ring.reload()
        return ring

    def reload(self) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
            document = json.loads(self.path.read_text(encoding="utf-8")) if mtime != self._mtime else None
        except FileNotFoundError:
            raise KeyFileError(f"no keyring at {self.path} (create one with `lfr keys create`)") from None
        if document is not None:
            self._keys = {k["key_id"]: TrustedKey(**k) for k in document.get("keys", [])}
            self._mtime = mtime

    def refresh(self, min_interval_s: float = 1.0) -> None:
        """Reload if the file changed, at most once per ``min_interval_s`` (cheap on the hot path)."""
        now = time.monotonic()
        if now - self._checked >= min_interval_s:
            with self._lock:
                self._checked = now
                self.reload()

    def keys(self) -> list[TrustedKey]:
        return sorted(self._keys.values(), key=lambda k: k.created_at_ms)

    def get(self, key_id: str) -> TrustedKey | None:
        return self._keys.get(key_id)

    def add(self, signer: Signer, now_ms: int) -> TrustedKey:
        raw = signer.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        trusted = TrustedKey(signer.key_id, signer.owner, base64.b64encode(raw).decode(), now_ms)
        self._keys[trusted.key_id] = trusted
        return trusted

    def revoke(self, key_id: str, reason: str, now_ms: int) -> TrustedKey:
        if key_id not in self._keys:
            raise KeyFileError(f"no key {key_id} in the keyring")
        self._keys[key_id] = replace(self._keys[key_id], revoked_at_ms=now_ms, revoked_reason=reason)
        return self._keys[key_id]

    def save(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(self.path.suffix + ".tmp")
        temporary.write_text(json.dumps({"keys": [asdict(k) for k in self.keys()]}, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)  # atomic: a reader never sees half a keyring

    def registration(self, key_id: str, _depth: int = 0, judge=None) -> TrustedKey | None:
        """The key with its rank, role and force when its registration verifies: signed by an
        unrevoked key administrator (itself registered, back to the first administrator, who
        registered their own key), else None. A rank nobody allowed to grant it granted is no rank.

        ``judge(key) -> bool`` (AuditIndex.registration_valid): decide by audit-chain position
        instead. Then a registrar revoked later still vouches for a registration audited before
        its revocation (and for nothing audited after), and the key's own revocation is left to
        the caller, who judges the key at the position of what it signed."""
        key = self._keys.get(key_id)
        if key is None or not key.registered_by or not key.registration_signature:
            return None
        if key.revoked_at_ms is not None and judge is None:
            return None
        registrar = self._keys.get(key.registered_by)
        if registrar is None or _depth > _MAX_REGISTRAR_DEPTH:
            return None
        if registrar.revoked_at_ms is not None and (judge is None or not judge(key)):
            return None
        try:
            registrar.verifier().verify(base64.b64decode(key.registration_signature), key.registration_bytes())
        except (InvalidSignature, ValueError):
            return None
        if registrar.key_id == key.key_id:  # the first administrator, self-registered
            return key if key.role == "key_admin" else None
        granted_by = self.registration(registrar.key_id, _depth + 1, judge)
        return key if granted_by is not None and granted_by.role == "key_admin" else None

    def register(self, key_id: str, rank: str, role: str, force: str, registrar: Signer) -> TrustedKey:
        """Record (signed by ``registrar``) who ``key_id``'s owner is. Allowed to a registered key
        administrator, or, while the keyring has none, to a key registering itself as one."""
        key = self._keys.get(key_id)
        if key is None or key.revoked_at_ms is not None:
            raise KeyFileError(f"no trusted key {key_id} in the keyring")
        if role not in KEY_ROLES:
            raise KeyFileError(f"unknown role {role!r} (one of {', '.join(KEY_ROLES)})")
        admins = [k for k in self._keys.values() if k.role == "key_admin" and self.registration(k.key_id) is not None]
        allowed = self.registration(registrar.key_id)
        bootstrap = not admins and registrar.key_id == key_id and role == "key_admin"
        if not bootstrap and (allowed is None or allowed.role != "key_admin"):
            raise KeyFileError(f"{registrar.owner} (key {registrar.key_id}) is not a registered key administrator")
        if not bootstrap and registrar.key_id == key_id:
            raise KeyFileError("a key administrator cannot register their own key: ask another one")
        unsigned = replace(key, rank=rank, role=role, force=force, registered_by=registrar.key_id, registration_signature="")
        signed = replace(unsigned, registration_signature=base64.b64encode(registrar.sign(unsigned.registration_bytes())).decode())
        self._keys[key_id] = signed
        return signed

    def trusted(self, key_id: str, allow_revoked: bool = False) -> TrustedKey:
        """The unrevoked key, else SignatureRefused. Without the audit chain to place a record,
        any revocation refuses every record the key signed, earlier ones included: the signing
        time is the signer's word, not proof. ``allow_revoked``: the caller decides by position
        (SignatureGate with an audit index)."""
        key = self._keys.get(key_id)
        if key is None:
            raise SignatureRefused("unknown_key", key_id)
        if key.revoked_at_ms is not None and not allow_revoked:
            raise SignatureRefused("revoked_key", key_id)
        return key

    def verify_message(self, key_id: str, message: bytes, signature: bytes, allow_revoked: bool = False) -> TrustedKey:
        key = self.trusted(key_id, allow_revoked)
        try:
            key.verifier().verify(signature, message)
        except InvalidSignature:
            raise SignatureRefused("bad_signature", key_id) from None
        return key


@dataclass(frozen=True)
class VerifiedRecord:
    owner: str
    key_id: str
    signed_at_ms: int
    audit_hash: str
    # where the change's audit record sits (services/governance/audit/index.py AuditLink: partition, offset,
    # key_id), when the reader has an audit index; None otherwise
    audit_link: object = None


def verify_record(keyring: Keyring, topic: str, key: bytes | None, value: bytes | None,
                  headers: Iterable[tuple[str, bytes | None]] | None, allow_revoked: bool = False) -> VerifiedRecord:
    """The record's signer, or SignatureRefused with the reason (``allow_revoked``: Keyring.trusted)."""
    found = headers_dict(headers)
    key_id, signature = found.get(KEY_ID_HEADER, ""), found.get(SIGNATURE_HEADER, "")
    if not key_id or not signature:
        raise SignatureRefused("unsigned", key_id)
    try:
        raw_signature = base64.b64decode(signature, validate=True)
        signed_at = int(found.get(SIGNED_AT_HEADER, ""))
    except ValueError:
        raise SignatureRefused("bad_signature", key_id) from None
    trusted = keyring.verify_message(key_id, canonical_record_bytes(topic, key, value, found), raw_signature, allow_revoked)
    return VerifiedRecord(trusted.owner, key_id, signed_at, found.get(AUDIT_HASH_HEADER, ""))


class ReplayGuard:
    """Refuses a signed record older than the last one applied for the same key: re-producing an
    old signed 'add' must not bring back a subject that a later signed removal took off.

    Older means earlier in the audit chain when both changes' audit records sit in the same
    partition (one hash chain, issue #23): the signing time is the signer's word, so a record
    dated in the future neither blocks the changes after it nor makes its own replay look new.
    Only without that (no audit index, or the two audited in different partitions, whose offsets
    have no order) is the signing time compared."""

    def __init__(self) -> None:
        self._latest: dict[bytes, tuple[int, object]] = {}

    def check(self, key: bytes | None, verified: VerifiedRecord) -> None:
        latest = self._latest.get(key or b"")
        if latest is not None:
            at_ms, link = latest
            here = verified.audit_link
            if here is not None and link is not None and here.partition == link.partition:
                older = here.offset < link.offset
            else:
                older = verified.signed_at_ms < at_ms
            if older:
                raise SignatureRefused("replayed", verified.key_id)
        self._latest[key or b""] = (verified.signed_at_ms, verified.audit_link)


class SignatureGate:
    """What a reader of a signed topic calls per record: the verified signer, or None when the
    record must change nothing (then ``on_refused(record, refusal, live)`` reports it). Verified
    means: signed by a key of the keyring, carrying the hash of its audit record, and not older
    than the last change admitted for the same key (by audit position where known, ReplayGuard). With an audit index (services/governance/audit/index.py)
    the audit record must exist and describe this very change (a missing one is waited for, the
    index's hold-then-refuse policy), and the key must be valid at that audit record's position
    in the chain: a key revoked at position N still vouches for what was audited before N, never
    for anything after, whatever time the record claims. Without one, a revoked key vouches for nothing."""

    def __init__(self, keyring: Keyring, topic: str, on_refused=None, audit_index=None) -> None:
        self.keyring = keyring
        self.topic = topic
        self.on_refused = on_refused
        # ``audit_index.confirms(hash, topic, key, value)`` (services/governance/audit/index.py): the audit
        # record the change names exists, verifies and describes this very change.
        self.audit_index = audit_index
        self._replays = ReplayGuard()

    def admit(self, record, live: bool) -> VerifiedRecord | None:
        try:
            self.keyring.refresh()
            index = self.audit_index
            verified = verify_record(self.keyring, self.topic, record.key(), record.value(), record.headers(), allow_revoked=index is not None)
            if not verified.audit_hash:
                raise SignatureRefused("unaudited", verified.key_id)
            if index is not None:
                if not index.may_vouch(verified.key_id):  # revoked with no place in the chain: nothing it signed counts
                    raise SignatureRefused("revoked_key", verified.key_id)
                link = index.link(verified.audit_hash, self.topic, record.key(), record.value())
                if link is None:
                    raise SignatureRefused("unaudited", verified.key_id)
                for key_id in (verified.key_id, link.key_id):  # the change's signer and its audit record's
                    if not index.valid_at(key_id, link):
                        raise SignatureRefused("revoked_key", key_id)
                verified = replace(verified, audit_link=link)
            self._replays.check(record.key(), verified)
        except SignatureRefused as refusal:
            if self.on_refused is not None:
                self.on_refused(record, refusal, live)
            return None
        return verified
