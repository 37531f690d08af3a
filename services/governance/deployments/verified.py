"""The one verified reader of lfr.deployments.v1: the services' view (view.py), `lfr deployment`
(store.py) and the report turn records into deployments here and nowhere else.

A record changes a deployment only if: the SignatureGate admits it (trusted key, exact bytes,
audit hash, no replay); it decodes, matches its key and follows its predecessor in the state
machine (view.parse, lifecycle.check_successor); its creator is the one its predecessor names (a
deployment's creator never changes) and a draft is signed by that creator's own key (nobody can
write a draft in someone else's name and then authorise it as "the other person"); and an
authorised record is countersigned by an officer other than the creator, with a key valid at the
audit position of the revision that first carries the countersignature and a rank registered by a
key administrator valid at the registration's own audit position (signing.py).

Limit: on a compacted topic the draft may be gone; a first-seen record past the draft keeps the
creator it names (signed by a trusted key), and the audit trail holds the draft's signer.
"""

from __future__ import annotations

from collections.abc import Callable

from services.common.signing import Keyring, SignatureGate, SignatureRefused
from services.governance.forces import place
from services.governance.forces.keys import foreign_key

from .record import Deployment
from .signing import check_authorisation

Change = tuple[str, Deployment | None]


def creator_problem(previous: Deployment | None, new: Deployment, signer_owner: str) -> str | None:
    """Why ``new`` (signed by ``signer_owner``) may not follow ``previous`` as far as its creator goes."""
    if previous is not None and new.created_by != previous.created_by:
        return f"the creator changed from {previous.created_by} to {new.created_by}"
    if new.state == "draft" and signer_owner != new.created_by:
        return f"a draft naming {new.created_by} as creator, signed by {signer_owner}"
    return None


def force_problem(topic: str, deployment: Deployment, key_id: str, keyring: Keyring, audit_index=None) -> None:
    """SignatureRefused when the deployment names another force than its topic's (force_mismatch)
    or its signer's key is registered for another force (key_force): services/governance/forces."""
    if place.mismatch(topic, {"force": deployment.force} if deployment.force else {}) is not None:
        place.FORCE_MISMATCHES.labels("deployments-reader", topic, "topic").inc()
        raise SignatureRefused("force_mismatch", key_id)
    judge = audit_index.registration_valid if audit_index is not None else None  # a registration judged by its audit position
    if foreign_key(keyring, key_id, deployment.force or "", judge=judge) is not None:
        raise SignatureRefused("key_force", key_id)


class VerifiedDeployments:
    """``change(record, live, previous)``: the verified change, None when refused for its signer
    (reported through ``on_refused(record, refusal, live)``); raises MessageError for a record
    that does not decode or breaks the state machine (the caller dead-letters or skips it)."""

    def __init__(self, keyring: Keyring, topic: str, on_refused: Callable[[object, SignatureRefused, bool], None] | None = None,
                 audit_index=None) -> None:
        self.keyring = keyring
        self.topic = topic
        self.on_refused = on_refused
        self.gate = SignatureGate(keyring, topic, on_refused, audit_index=audit_index)

    def change(self, record, live: bool, previous: Deployment | None) -> Change | None:
        from .view import parse  # noqa: PLC0415 - view imports this module

        verified = self.gate.admit(record, live)
        if verified is None:
            return None
        key = (record.key() or b"").decode("utf-8", "replace")
        if record.value() is None:
            return key, None
        deployment = parse(record.value(), key, previous)
        try:
            if creator_problem(previous, deployment, verified.owner) is not None:
                raise SignatureRefused("creator_changed", verified.key_id)
            force_problem(self.topic, deployment, verified.key_id, self.keyring, self.gate.audit_index)
            check_authorisation(deployment, self.keyring, self.gate.audit_index, verified.audit_link, previous)
        except SignatureRefused as refusal:
            if self.on_refused is not None:
                self.on_refused(record, refusal, live)
            return None
        return key, deployment
