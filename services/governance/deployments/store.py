"""Reads and writes lfr.deployments.v1; audits through the watchlist's one audit writer."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from services.governance.audit.identity import load_keyring
from services.governance.audit.refusals import RefusalTally
from services.governance.audit.writer import change_digest
from services.common.envelope import encode
from services.common.errors import MessageError
from services.common.kafka_config import client_config, producer_config
from services.common.topic_reader import read_to_end
from services.common.settings import DeploymentSettings
from services.governance.forces import place
from services.governance.forces.keys import KeyForceRefused, require_key_force
from services.governance.watchlist.store import WatchlistStore

from .record import SCHEMA, Deployment
from .verified import VerifiedDeployments

AUDIT_PREFIX = "deployment."


class DeploymentStore:
    def __init__(self, settings: DeploymentSettings, watchlist: WatchlistStore | None = None) -> None:
        self.settings = settings
        self.watchlist = watchlist or WatchlistStore(settings)
        self._producer = Producer(producer_config(settings))
        self.refusals = RefusalTally("deployment-cli")

    def read_all(self, timeout_s: float = 30.0) -> dict[str, Deployment]:
        """The latest verified record of every deployment (services/governance/deployments/verified.py);
        refused records are counted in ``refusals`` and skipped, as a service's view skips them."""
        self.refusals = RefusalTally("deployment-cli")  # what this read refused
        audit = self.watchlist.audit_index(timeout_s)  # the audit record each change names must exist and match
        reader = VerifiedDeployments(audit.keyring, self.settings.deployments_topic, self.refusals, audit_index=audit)
        found: dict[str, Deployment] = {}
        try:
            for record in read_to_end(client_config(self.settings), self.settings.deployments_topic, group_id="lfr-deployment-cli",
                                      timeout_s=timeout_s):
                key = (record.key() or b"").decode("utf-8", "replace")
                try:
                    changed = reader.change(record, False, found.get(key))
                except MessageError:
                    self.refusals.reasons["invalid"] += 1
                    continue
                if changed is not None and changed[1] is None:
                    found.pop(key, None)
                elif changed is not None:
                    found[key] = changed[1]
        finally:
            audit.close()
        return found

    def publish(self, deployment: Deployment) -> None:
        """Audit first, then the record signed with the store's key and carrying the audit hash
        (services/governance/audit/writer.py): no crash leaves a deployment change unaudited."""
        topic, key = self.settings.deployments_topic, deployment.deployment_id.encode()
        # Only the topic's force, signed by none of another force's keys (services/governance/forces): exit 3.
        if place.mismatch(topic, {"force": deployment.force} if deployment.force else {}) is not None:
            raise KeyForceRefused(f"refused: deployment {deployment.deployment_id} names force {deployment.force!r}, "
                                  f"not force {place.force_of_topic(topic)!r} of {topic}")
        require_key_force(load_keyring(self.settings), self.watchlist.signer.key_id, deployment.force or "",
                          f"deployment {deployment.deployment_id}")  # the place check above holds its force to the topic's
        value = encode(SCHEMA, deployment.to_data())
        _record, audit_hash = self.watchlist.audit_writer.write(
            AUDIT_PREFIX + "record", deployment.deployment_id,
            {"state": deployment.state, "revision": deployment.revision, "change_sha256": change_digest(topic, key, value)},
            deployment_id=deployment.deployment_id)
        errors: list = []
        self._producer.produce(
            topic, key=key, value=value, headers=self.watchlist.signer.record_headers(topic, key, value, audit_hash=audit_hash),
            on_delivery=lambda err, _msg: err and errors.append(err),
        )
        if self._producer.flush(30) or errors:
            raise RuntimeError(f"could not write to {self.settings.deployments_topic}: {errors[0].str() if errors else 'timed out'}")

    def audit(self, actor: str, action: str, deployment_id: str, details: dict[str, Any] | None = None) -> None:
        self.watchlist.audit(actor, AUDIT_PREFIX + action, deployment_id, details)
