"""Seals each alert's probe chip to the review service's current transit key (services/governance/evidence).

Drop policy "no-transit-key": while the review service has published no valid key (it is not
running yet, or has been down longer than a key's validity) the chip is not sent at all and
``lfr_evidence_unsealed_total`` counts it; the alert itself is still raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Counter

from services.common.envelope import encode
from services.governance.evidence.keyring import PublicKeyring
from services.governance.evidence.sealing import associated_data, seal

from .policy import Alert

EVIDENCE_SCHEMA = "lfr.evidence.v1"
SEALED = Counter("lfr_evidence_sealed_total", "Probe chips sealed and sent to the evidence topic")
UNSEALED = Counter("lfr_evidence_unsealed_total", "Probe chips not sent because no transit key was valid (drop policy no-transit-key)")


class EvidenceSealer:
    """Holds the keyring (a reader thread, started and stopped by the process) and seals chips."""

    def __init__(self, client_config: dict, keys_topic: str, clock: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.keyring = PublicKeyring(client_config, keys_topic, clock)
        self.clock = clock

    def start(self) -> None:
        self.keyring.start()

    def stop(self) -> None:
        self.keyring.stop()

    def seal(self, alert: Alert) -> bytes | None:
        key = self.keyring.current()
        if key is None or not alert.chip:
            UNSEALED.inc()
            return None
        blob = seal(key.public_key, bytes(alert.chip["data"]), associated_data(alert.alert_id, alert.revision))
        SEALED.inc()
        data = {
            "alert_id": alert.alert_id, "revision": alert.revision, "deployment_id": alert.deployment_id,
            "key_id": key.key_id, "media_type": alert.chip["media_type"], "sealed": blob, "sealed_at_ms": self.clock(),
        }
        if "force" in alert.data:  # the alert's force (services/governance/forces/place.py)
            data["force"] = alert.data["force"]
        return encode(EVIDENCE_SCHEMA, data)
