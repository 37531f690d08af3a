"""The van's bundles at rest: ciphertext on disk, plaintext in memory only, crypto-erased on time.

Importing a verified bundle keeps its signed header and its payload ciphertext, and the data
key wrapped (AES-256-GCM) under a key derived from the van's private key and the bundle id;
the transport copy (sealed to the van's public key) is not kept. Unlocking decrypts into
memory. At the bundle's erase time (window end + the force's grace) ``erase_due`` destroys
the wrapped data key (overwritten, fsynced, unlinked), then the ciphertext, and drops the
memory copy: no link is needed, and whatever copy of the ciphertext survives on the flash is
unreadable, because no copy of its data key exists any more. Each erasure queues an audit
record (lfr.audit.v2, action ``bundle.erased``) in the van's outbox for the link to deliver.

The ledger (ledger.json) remembers every bundle taken in and every deployment erased, so an
older bundle, or one of an erased deployment, is refused as replayed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from prometheus_client import Counter

from services.common.jsonevents import encode as encode_event
from services.common.signing import Keyring

from .bundle import BundleContents, BundleHeader, BundleRefused, decrypt_contents, unwrap_data_key, verify_bundle
from .vankey import VanKey

logger = logging.getLogger(__name__)

BUNDLES_REFUSED = Counter("lfr_van_bundles_refused_total", "Bundles the van refused, by reason", ["reason"])
BUNDLES_ERASED = Counter("lfr_van_bundles_erased_total", "Bundles crypto-erased by the van, by why", ["why"])
AT_REST_INFO = b"openlfr van data key at rest v1"
ERASE_ACTION = "bundle.erased"
AUDIT_TOPIC = "lfr.audit.v2"


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _shred(path: Path) -> None:
    """Overwrite then unlink. On flash the old blocks may survive; that is why only the data
    key's destruction is relied on, and it has no other copy."""
    if not path.exists():
        return
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.write(os.urandom(size))
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
    _fsync_dir(path.parent)


def held_bundles(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The ledger's bundles not yet erased (ids and times only; no key needed to read it)."""
    path = Path(state_dir) / "ledger.json"
    ledger = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"bundles": {}}
    return {k: v for k, v in ledger["bundles"].items() if v["state"] == "held"}


@dataclass(frozen=True)
class Erasure:
    bundle_id: str
    deployment_id: str
    force: str
    at_ms: int
    why: str


class VanBundleStore:
    """One van's bundles under ``state_dir`` (bundles/<id>/ and ledger.json)."""

    def __init__(self, state_dir: Path, van_key: VanKey, force: str, trust: Keyring, outbox=None,
                 audit_topic: str = AUDIT_TOPIC) -> None:
        self.state_dir = Path(state_dir)
        self.van_key = van_key
        self.force = force
        self.trust = trust
        self.outbox = outbox
        self.audit_topic = audit_topic
        self._bundles = self.state_dir / "bundles"
        self._bundles.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._ledger_path = self.state_dir / "ledger.json"
        self._ledger: dict[str, Any] = (json.loads(self._ledger_path.read_text(encoding="utf-8"))
                                        if self._ledger_path.exists() else {"bundles": {}, "erased_deployments": []})
        self._loaded: dict[str, BundleContents] = {}  # memory only
        self._sweep_orphans()

    def _sweep_orphans(self) -> None:
        """A power cut between writing a bundle's files and the ledger leaves a folder the ledger
        does not hold: destroy it (its key first), so nothing escapes erasure."""
        held = self.held()
        for folder in self._bundles.iterdir():
            if folder.is_dir() and folder.name not in held:
                _shred(folder / "datakey.wrapped")
                shutil.rmtree(folder, ignore_errors=True)
                logger.warning("orphaned bundle folder destroyed", extra={"bundle_id": folder.name})

    # -- taking a bundle in ------------------------------------------------------------------

    def take_in(self, raw: bytes, now_ms: int) -> BundleHeader:
        """Verify a bundle and keep it encrypted at rest; BundleRefused (counted) otherwise."""
        try:
            sealed, header = verify_bundle(raw, self.trust, van_id=self.van_key.van_id, van_key_id=self.van_key.public().key_id,
                                           force=self.force, now_ms=now_ms)
            self._check_not_replayed(header)
            data_key = unwrap_data_key(sealed, self.van_key)
            decrypt_contents(sealed.header_bytes, sealed.payload, data_key)  # refuse now, not at the first match
        except BundleRefused as refusal:
            BUNDLES_REFUSED.labels(refusal.reason).inc()
            logger.info("bundle refused", extra={"reason": refusal.reason})  # the caller reports it; counted above
            raise
        folder = self._bundles / header.bundle_id
        folder.mkdir(mode=0o700, exist_ok=True)
        _atomic_write(folder / "header.json", sealed.header_bytes)
        _atomic_write(folder / "payload.bin", sealed.payload)
        _atomic_write(folder / "datakey.wrapped", self._wrap(header.bundle_id, data_key))
        self._ledger["bundles"][header.bundle_id] = {
            "deployment_id": header.deployment_id, "revision": header.deployment_revision, "built_at_ms": header.built_at_ms,
            "erase_at_ms": header.erase_at_ms, "window_start_ms": header.window_start_ms, "window_end_ms": header.window_end_ms,
            "state": "held",
        }
        self._save_ledger()
        logger.info("bundle taken in", extra={"bundle_id": header.bundle_id, "deployment_id": header.deployment_id})
        return header

    def _check_not_replayed(self, header: BundleHeader) -> None:
        if header.bundle_id in self._ledger["bundles"]:
            raise BundleRefused("replayed", f"bundle {header.bundle_id} was taken in before")
        if header.deployment_id in self._ledger["erased_deployments"]:
            raise BundleRefused("replayed", f"deployment {header.deployment_id} was erased from this van")
        for held in self._ledger["bundles"].values():
            if held["deployment_id"] == header.deployment_id and (held["revision"], held["built_at_ms"]) > (header.deployment_revision, header.built_at_ms):
                raise BundleRefused("replayed", "a newer bundle of this deployment was taken in")

    # -- the data key at rest ----------------------------------------------------------------

    def _kek(self, bundle_id: str) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=bundle_id.encode(), info=AT_REST_INFO).derive(self.van_key.secret_bytes())

    def _wrap(self, bundle_id: str, data_key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self._kek(bundle_id)).encrypt(nonce, data_key, bundle_id.encode())

    def _unwrap(self, bundle_id: str) -> bytes:
        path = self._bundles / bundle_id / "datakey.wrapped"
        if not path.exists():
            raise BundleRefused("erased", f"bundle {bundle_id} has no data key")
        wrapped = path.read_bytes()
        try:
            return AESGCM(self._kek(bundle_id)).decrypt(wrapped[:12], wrapped[12:], bundle_id.encode())
        except Exception:  # noqa: BLE001 - InvalidTag: another van's key, or a damaged file
            raise BundleRefused("tampered", "the stored data key does not open with this van's key") from None

    # -- use ---------------------------------------------------------------------------------

    def unlock(self, bundle_id: str, now_ms: int) -> BundleContents:
        """The bundle's contents, decrypted into memory (erased first if its time has come)."""
        if bundle_id in self._loaded:
            return self._loaded[bundle_id]
        entry = self._ledger["bundles"].get(bundle_id)
        if entry is None or entry["state"] != "held":
            raise BundleRefused("erased", f"bundle {bundle_id} is not held")
        if now_ms >= entry["erase_at_ms"]:
            self.erase_due(now_ms)
            raise BundleRefused("expired", f"bundle {bundle_id} was due for erasure")
        folder = self._bundles / bundle_id
        contents = decrypt_contents((folder / "header.json").read_bytes(), (folder / "payload.bin").read_bytes(), self._unwrap(bundle_id))
        self._loaded[bundle_id] = contents
        return contents

    def held(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self._ledger["bundles"].items() if v["state"] == "held"}

    def next_erase_at_ms(self) -> int | None:
        return min((v["erase_at_ms"] for v in self.held().values()), default=None)

    # -- erasure -----------------------------------------------------------------------------

    def erase_due(self, now_ms: int) -> list[Erasure]:
        """Crypto-erase every bundle whose erase time has passed (call at start and on a timer)."""
        return [self.erase(bundle_id, now_ms, "window_end") for bundle_id, v in self.held().items() if now_ms >= v["erase_at_ms"]]

    def erase(self, bundle_id: str, now_ms: int, why: str = "manual") -> Erasure:
        entry = self._ledger["bundles"][bundle_id]
        folder = self._bundles / bundle_id
        force = json.loads((folder / "header.json").read_bytes()).get("force", self.force) if (folder / "header.json").exists() else self.force
        self._loaded.pop(bundle_id, None)  # the index and reference images held in memory
        _shred(folder / "datakey.wrapped")  # from here on the ciphertext is unreadable
        shutil.rmtree(folder, ignore_errors=True)
        entry.update(state="erased", erased_at_ms=now_ms)
        if entry["deployment_id"] not in self._ledger["erased_deployments"]:
            self._ledger["erased_deployments"].append(entry["deployment_id"])
        self._save_ledger()
        erasure = Erasure(bundle_id, entry["deployment_id"], force, now_ms, why)
        BUNDLES_ERASED.labels(why).inc()
        logger.info("bundle erased", extra={"bundle_id": bundle_id, "deployment_id": erasure.deployment_id, "why": why})
        if self.outbox is not None:
            self.outbox.enqueue([self.erasure_record(erasure)], now_ms)
        return erasure

    def erasure_record(self, erasure: Erasure):
        """The audit record of an erasure, as an outbox row (a stable ce_id: queued once)."""
        from services.van.link.dedup import LINK_ID_HEADER, VAN_HEADER  # noqa: PLC0415 - the link owns the outbox format
        from services.van.link.outbox import OutboxRow  # noqa: PLC0415

        van_id = self.van_key.van_id
        value, event_headers = encode_event(AUDIT_TOPIC, {  # the schema is the topic's name
            "actor": f"van:{van_id}", "action": ERASE_ACTION, "at_ms": erasure.at_ms, "service": "van",
            "deployment_id": erasure.deployment_id,
            "details": {"bundle_id": erasure.bundle_id, "van_id": van_id, "force": erasure.force, "why": erasure.why},
        })
        ce_id = hashlib.sha256(f"{van_id}|{ERASE_ACTION}|{erasure.bundle_id}".encode()).hexdigest()[:32]
        return OutboxRow(ce_id, self.audit_topic, van_id.encode(), value,
                         (*event_headers, (LINK_ID_HEADER, ce_id.encode()), (VAN_HEADER, van_id.encode())))

    def _save_ledger(self) -> None:
        _atomic_write(self._ledger_path, json.dumps(self._ledger, indent=1, sort_keys=True).encode())
