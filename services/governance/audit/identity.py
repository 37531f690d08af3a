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
    keyring.register(signer.key_id, "", "key_admin", "", signer)  # the first administrator: registers further keys
    keyring.save()
    return {"LFR_KEYRING_FILE": str(keyring.path), "LFR_SIGNING_KEY_FILE": str(key_file), "LFR_SIGNING_KEY_PASSPHRASE": passphrase}


def add_ephemeral_key(identity: dict[str, str], owner: str, rank: str = "superintendent", role: str = "authorising_officer",
                      force: str = "") -> Signer:
    """A second key trusted by the keyring of ``identity`` (same passphrase), registered with
    ``rank`` and ``role`` by the identity's own key (its key administrator), e.g. the authorising
    officer's in the demo: authorising a deployment needs a key other than its creator's, whose
    registered rank is high enough. ``force``: the force the key is registered for (none: default)."""
    import time  # noqa: PLC0415

    signer = Signer.generate(owner)
    key_file = Path(identity["LFR_SIGNING_KEY_FILE"]).with_name(f"{signer.key_id}.key.json")
    signer.save(key_file, identity["LFR_SIGNING_KEY_PASSPHRASE"])
    keyring = Keyring.load(Path(identity["LFR_KEYRING_FILE"]))
    keyring.add(signer, int(time.time() * 1000))
    admin = Signer.load(Path(identity["LFR_SIGNING_KEY_FILE"]), identity["LFR_SIGNING_KEY_PASSPHRASE"])
    keyring.register(signer.key_id, rank, role, force, admin)
    keyring.save()
    return Signer.load(key_file, identity["LFR_SIGNING_KEY_PASSPHRASE"])


def second_key(identity: dict[str, str], owner: str) -> Signer:
    """A trusted key other than the identity's own, beside it on disk: the first such key found,
    else a new one for ``owner`` (the demo's authorising officer)."""
    passphrase = identity["LFR_SIGNING_KEY_PASSPHRASE"]
    own = Path(identity["LFR_SIGNING_KEY_FILE"])
    mine = Signer.load(own, passphrase).key_id
    ring = Keyring.load(Path(identity["LFR_KEYRING_FILE"]))
    for key in ring.keys():
        candidate = own.with_name(f"{key.key_id}.key.json")
        if key.key_id != mine and key.revoked_at_ms is None and candidate.exists():
            if ring.registration(key.key_id) is None:  # made before ranks were registered: register it as the demo's superintendent
                ring.register(key.key_id, "superintendent", "authorising_officer", "", Signer.load(own, passphrase))
                ring.save()
            return Signer.load(candidate, passphrase)
    return add_ephemeral_key(identity, owner)


SIGNING_VARIABLES = ("LFR_KEYRING_FILE", "LFR_SIGNING_KEY_FILE", "LFR_SIGNING_KEY_PASSPHRASE")


def identity_from_env(environ) -> dict[str, str] | None:
    """The signing identity already configured in ``environ`` (all three variables), else None."""
    found = {name: environ.get(name, "") for name in SIGNING_VARIABLES}
    return found if all(found.values()) else None
