"""`lfr run deployment-events`: verified deployment revisions onto the public lfr.deployment_events.v1.

Crash story. The signed record on lfr.deployments.v1 is the truth; the public event is derived
from it, never written beside it by `lfr deployment`, so no crash between the two writes can
lose an event. The projector's consumer group (LFR_GROUP_ID) holds, per partition, the first
offset not yet projected, committed only after the broker acknowledged every event of the
batch (produce, flush, then commit). Verification needs each deployment's previous verified
revision (services/governance/deployments/verified.py), so at every start the projector reads the
compacted topic from its beginning through the one verified reader, rebuilding state, and
publishes only from the committed offset on. A crash after the flush and before the commit
publishes that batch again with the same ``ce_id`` ({deployment_id}.{revision}, built from the
record alone), which consumers de-duplicate on (docs/downstream.md). A record refused for its
signature, audit link or countersignature, or one that breaks the state machine, publishes
nothing (policy ``refused-publish-nothing``, counted in lfr_deployment_events_total; the
services' own deployment views audit and dead-letter such records). One replica: a second
would only publish duplicates with the same ids.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import Counter

from services.governance.audit.refusals import RefusalTally
from services.common import health
from services.common.errors import MessageError, SchemaValidationError, SettingsError
from services.common.kafka_config import client_config, producer_config
from services.common.service import EXIT_BAD_SETTINGS, start_service
from services.common.settings import DeploymentEventsSettings
from services.common.signing import Keyring
from services.common.topic_reader import TopicMissing, assign_from_beginning, caught_up

from .public import projected
from .verified import VerifiedDeployments

logger = logging.getLogger(__name__)
SERVICE = "deployment-events"
EVENTS = Counter("lfr_deployment_events_total", "Deployment records met by the projector past its committed offset, by outcome "
                 "(published; refused: signature, audit link or countersignature; invalid: schema or state machine; "
                 "removed: a tombstone, nothing to publish; unprojectable: the public event failed its schema)", ["outcome"])


class ProjectionFailed(RuntimeError):
    """Events were not acknowledged: nothing was committed, the batch is projected again after a restart."""


class DeploymentEventsProjector:
    """``start()`` once, then ``step()`` until stopped; ``close()`` at the end."""

    def __init__(self, settings: DeploymentEventsSettings, keyring: Keyring, audit_index=None) -> None:
        self.settings = settings
        self.topic = settings.deployments_topic
        self.refusals = RefusalTally(SERVICE)
        self._verified = VerifiedDeployments(keyring, self.topic, self.refusals, audit_index=audit_index)
        self._audit_index = audit_index
        self._deployments: dict = {}
        self._projected_from: dict[int, int] = {}  # partition -> first offset not yet projected
        self._ends: dict[int, int] = {}
        self.ready = False
        self._consumer = Consumer({**client_config(settings), "group.id": settings.group_id, "enable.auto.commit": False,
                                   "enable.partition.eof": False})
        self._producer = Producer(producer_config(settings))

    def start(self) -> None:
        """Assign every partition from its beginning; remember where projecting resumes."""
        self._ends = assign_from_beginning(self._consumer, self.topic)
        committed = self._consumer.committed([TopicPartition(self.topic, p) for p in self._ends], timeout=30)
        self._projected_from = {tp.partition: max(tp.offset, 0) for tp in committed}  # none committed: from the start
        logger.info("deployment events projecting", extra={"topic": self.topic, "resume_at": str(self._projected_from),
                                                           "events_topic": self.settings.deployment_events_topic})

    def step(self) -> int:
        """One poll: verify, publish what is past the committed offset, flush, commit. Returns events published."""
        records = [r for r in self._consumer.consume(500, self.settings.poll_timeout_ms / 1000) if r.error() is None]
        outgoing, last = [], {}
        for record in records:
            last[record.partition()] = record.offset()
            new = record.offset() >= self._projected_from.get(record.partition(), 0)
            event = self._apply(record, new)
            if event is not None and new:
                outgoing.append(event)
        if outgoing:
            self._publish(outgoing)
        self._commit(last)
        if not self.ready and caught_up(self._consumer, self.topic, self._ends):
            self.ready = True
            logger.info("deployment events ready", extra={"deployments": len(self._deployments)})
        return len(outgoing)

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(self.settings.publish_timeout_s)
        if self._audit_index is not None:
            self._audit_index.close()

    # -- one record --------------------------------------------------------------------------

    def _apply(self, record, new: bool):
        key = (record.key() or b"").decode("utf-8", "replace")
        refused_before = sum(self.refusals.reasons.values())
        try:
            changed = self._verified.change(record, new, self._deployments.get(key))
        except MessageError as exc:
            if new:
                EVENTS.labels("invalid").inc()
                logger.warning("deployment record refused; nothing published", extra={"offset": record.offset(), "reason": exc.reason})
            return None
        if changed is None:
            if new and sum(self.refusals.reasons.values()) > refused_before:
                EVENTS.labels("refused").inc()
            return None
        _key, deployment = changed
        if deployment is None:
            self._deployments.pop(key, None)
            if new:
                EVENTS.labels("removed").inc()
            return None
        self._deployments[key] = deployment
        if not new:
            return None
        try:
            return projected(deployment, self.settings.deployment_events_topic, self.settings.ce_source_prefix)
        except SchemaValidationError as exc:
            EVENTS.labels("unprojectable").inc()
            logger.error("public deployment event failed its schema; nothing published",
                         extra={"deployment": key, "revision": deployment.revision, "error": str(exc)[:300]})
            return None

    # -- output, then offsets ----------------------------------------------------------------

    def _publish(self, outgoing: list) -> None:
        errors: list = []
        for topic, key, value, headers in outgoing:
            self._producer.produce(topic, key=key, value=value, headers=headers,
                                   on_delivery=lambda err, _msg: err and errors.append(err))
        if self._producer.flush(self.settings.publish_timeout_s) or errors:
            raise ProjectionFailed(f"{self.settings.deployment_events_topic}: "
                                   f"{errors[0].str() if errors else 'not acknowledged in time'}")
        EVENTS.labels("published").inc(len(outgoing))

    def _commit(self, last: dict[int, int]) -> None:
        ahead = [TopicPartition(self.topic, p, offset + 1) for p, offset in last.items() if offset + 1 > self._projected_from.get(p, 0)]
        if not ahead:
            return
        self._consumer.commit(offsets=ahead, asynchronous=False)
        for tp in ahead:
            self._projected_from[tp.partition] = tp.offset


def main() -> int:
    settings = start_service(SERVICE, DeploymentEventsSettings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    from services.governance.audit.identity import load_keyring  # noqa: PLC0415
    from services.governance.audit.index import AuditIndex  # noqa: PLC0415

    try:
        keyring = load_keyring(settings)
    except SettingsError as exc:
        print(f"lfr {SERVICE}: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    projector = DeploymentEventsProjector(settings, keyring, AuditIndex(settings, settings.audit_topic, keyring))
    # /readyz once the deployments topic is read to its end; /livez while the loop keeps polling.
    health.DEFAULT.add_check("deployments_read", lambda: (projector.ready, "read to the end" if projector.ready else "reading"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        projector.start()
        while not stop.is_set():
            health.DEFAULT.heartbeat(SERVICE, settings.liveness_timeout_s)
            projector.step()
    except (ProjectionFailed, TopicMissing) as exc:
        logger.error("deployment events stopped; nothing past the last acknowledged batch was committed", extra={"error": str(exc)[:300]})
        return 1
    finally:
        projector.close()
    return 0
