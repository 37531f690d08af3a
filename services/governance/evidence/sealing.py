"""Seal and open one evidence blob: X25519 ephemeral-static ECDH, HKDF-SHA256, AES-256-GCM.

Each sealed blob has its own ephemeral key, so its data key is unique; only the holder of the
recipient's private key can open it. When the review service destroys that private key, every
copy of the blob, wherever a broker keeps it, becomes unreadable (crypto-shredding).
The alert id and revision are bound as associated data, so a blob cannot be replayed under
another alert.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALGORITHM = "X25519-HKDF-SHA256-AES256GCM"
_INFO = b"openlfr evidence v1"
_RAW = serialization.Encoding.Raw
_PUBLIC_RAW = serialization.PublicFormat.Raw


class SealError(ValueError):
    """A blob that cannot be opened: wrong key, tampered, or not a sealed blob."""


def associated_data(alert_id: str, revision: int) -> bytes:
    return f"{alert_id}|{revision}".encode()


def _data_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes, info: bytes = _INFO) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + recipient_public, info=info).derive(shared)


def public_bytes(key: X25519PublicKey) -> bytes:
    return key.public_bytes(_RAW, _PUBLIC_RAW)


def seal(recipient_public: bytes, plaintext: bytes, aad: bytes, info: bytes = _INFO) -> bytes:
    """``info`` separates the uses of this construction (evidence, deployment bundles)."""
    recipient = X25519PublicKey.from_public_bytes(recipient_public)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = public_bytes(ephemeral.public_key())
    key = _data_key(ephemeral.exchange(recipient), ephemeral_public, recipient_public, info)
    nonce = os.urandom(12)
    return ephemeral_public + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(recipient: X25519PrivateKey, blob: bytes, aad: bytes, info: bytes = _INFO) -> bytes:
    if len(blob) < 32 + 12 + 16:
        raise SealError("sealed blob too short")
    ephemeral_public, nonce, ciphertext = blob[:32], blob[32:44], blob[44:]
    try:
        shared = recipient.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        key = _data_key(shared, ephemeral_public, public_bytes(recipient.public_key()), info)
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except Exception as exc:  # noqa: BLE001 - InvalidTag and friends: one clear refusal
        raise SealError(f"cannot open sealed evidence ({type(exc).__name__})") from None
