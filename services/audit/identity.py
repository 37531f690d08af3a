"""Loads this process's signing key and trusted keyring from SigningSettings, with clear errors."""

from __future__ import annotations

from pathlib import Path

from services.common.errors import SettingsError
from services.common.settings import KeyringSettings, SigningSettings
from services.common.signing import Keyring, KeyFileError, Signer


def load_signer(settings: SigningSettings) -> Signer:
    if settings.signing_key_file is None or settings.signing_key_passphrase is None:
        raise SettingsError("LFR_SIGNING_KEY_FILE and LFR_SIGNING_KEY_PASSPHRASE are required: every change and audit record is signed "
                            "(create a key with `lfr keys create`)")
    try:
        return Signer.load(settings.signing_key_file, settings.signing_key_passphrase.get_secret_value())
    except KeyFileError as exc:
        raise SettingsError(f"LFR_SIGNING_KEY_FILE: {exc}") from None


def load_keyring(settings: KeyringSettings) -> Keyring:
    if settings.keyring_file is None:
        raise SettingsError("LFR_KEYRING_FILE is required: only records signed by a trusted key are applied")
    try:
        return Keyring.load(settings.keyring_file)
    except KeyFileError as exc:
        raise SettingsError(f"LFR_KEYRING_FILE: {exc}") from None


def ephemeral_identity(directory: Path, owner: str) -> dict[str, str]:
    """A fresh key for ``owner`` trusted by a fresh keyring in ``directory``: the LFR_* variables
    that make a process sign as ``owner`` and trust only that key (the local demo, tests)."""
    import secrets  # noqa: PLC0415
    import time  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    signer = Signer.generate(owner)
    passphrase = secrets.token_urlsafe(24)
    key_file = directory / f"{signer.key_id}.key.json"
    signer.save(key_file, passphrase)
    keyring = Keyring(directory / "keyring.json")
    keyring.add(signer, int(time.time() * 1000))
    keyring.save()
    return {"LFR_KEYRING_FILE": str(keyring.path), "LFR_SIGNING_KEY_FILE": str(key_file), "LFR_SIGNING_KEY_PASSPHRASE": passphrase}
