"""The deployments every service enforces: lfr.deployments.v1 read into memory, at start and live.

Like the watchlist materialiser, every process reads the whole compacted topic itself
(assigned partitions, no group, no commits): it reads to the high watermarks, reports
``ready``, then applies each change as it arrives (within a poll of 0.1 s). A record that does
not decode, fails the schema, or breaks the state machine (lifecycle.check_successor) is
refused: the last valid state of that deployment is kept, the refusal is counted and logged,
and, when it arrives while the service runs, the record goes to the dead-letter topic with the
reason (not again at each restart, so replicas and restarts do not multiply dead letters).
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, Producer
from prometheus_client import Counter, Gauge

from services.common.envelope import decode
from services.common.errors import LfrError, MessageError
from services.common.kafka_config import client_config, producer_config
from services.common.settings import KafkaSettings
from services.governance.privacy.payload import PAYLOAD_HEADER, dead_letter_value

from services.common.signing import Keyring, SignatureRefused
from services.common.topic_reader import TopicMissing, assign_from_beginning, caught_up

from .lifecycle import check_successor
from .record import SCHEMA, Deployment
from .verified import VerifiedDeployments

logger = logging.getLogger(__name__)

DEPLOYMENT_RECORDS = Counter("lfr_deployment_records_total", "Deployment records read, by outcome", ["outcome"])
DEPLOYMENTS_ACTIVE = Gauge("lfr_deployments_active", "Deployments in state active in this process's view")
DEPLOYMENT_ACTIVE = Gauge("lfr_deployment_active", "1 while the deployment is in state active, else 0 (deployment ids are bounded operational ids)", ["deployment"])
DEPLOYMENTS_READY = Gauge("lfr_deployments_ready", "1 once the deployment view is loaded from its topic")


class InvalidDeployment(MessageError):
    reason = "schema_invalid"


class DeploymentView:
    """Thread-safe read side: ``get(deployment_id)`` returns the latest valid record or None."""

    def __init__(self, settings: KafkaSettings, topic: str, *, keyring: Keyring, dlq_topic: str = "lfr.dlq.v1",
                 service: str = "deployments", on_refused=None, audit_index=None) -> None:
        self.topic = topic
        # The one verified reader of the topic (services/governance/deployments/verified.py).
        self.keyring = keyring
        self._on_refused = on_refused
        # ``audit_index`` (services/governance/audit/index.py; the view closes it at stop): a change applies only
        # when its audit record exists and describes it, and its key was valid at that record's place.
        self._audit_index = audit_index
        self._verified = VerifiedDeployments(keyring, topic, self._refused, audit_index=audit_index)
        self.dlq_topic = dlq_topic
        self.service = service
        self._settings = settings
        self._deployments: dict[str, Deployment] = {}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="deployment-view", daemon=True)
        self._producer: Producer | None = None
        self._consumer = Consumer(
            {
                **client_config(settings),
                "group.id": "lfr-deployment-reader",  # required by librdkafka; never joins or commits
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )

    # -- read side ---------------------------------------------------------------------------

    def get(self, deployment_id: str) -> Deployment | None:
        return self._deployments.get(deployment_id)

    def all(self) -> dict[str, Deployment]:
        return dict(self._deployments)

    @property
    def ready(self) -> bool:
        """True once the topic has been read to its end (services report not ready before)."""
        return self._ready.is_set() and self._failed is None and self._thread.is_alive()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> DeploymentView:
        self._thread.start()
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self._failed is not None:
                raise RuntimeError("deployment view failed") from self._failed
            if time.monotonic() > deadline:
                raise TimeoutError(f"deployments not loaded from {self.topic} within {timeout_s} s")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self._audit_index is not None and not self._thread.is_alive():
            self._audit_index.close()
            self._audit_index = None
        if self._producer is not None:
            self._producer.flush(10)

    # -- the reader thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            targets = self._assign_all()
            while not self._stop.is_set() and not self._caught_up(targets):
                for record in self._consumer.consume(500, 0.1):
                    if record.error() is None:
                        self._apply(record, live=False)
            self._ready.set()
            DEPLOYMENTS_READY.set(1)
            logger.info("deployments loaded", extra={"deployments": len(self._deployments), "service": self.service})
            while not self._stop.is_set():
                for record in self._consumer.consume(500, 0.1):
                    if record.error() is None:
                        self._apply(record, live=True)
        except BaseException as exc:  # noqa: BLE001 - reported through wait_ready / ready / the log
            self._failed = exc
            DEPLOYMENTS_READY.set(0)
            logger.exception("deployment view stopped")
        finally:
            self._consumer.close()

    def _assign_all(self) -> dict[int, int]:
        try:
            return assign_from_beginning(self._consumer, self.topic)
        except TopicMissing as exc:
            raise LfrError(f"deployments {exc}") from None

    def _caught_up(self, targets: dict[int, int]) -> bool:
        return caught_up(self._consumer, self.topic, targets)

    def _refused(self, record, refusal: SignatureRefused, live: bool) -> None:
        DEPLOYMENT_RECORDS.labels("refused").inc()
        logger.error("deployment record refused: signature", extra={"offset": record.offset(), "reason": refusal.reason, "service": self.service})
        if self._on_refused is not None:
            self._on_refused(record, refusal, live)

    def _apply(self, record, live: bool) -> None:
        key = (record.key() or b"").decode("utf-8", "replace")
        try:
            changed = self._verified.change(record, live, self._deployments.get(key))
        except MessageError as exc:
            DEPLOYMENT_RECORDS.labels("refused").inc()
            logger.error(
                "deployment record refused; keeping the last valid state",
                extra={"deployment": key, "offset": record.offset(), "reason": exc.reason, "error": str(exc)[:300], "service": self.service},
            )
            if live:
                self._dead_letter(record, exc)
            return
        if changed is None:
            return
        _key, deployment = changed
        if deployment is None:
            self._deployments.pop(key, None)
            DEPLOYMENT_RECORDS.labels("removed").inc()
            self._count_active()
            return
        self._deployments[deployment.deployment_id] = deployment
        DEPLOYMENT_RECORDS.labels("applied").inc()
        self._count_active()
        if live:
            logger.info("deployment changed", extra={"deployment": deployment.deployment_id, "state": deployment.state, "service": self.service})

    def _count_active(self) -> None:
        DEPLOYMENTS_ACTIVE.set(sum(1 for d in self._deployments.values() if d.state == "active"))
        for deployment in self._deployments.values():  # per deployment: OpenLFRDeploymentWithoutFrames
            DEPLOYMENT_ACTIVE.labels(deployment.deployment_id).set(1 if deployment.state == "active" else 0)

    def _dead_letter(self, record, exc: MessageError) -> None:
        """Deployment records hold no biometric data, so the original bytes go with the reason."""
        if self._producer is None:
            self._producer = Producer(producer_config(self._settings))
        headers = {
            "lfr_dlq_topic": record.topic(),
            "lfr_dlq_partition": str(record.partition()),
            "lfr_dlq_offset": str(record.offset()),
            "lfr_dlq_service": self.service,
            "lfr_dlq_reason": exc.reason,
            "lfr_dlq_error_class": type(exc).__name__,
            "lfr_dlq_error": str(exc).replace("\n", " ")[:500],
            "lfr_dlq_at_ms": str(int(time.time() * 1000)),
        }
        value, headers[PAYLOAD_HEADER] = dead_letter_value(record.topic(), record.value())  # the shared rule: "original" here
        self._producer.produce(self.dlq_topic, key=record.key(), value=value, headers=[(k, v.encode()) for k, v in headers.items()])
        self._producer.poll(0)


def parse(value: bytes, key: str, previous: Deployment | None) -> Deployment:
    """Decode and check one record against the schema, the key and the state machine."""
    envelope = decode(value)  # raises DecodeError / UnknownSchemaError / SchemaValidationError
    if envelope.schema != SCHEMA:
        raise InvalidDeployment(f"{envelope.schema} on the deployments topic")
    deployment = Deployment.from_data(envelope.data)
    if deployment.deployment_id != key:
        raise InvalidDeployment(f"record for {deployment.deployment_id} under key {key}")
    problem = check_successor(previous, deployment)
    if problem is not None:
        raise InvalidDeployment(f"deployment {key}: {problem}")
    return deployment
