"""Reads and writes lfr.deployments.v1; audits through the watchlist's one audit writer."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from services.common.envelope import encode
from services.common.errors import MessageError
from services.common.kafka_config import client_config, producer_config
from services.common.settings import DeploymentSettings
from services.watchlist.store import WatchlistStore

from .record import SCHEMA, Deployment

AUDIT_PREFIX = "deployment."


class DeploymentStore:
    def __init__(self, settings: DeploymentSettings, watchlist: WatchlistStore | None = None) -> None:
        self.settings = settings
        self.watchlist = watchlist or WatchlistStore(settings)
        self._producer = Producer(producer_config(settings))

    def read_all(self, timeout_s: float = 30.0) -> dict[str, Deployment]:
        """The latest record of every deployment (records that do not parse are skipped)."""
        consumer = Consumer({**client_config(self.settings), "group.id": "lfr-deployment-cli", "enable.auto.commit": False})
        try:
            topic = self.settings.deployments_topic
            partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
            targets = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in partitions}
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            found: dict[str, Deployment] = {}
            deadline = time.monotonic() + timeout_s
            while any(h > 0 for h in targets.values()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
                for record in consumer.consume(500, 0.2):
                    if record.error() is not None:
                        continue
                    if record.offset() + 1 >= targets.get(record.partition(), 0):
                        targets[record.partition()] = 0
                    key = (record.key() or b"").decode()
                    if record.value() is None:
                        found.pop(key, None)
                        continue
                    try:
                        from .view import parse  # noqa: PLC0415 - the same checks as the services

                        found[key] = parse(record.value(), key, found.get(key))
                    except (MessageError, KeyError, TypeError):
                        continue
            return found
        finally:
            consumer.close()

    def publish(self, deployment: Deployment) -> None:
        value = encode(SCHEMA, deployment.to_data())
        errors: list = []
        self._producer.produce(
            self.settings.deployments_topic, key=deployment.deployment_id.encode(), value=value,
            on_delivery=lambda err, _msg: err and errors.append(err),
        )
        if self._producer.flush(30) or errors:
            raise RuntimeError(f"could not write to {self.settings.deployments_topic}: {errors[0].str() if errors else 'timed out'}")

    def audit(self, actor: str, action: str, deployment_id: str, details: dict[str, Any] | None = None) -> None:
        self.watchlist.audit(actor, AUDIT_PREFIX + action, deployment_id, details)
