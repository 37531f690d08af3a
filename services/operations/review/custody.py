"""What the review service holds on its own volume, where deletion is real:

- transit private keys (``keys/<key_id>.key``): one X25519 key per validity period, destroyed
  ``transit_key_grace_s`` after its validity ends; every sealed copy of evidence made with it
  (in lfr.evidence.v1, in any broker's memory or disk) is unreadable from then on;
- evidence in custody (``evidence/<alert_id>.json`` + ``.img``): the opened probe chip of an
  alert, erased when the alert is rejected (within ``rejected_erasure_s``) or when the evidence
  retention has passed since the alert, whatever else happens (the sweep decides from the files
  and the adjudications alone).

Pure file operations with an injected clock; the Kafka side lives in ``feeds.py``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from services.governance.evidence.sealing import public_bytes

logger = logging.getLogger(__name__)


def _erase(path: Path) -> bool:
    """Overwrite, then unlink (the overwrite matters on simple file systems; a copy-on-write
    or journalled volume needs encryption at rest, which the chart's volume class provides)."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as handle:
            handle.write(b"\0" * size)
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@dataclass(frozen=True)
class TransitKey:
    key_id: str
    private: X25519PrivateKey
    not_before_ms: int
    not_after_ms: int

    @property
    def public(self) -> bytes:
        return public_bytes(self.private.public_key())


class TransitKeyStore:
    def __init__(self, directory: Path, validity_ms: int, grace_ms: int, clock: Callable[[], int]) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.validity_ms, self.grace_ms, self.clock = validity_ms, grace_ms, clock

    def _path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}.key"

    def load(self, key_id: str) -> TransitKey | None:
        try:
            meta = json.loads(self._path(key_id).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        private = X25519PrivateKey.from_private_bytes(bytes.fromhex(meta["private"]))
        return TransitKey(key_id, private, meta["not_before_ms"], meta["not_after_ms"])

    def all(self) -> list[TransitKey]:
        keys = [self.load(p.stem) for p in self.directory.glob("*.key")]
        return [k for k in keys if k is not None]

    def ensure_current(self) -> TransitKey | None:
        """A new key when none is valid for at least another third of a period; else None."""
        now = self.clock()
        if any(k.not_before_ms <= now and k.not_after_ms - now > self.validity_ms // 3 for k in self.all()):
            return None
        start = now
        latest = max((k.not_after_ms for k in self.all() if k.not_after_ms > now), default=now)
        start = min(now, latest)
        key = TransitKey(f"tk-{now}-{secrets.token_hex(4)}", X25519PrivateKey.generate(), start, now + self.validity_ms)
        raw = key.private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        _write(self._path(key.key_id), json.dumps({"private": raw.hex(), "not_before_ms": key.not_before_ms,
                                                   "not_after_ms": key.not_after_ms}).encode())
        return key

    def destroy_expired(self) -> list[str]:
        now = self.clock()
        gone = [k.key_id for k in self.all() if now >= k.not_after_ms + self.grace_ms]
        for key_id in gone:
            _erase(self._path(key_id))
        return gone


@dataclass(frozen=True)
class Evidence:
    alert_id: str
    revision: int
    deployment_id: str
    media_type: str
    alert_at_ms: int
    image: bytes


class EvidenceCustody:
    def __init__(self, directory: Path, retention_ms: int, clock: Callable[[], int]) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.retention_ms, self.clock = retention_ms, clock

    def _paths(self, alert_id: str) -> tuple[Path, Path]:
        return self.directory / f"{alert_id}.json", self.directory / f"{alert_id}.img"

    def put(self, evidence: Evidence) -> bool:
        """Keep the newest revision; False when it is older than what is held or already expired."""
        meta_path, image_path = self._paths(evidence.alert_id)
        current = self.meta(evidence.alert_id)
        if current is not None and current["revision"] >= evidence.revision:
            return False
        if self.clock() - evidence.alert_at_ms >= self.retention_ms:
            return False
        _write(image_path, evidence.image)
        _write(meta_path, json.dumps({"alert_id": evidence.alert_id, "revision": evidence.revision, "deployment_id": evidence.deployment_id,
                                      "media_type": evidence.media_type, "alert_at_ms": evidence.alert_at_ms}).encode())
        return True

    def meta(self, alert_id: str) -> dict | None:
        try:
            return json.loads(self._paths(alert_id)[0].read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def image(self, alert_id: str) -> tuple[bytes, str] | None:
        meta = self.meta(alert_id)
        try:
            return (self._paths(alert_id)[1].read_bytes(), meta["media_type"]) if meta else None
        except FileNotFoundError:
            return None

    def held(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json"))

    def erase(self, alert_id: str) -> bool:
        meta_path, image_path = self._paths(alert_id)
        erased = _erase(image_path)
        return _erase(meta_path) or erased

    def expired(self) -> list[str]:
        now = self.clock()
        return [a for a in self.held() if (m := self.meta(a)) is None or now - m["alert_at_ms"] >= self.retention_ms]
