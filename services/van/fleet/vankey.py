"""A van's own X25519 key: bundles are sealed to it, and it wraps the van's data keys at rest.

The private key lives only in the van, PKCS#8-encrypted with a passphrase (mode 0600); the
public half is a small JSON file the core keeps per van (van id, key id, public key). Re-keying
a van (lent to another force, or after a compromise) is a new key pair: every bundle sealed to
the old key is unreadable once the old private key file is destroyed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from services.common.signing import KeyFileError

#: a van id: letters, digits, dot, hyphen, underscore (it names files and appears in audit records)
VAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_van_id(van_id: str) -> str:
    if not isinstance(van_id, str) or not VAN_ID.match(van_id):
        raise ValueError(f"van id {van_id!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return van_id


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def van_key_id(public_raw: bytes) -> str:
    return hashlib.sha256(b"lfr.van-key.v1" + public_raw).hexdigest()[:16]


@dataclass(frozen=True)
class VanPublicKey:
    """What the core knows of a van: enough to seal a bundle to it."""

    van_id: str
    public_key: bytes  # raw 32 bytes

    @property
    def key_id(self) -> str:
        return van_key_id(self.public_key)

    def to_json(self) -> str:
        return json.dumps({"van_id": self.van_id, "key_id": self.key_id, "public_key": base64.b64encode(self.public_key).decode()}, indent=2) + "\n"

    @classmethod
    def load(cls, path: Path) -> VanPublicKey:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
            raw = base64.b64decode(document["public_key"], validate=True)
            X25519PublicKey.from_public_bytes(raw)
            key = cls(check_van_id(document["van_id"]), raw)
        except FileNotFoundError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise KeyFileError(f"{path} is not a van public key file ({type(exc).__name__})") from None
        if document.get("key_id") not in (None, key.key_id):
            raise KeyFileError(f"{path}: key_id does not match the public key")
        return key


@dataclass(frozen=True)
class VanKey:
    """The van's private key, loaded."""

    van_id: str
    _private: X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, van_id: str) -> VanKey:
        return cls(check_van_id(van_id), X25519PrivateKey.generate())

    @property
    def private_key(self) -> X25519PrivateKey:
        return self._private

    def public(self) -> VanPublicKey:
        return VanPublicKey(self.van_id, _raw_public(self._private.public_key()))

    def secret_bytes(self) -> bytes:
        """The raw private key, for deriving the at-rest wrapping key (never written in clear)."""
        return self._private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())

    def save(self, path: Path, passphrase: str) -> None:
        """Write the private key encrypted with ``passphrase`` (mode 0600, never overwritten)."""
        if len(passphrase) < 8:
            raise KeyFileError("the passphrase must be at least 8 characters")
        pem = self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.BestAvailableEncryption(passphrase.encode()))
        document = {"van_id": self.van_id, "key_id": self.public().key_id, "private_key_pem": pem.decode()}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)

    @classmethod
    def load(cls, path: Path, passphrase: str) -> VanKey:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
            private = serialization.load_pem_private_key(document["private_key_pem"].encode(), passphrase.encode())
        except FileNotFoundError:
            raise KeyFileError(f"no van key at {path}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise KeyFileError(f"cannot open the van key {path}: wrong passphrase or not a key file ({type(exc).__name__})") from None
        if not isinstance(private, X25519PrivateKey):
            raise KeyFileError(f"{path} is not an X25519 key")
        return cls(check_van_id(str(document["van_id"])), private)
