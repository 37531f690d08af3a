"""The deployment bundle: what a van needs for one deployment, signed by the force, sealed to the van.

Built by the core at authorisation from already-verified inputs (the deployment record, the
snapshot's watchlist entries with embeddings and reference images, the thresholds, the
keyring's public keys); opened by the van, which refuses it with a reason unless it was signed
by an unrevoked key of the force the van serves, for this van, for a window not yet over, and
not replayed. Layout (integers big-endian)::

    5 bytes   magic b"LFRB" + format version b"\\x01"
    4 + H     header: canonical JSON, in clear (ids, window, erase time, signer, payload hash)
    4 + W     the data key sealed to the van's X25519 key (services/governance/evidence/sealing.py,
              ephemeral-static X25519, HKDF-SHA256, AES-256-GCM; the header is associated data)
    8 + P     payload: 12-byte nonce + AES-256-GCM(data key, JSON contents, header as AAD)
    4 + S     Ed25519 signature by the force's key over all of the above (encrypt-then-sign:
              a tampered byte is refused before anything is decrypted)

Why `cryptography` rather than PyNaCl's SealedBox: it is already a dependency, the evidence
path uses the same construction, and AES-GCM with the header as associated data binds the
sealed key and the payload to this bundle's ids and window (a SealedBox has no associated data).
Each bundle has a fresh random 32-byte data key; nothing else can decrypt its payload.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.errors import LfrError
from services.common.signing import Keyring, SignatureRefused, Signer, TrustedKey
from services.governance.deployments.record import Deployment
from services.governance.evidence.sealing import SealError, open_sealed, seal
from services.governance.watchlist.entry import WatchlistEntry
from services.governance.watchlist.thresholds import Thresholds

from .vankey import VanKey, VanPublicKey

FORMAT = "lfr.bundle.v1"
MAGIC = b"LFRB\x01"
SIGNATURE_CONTEXT = b"lfr.bundle-signature.v1"
WRAP_INFO = b"openlfr bundle data key v1"
MAX_GRACE_MS = 7 * 86_400_000
#: who may sign a force's bundles: a keyring key whose owner is ``force:<force id>``
FORCE_OWNER_PREFIX = "force:"
#: deployment states a bundle may be built for
BUNDLE_STATES = ("authorised", "active")

# Why a bundle was refused; bounded (metric label, CLI message, audit detail).
REFUSALS = ("truncated", "malformed", "tampered", "unknown_key", "revoked_key", "wrong_force", "wrong_van", "expired",
            "replayed", "inconsistent", "erased")


class BundleError(LfrError, ValueError):
    """The core cannot build a bundle from these inputs (usage: exit 2)."""

    exit_code = 2


class BundleRefused(LfrError):
    """The van refuses a bundle; ``reason`` is one of REFUSALS (exit 3: refused on purpose)."""

    exit_code = 3

    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REFUSALS, reason
        super().__init__(f"bundle refused: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


def force_owner(force: str) -> str:
    return FORCE_OWNER_PREFIX + force


def _frame(*parts: bytes) -> bytes:
    return b"".join(len(part).to_bytes(8, "big") + part for part in parts)


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _to_json(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$b64"}:
            return base64.b64decode(value["$b64"], validate=True)
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


# -- the contents --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BundleContents:
    """What a van needs for one deployment (plaintext: exists only in the core's and the van's memory)."""

    deployment: Deployment
    entries: tuple[WatchlistEntry, ...]
    thresholds: Thresholds
    keyring: tuple[TrustedKey, ...]

    def to_bytes(self) -> bytes:
        return _canonical(_to_json({
            "deployment": self.deployment.to_data(),
            "entries": [entry.to_data() for entry in self.entries],
            "thresholds": {"default": self.thresholds.default, "per_category": dict(self.thresholds.per_category)},
            "keyring": [asdict(key) for key in self.keyring],
        }))

    @classmethod
    def from_bytes(cls, raw: bytes) -> BundleContents:
        data = _from_json(json.loads(raw))
        return cls(
            Deployment.from_data(data["deployment"]),
            tuple(WatchlistEntry.from_data(entry) for entry in data["entries"]),
            Thresholds(float(data["thresholds"]["default"]), {k: float(v) for k, v in data["thresholds"]["per_category"].items()}),
            tuple(TrustedKey(**key) for key in data["keyring"]),
        )


@dataclass(frozen=True)
class BundleHeader:
    """The bundle's clear, signed header: enough to decide whether to open it."""

    bundle_id: str
    van_id: str
    van_key_id: str
    force: str
    deployment_id: str
    deployment_revision: int
    window_start_ms: int
    window_end_ms: int
    erase_at_ms: int
    built_at_ms: int
    signer_key_id: str
    snapshot_hash: str
    entries: int
    payload_sha256: str
    format: str = FORMAT

    def to_bytes(self) -> bytes:
        return _canonical(asdict(self))

    @classmethod
    def from_bytes(cls, raw: bytes) -> BundleHeader:
        try:
            document = json.loads(raw)
            header = cls(**document)
        except (ValueError, TypeError) as exc:
            raise BundleRefused("malformed", f"header: {type(exc).__name__}") from None
        if header.format != FORMAT:
            raise BundleRefused("malformed", f"format {header.format!r}")
        return header


@dataclass(frozen=True)
class SealedBundle:
    """The parts of a bundle file, parsed but not yet verified."""

    header_bytes: bytes
    wrapped_key: bytes
    payload: bytes  # nonce + ciphertext
    signature: bytes

    @property
    def signed_bytes(self) -> bytes:
        return _frame(SIGNATURE_CONTEXT, self.header_bytes, self.wrapped_key, self.payload)

    def to_bytes(self) -> bytes:
        return b"".join((
            MAGIC,
            struct.pack(">I", len(self.header_bytes)), self.header_bytes,
            struct.pack(">I", len(self.wrapped_key)), self.wrapped_key,
            struct.pack(">Q", len(self.payload)), self.payload,
            struct.pack(">I", len(self.signature)), self.signature,
        ))

    @classmethod
    def parse(cls, raw: bytes) -> SealedBundle:
        if len(raw) < len(MAGIC) or raw[: len(MAGIC) - 1] != MAGIC[:-1]:
            raise BundleRefused("truncated" if len(raw) < len(MAGIC) else "malformed", "not a bundle file")
        if raw[: len(MAGIC)] != MAGIC:
            raise BundleRefused("malformed", f"format version {raw[len(MAGIC) - 1]}")
        offset = len(MAGIC)
        parts = []
        for size_format in (">I", ">I", ">Q", ">I"):
            width = struct.calcsize(size_format)
            if offset + width > len(raw):
                raise BundleRefused("truncated", f"{len(raw)} bytes")
            (length,) = struct.unpack_from(size_format, raw, offset)
            offset += width
            if offset + length > len(raw):
                raise BundleRefused("truncated", f"{len(raw)} bytes")
            parts.append(raw[offset: offset + length])
            offset += length
        if offset != len(raw):
            raise BundleRefused("malformed", f"{len(raw) - offset} bytes after the signature")
        return cls(*parts)

    def header(self) -> BundleHeader:
        return BundleHeader.from_bytes(self.header_bytes)


# -- build (core) --------------------------------------------------------------------------------


def build_bundle(contents: BundleContents, van: VanPublicKey, force: str, signer: Signer, *, grace_ms: int,
                 now_ms: int | None = None) -> bytes:
    """One van's bundle for one deployment. The inputs must already be verified (the core's
    readers check signatures); this checks that they belong together."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    d = contents.deployment
    if d.state not in BUNDLE_STATES:
        raise BundleError(f"deployment {d.deployment_id} is {d.state}: bundles are built for {' or '.join(BUNDLE_STATES)} deployments")
    if d.window is None or d.snapshot is None or d.authorisation is None:
        raise BundleError(f"deployment {d.deployment_id} has no window, snapshot or authorisation")
    if d.force is not None and d.force != force:
        raise BundleError(f"deployment {d.deployment_id} belongs to force {d.force!r}, not {force!r}")
    if now >= d.window.end_ms:
        raise BundleError(f"deployment {d.deployment_id}'s window ended")
    if not 0 <= grace_ms <= MAX_GRACE_MS:
        raise BundleError(f"grace {grace_ms} ms outside 0..{MAX_GRACE_MS}")
    if signer.owner != force_owner(force):
        raise BundleError(f"the signing key {signer.key_id} belongs to {signer.owner!r}, not {force_owner(force)!r}")
    versions = d.snapshot.entry_versions
    from services.governance.deployments.snapshot import entry_version  # noqa: PLC0415 - the one definition of a version

    outside = [e.subject_id for e in contents.entries if entry_version(e) not in versions]
    if outside:
        raise BundleError(f"{len(outside)} entries are not in the deployment's snapshot")
    plaintext = contents.to_bytes()
    header = BundleHeader(
        bundle_id=uuid.uuid4().hex, van_id=van.van_id, van_key_id=van.key_id, force=force, deployment_id=d.deployment_id,
        deployment_revision=d.revision, window_start_ms=d.window.start_ms, window_end_ms=d.window.end_ms,
        erase_at_ms=d.window.end_ms + grace_ms, built_at_ms=now, signer_key_id=signer.key_id, snapshot_hash=d.snapshot.hash,
        entries=len(contents.entries), payload_sha256=hashlib.sha256(plaintext).hexdigest(),
    )
    header_bytes = header.to_bytes()
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    payload = nonce + AESGCM(data_key).encrypt(nonce, plaintext, header_bytes)
    wrapped = seal(van.public_key, data_key, header_bytes, info=WRAP_INFO)
    unsigned = SealedBundle(header_bytes, wrapped, payload, b"")
    return SealedBundle(header_bytes, wrapped, payload, signer.sign(unsigned.signed_bytes)).to_bytes()


# -- open (van) ----------------------------------------------------------------------------------


def verify_bundle(raw: bytes, trust: Keyring, *, van_id: str, van_key_id: str, force: str, now_ms: int) -> tuple[SealedBundle, BundleHeader]:
    """The parsed bundle if it is signed by the force this van serves, for this van, and its
    window is not over; else BundleRefused. Nothing is decrypted here."""
    sealed = SealedBundle.parse(raw)
    header = sealed.header()
    try:
        key = trust.verify_message(header.signer_key_id, sealed.signed_bytes, sealed.signature)
    except SignatureRefused as refusal:
        reason = "tampered" if refusal.reason == "bad_signature" else refusal.reason
        raise BundleRefused(reason, f"key {header.signer_key_id}") from None
    if key.owner != force_owner(header.force):
        raise BundleRefused("wrong_force", f"signed by {key.owner!r} for force {header.force!r}")
    if header.force != force:
        raise BundleRefused("wrong_force", f"for force {header.force!r}; this van serves {force!r}")
    if header.van_id != van_id or header.van_key_id != van_key_id:
        raise BundleRefused("wrong_van", f"for van {header.van_id!r} key {header.van_key_id}")
    if now_ms >= header.window_end_ms or now_ms >= header.erase_at_ms:
        raise BundleRefused("expired", f"window ended at {header.window_end_ms}")
    return sealed, header


def unwrap_data_key(sealed: SealedBundle, van: VanKey) -> bytes:
    try:
        return open_sealed(van.private_key, sealed.wrapped_key, sealed.header_bytes, info=WRAP_INFO)
    except SealError:
        raise BundleRefused("wrong_van", "the data key is not sealed to this van's key") from None


def decrypt_contents(header_bytes: bytes, payload: bytes, data_key: bytes) -> BundleContents:
    """The plaintext contents (memory only), checked against the signed header."""
    header = BundleHeader.from_bytes(header_bytes)
    try:
        plaintext = AESGCM(data_key).decrypt(payload[:12], payload[12:], header_bytes)
    except Exception:  # noqa: BLE001 - InvalidTag and friends: one refusal
        raise BundleRefused("tampered", "payload does not decrypt") from None
    if hashlib.sha256(plaintext).hexdigest() != header.payload_sha256:
        raise BundleRefused("tampered", "payload hash differs from the signed header")
    try:
        contents = BundleContents.from_bytes(plaintext)
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleRefused("malformed", f"contents: {type(exc).__name__}") from None
    check_consistent(header, contents)
    return contents


def check_consistent(header: BundleHeader, contents: BundleContents) -> None:
    d = contents.deployment
    problems = []
    if (d.deployment_id, d.revision) != (header.deployment_id, header.deployment_revision):
        problems.append("deployment id or revision")
    if d.window is None or (d.window.start_ms, d.window.end_ms) != (header.window_start_ms, header.window_end_ms):
        problems.append("window")
    if d.snapshot is None or d.snapshot.hash != header.snapshot_hash or len(contents.entries) != header.entries:
        problems.append("snapshot")
    if problems:
        raise BundleRefused("inconsistent", ", ".join(problems) + " differ from the header")


def describe(header: BundleHeader) -> dict[str, Any]:
    """What `lfr bundle inspect` prints: the header, which holds no personal data."""
    return asdict(header)
