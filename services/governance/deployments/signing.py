"""Authorising a deployment takes a second signer: the authorising officer's key countersigns
what was authorised, inside the record, so the proof survives compaction and every later
transition (start, end) carries it. Readers check it with the keyring: a trusted key, valid
where the countersignature entered the audit chain (unrevoked, without an audit index), whose owner
is the recorded officer, is not the creator, and whose registered rank (Keyring.registration)
is the rank the record names."""

from __future__ import annotations

import base64
import dataclasses
import json

from services.common.signing import Keyring, SignatureRefused, Signer
from services.governance.forces.keys import foreign_key

from .record import Deployment, rank_level

CONTEXT = b"lfr.deployment-authorisation.v1\x00"


def authorised_bytes(d: Deployment) -> bytes:
    """What the officer signs: who created it, where, when, which cameras, criteria, threshold,
    the snapshot (version and hash) and the authorisation itself (less its signature)."""
    data = d.to_data()
    authorisation = {k: v for k, v in (data.get("authorisation") or {}).items() if k != "signature"}
    snapshot = data.get("snapshot") or {}
    body = {
        "deployment_id": d.deployment_id, "created_by": d.created_by, "window": data.get("window"), "cameras": data.get("cameras"),
        "criteria": data.get("criteria"), "match_threshold": data.get("match_threshold"), "place": data.get("place"),
        "purpose": data.get("purpose"), "snapshot": {"version": snapshot.get("version"), "hash": snapshot.get("hash")},
        "authorisation": authorisation,
    }
    return CONTEXT + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def countersign(d: Deployment, signer: Signer) -> Deployment:
    """The record with its authorisation signed by ``signer``, whose owner becomes the officer."""
    assert d.authorisation is not None
    unsigned = dataclasses.replace(d, authorisation=dataclasses.replace(d.authorisation, officer=signer.owner, key_id=signer.key_id,
                                                                        signature=None))
    signature = base64.b64encode(signer.sign(authorised_bytes(unsigned))).decode()
    return dataclasses.replace(unsigned, authorisation=dataclasses.replace(unsigned.authorisation, signature=signature))


def check_authorisation(d: Deployment, keyring: Keyring, audit_index=None, link=None, previous: Deployment | None = None) -> None:
    """SignatureRefused unless an authorised record carries a valid countersignature by a
    trusted key of its officer, who is not the creator, with the rank registered for that key.

    With the reader's audit index and ``link`` (where this revision's audit record sits), the
    officer's key is judged by position (issue #23): at the revision that first carries this
    countersignature (a later transition carrying the same one, ``previous``'s, was judged when
    it came), so revoking an authoriser keeps what they authorised before and refuses what is
    countersigned with their key after, whatever time it claims; the registration behind the
    rank is judged at its own keys.register record (AuditIndex.registration_valid). Without an
    index, a revoked officer's key or registrar refuses every countersignature."""
    auth = d.authorisation
    if auth is None:
        return
    if not auth.key_id or not auth.signature:
        raise SignatureRefused("not_countersigned", auth.key_id or "")
    try:
        signature = base64.b64decode(auth.signature, validate=True)
    except ValueError:
        raise SignatureRefused("bad_signature", auth.key_id) from None
    by_position = audit_index is not None and link is not None
    trusted = keyring.verify_message(auth.key_id, authorised_bytes(d), signature, allow_revoked=by_position)
    if trusted.owner != auth.officer:
        raise SignatureRefused("bad_signature", auth.key_id)
    if trusted.owner == d.created_by:
        raise SignatureRefused("self_authorised", auth.key_id)
    if by_position:
        carried = previous is not None and previous.authorisation is not None and previous.authorisation.signature == auth.signature \
            and previous.authorisation.key_id == auth.key_id
        if not carried and not (audit_index.may_vouch(auth.key_id) and audit_index.valid_at(auth.key_id, link)):
            raise SignatureRefused("revoked_key", auth.key_id)
    registered = keyring.registration(auth.key_id, judge=audit_index.registration_valid if by_position else None)
    if registered is None or rank_level(registered.rank) is None or rank_level(registered.rank) != rank_level(auth.rank):
        raise SignatureRefused("rank_not_registered", auth.key_id)
    # Only the deployment's own force authorises it; the registration judged as the rank was.
    if foreign_key(keyring, auth.key_id, d.force or "", registered_only=True, judge=audit_index.registration_valid if by_position else None):
        raise SignatureRefused("key_force", auth.key_id)
