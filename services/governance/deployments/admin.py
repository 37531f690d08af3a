"""Deployment operations behind `lfr deployment`: check (pure lifecycle), then write, then audit.

A refused operation raises ``Refused`` before anything is written. Every accepted transition
writes the whole record to lfr.deployments.v1 and appends one audit record with the actor.
Actors are key owners: the creator is the owner of the store's signing key, and authorisation
is countersigned by the authorising officer's own key (services/governance/deployments/signing.py); the
names given on the command line are kept as claims in the audit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from services.governance.audit.identity import load_keyring
from services.common.signing import Signer

from services.engine.face.models import SFACE
from services.governance.forces.keys import KeyForceRefused, owning_force
from services.governance.forces.naming import DEFAULT_FORCE
from services.governance.forces.place import force_of_topic

from . import calibration as calibration_file
from . import lifecycle, snapshot
from .calibration import Calibration
from .policy import now_ms
from .record import Deployment, Problem, Refused, missing_for_authorisation
from .signing import countersign
from .store import DeploymentStore


@dataclass(frozen=True)
class Authorised:
    deployment: Deployment
    expected_false_alerts_per_hour: float
    excluded: dict[str, int]  # entries not frozen, by reason


def _force_of(topic: str) -> str | None:
    """The force id a new deployment on ``topic`` names (None for force default: as before forces)."""
    force = force_of_topic(topic)
    return None if force == DEFAULT_FORCE else force


def rules_from(settings) -> lifecycle.AuthorisationRules:
    return lifecycle.AuthorisationRules(
        min_rank=settings.deployment_min_rank,
        max_window_ms=int(settings.deployment_max_window_h * 3_600_000),
        threshold_floor_setting=settings.deployment_threshold_floor,
        threshold_floor_override_reason=settings.deployment_threshold_floor_override_reason,
        false_alerts_limit_per_hour=settings.deployment_false_alerts_limit_per_hour,
    )


def load_calibration(settings) -> Calibration:
    directory = settings.calibration_dir or calibration_file.CALIBRATION_DIR
    return calibration_file.load(calibration_file.path_for(SFACE.name, directory))


class DeploymentAdmin:
    def __init__(self, store: DeploymentStore, clock: Callable[[], int] = now_ms, calibration: Calibration | None = None) -> None:
        self.store = store
        self.settings = store.settings
        self.clock = clock
        self.calibration = calibration or load_calibration(self.settings)

    def get(self, deployment_id: str) -> Deployment:
        found = self.store.read_all().get(deployment_id)
        if found is None:
            raise Refused((Problem("deployment_id", f"no deployment {deployment_id}"),))
        return found

    def create(self, draft: Deployment) -> Deployment:
        existing = self.store.read_all().get(draft.deployment_id)
        if existing is not None:
            raise Refused((Problem("deployment_id", f"deployment {draft.deployment_id} already exists ({existing.state})"),))
        owner = self.store.watchlist.signer.owner
        if draft.force is None:  # a deployment carries its force: the one whose topics it is written to
            draft = dataclasses.replace(draft, force=_force_of(self.settings.deployments_topic))
        draft = dataclasses.replace(draft, created_by=owner, history=tuple(dataclasses.replace(t, actor=owner) for t in draft.history))
        record = lifecycle.create(draft, self.clock())
        self.store.publish(record)
        self.store.audit(record.created_by, "create", record.deployment_id, {"name": record.name or "", "force": record.force or ""})
        return record

    def _registration(self, key_id: str):
        """The signer's registration as the readers judge it: the registrar's key at the
        registration's audit position (a rank granted before its registrar was revoked holds);
        a revoked signer has none."""
        ring = load_keyring(self.settings)
        own = ring.get(key_id)
        if own is None or own.revoked_at_ms is not None:
            return None
        index = self.store.watchlist.audit_index()
        try:
            return ring.registration(key_id, judge=index.registration_valid)
        finally:
            index.close()

    def authorise(self, deployment_id: str, officer: str | None, rank: str | None, false_alerts_justification: str | None = None,
                  signer: Signer | None = None) -> Authorised:
        """``signer``: the authorising officer's key (default: the store's); its owner is the
        recorded officer, whatever ``officer`` says, and must not be the creator. The rank is the
        one registered for that key (`lfr keys register`); ``rank``, when given, must agree."""
        signer = signer or self.store.watchlist.signer
        officer = signer.owner
        claimed_rank = rank
        registered = self._registration(signer.key_id)
        rank = registered.rank if registered is not None else ""
        current = self.get(deployment_id)
        if registered is not None and owning_force(registered.force) != owning_force(current.force):
            raise KeyForceRefused(f"refused: {officer}'s key {signer.key_id} belongs to force {owning_force(registered.force)}; "
                                  f"deployment {deployment_id} to force {owning_force(current.force)}")
        now = self.clock()
        if current.criteria is None:
            raise Refused(tuple(missing_for_authorisation(current)))
        entries = self.store.watchlist.read_all()
        chosen, excluded = snapshot.select(entries, deployment_id, current.criteria, now)
        version = (current.snapshot.version + 1) if current.snapshot else 1
        frozen = snapshot.freeze(chosen, version, now)
        record = lifecycle.authorise(
            current, officer=officer, rank=rank, snapshot=frozen, calibration=self.calibration, rules=rules_from(self.settings),
            now_ms=now, false_alerts_justification=false_alerts_justification, claimed_rank=claimed_rank,
        )
        record = countersign(record, signer)
        self.store.publish(record)
        auth = record.authorisation
        self.store.audit(
            officer,
            "authorise",
            deployment_id,
            {
                "rank": rank,
                "state": record.state,
                "snapshot_version": frozen.version,
                "snapshot_hash": frozen.hash,
                "snapshot_size": len(frozen.subjects),
                "manifest": snapshot.manifest_text(frozen),
                "match_threshold": record.match_threshold,
                "threshold_floor": auth.threshold_floor,
                "threshold_override_reason": auth.threshold_override_reason,
                "footfall_per_hour": record.footfall_per_hour,
                "expected_false_alerts_per_hour": auth.expected_false_alerts_per_hour,
                "false_alerts_justification": auth.false_alerts_justification,
                "calibration": auth.calibration,
            },
        )
        return Authorised(record, auth.expected_false_alerts_per_hour, excluded)

    def start(self, deployment_id: str, actor: str) -> Deployment:
        return self._transition(lifecycle.start(self.get(deployment_id), self._owner(), self.clock()), actor, "start")

    def end(self, deployment_id: str, actor: str) -> Deployment:
        return self._transition(lifecycle.end(self.get(deployment_id), self._owner(), self.clock()), actor, "end")

    def cancel(self, deployment_id: str, actor: str, reason: str) -> Deployment:
        return self._transition(lifecycle.cancel(self.get(deployment_id), self._owner(), self.clock(), reason), actor, "cancel", reason)

    def _owner(self) -> str:
        """Who acts: the owner of the signing key (a name given on the command line is only a claim)."""
        return self.store.watchlist.signer.owner

    def _transition(self, record: Deployment, actor: str, action: str, reason: str | None = None) -> Deployment:
        self.store.publish(record)
        self.store.audit(actor, action, record.deployment_id, {"state": record.state, "reason": reason} if reason else {"state": record.state})
        return record

