"""Consumer lag of the dispatcher's group, measured from outside faust: committed offsets
against high watermarks, the way KEDA and the lag alert see it.

The dispatcher's faust timer calls ``LagProbe.report`` in a worker thread (confluent-kafka
calls block), so the event loop never waits on the broker. Exported on the shared gauge
``lfr_consumer_lag_messages{service="dispatch", topic, partition}`` so one alert covers every
service.
"""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, TopicPartition

from services.common import metrics
from services.common.kafka_config import client_config
from services.common.settings import KafkaSettings

logger = logging.getLogger(__name__)


class LagProbe:
    """Reads the group's committed offsets without joining the group (never subscribes)."""

    def __init__(self, settings: KafkaSettings, group_id: str, service: str, topics: list[str]) -> None:
        self.service = service
        self.topics = topics
        self._consumer = Consumer({**client_config(settings), "group.id": group_id, "enable.auto.commit": False})

    def lags(self, timeout_s: float = 5.0) -> dict[tuple[str, int], int]:
        partitions = []
        metadata = self._consumer.list_topics(timeout=timeout_s).topics
        for topic in self.topics:
            if topic in metadata and metadata[topic].error is None:
                partitions += [TopicPartition(topic, p) for p in metadata[topic].partitions]
        result = {}
        for tp in self._consumer.committed(partitions, timeout=timeout_s):
            low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout_s)
            position = tp.offset if tp.offset >= 0 else low  # nothing committed: all of it is lag
            result[(tp.topic, tp.partition)] = max(0, high - position)
        return result

    def report(self) -> None:
        try:
            lags = self.lags()
        except Exception as exc:  # noqa: BLE001 - the broker is away; the next tick tries again
            logger.warning("consumer lag not measured", extra={"service": self.service, "error_class": type(exc).__name__})
            return
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(self.service, topic, str(partition)).set(lag)

    def close(self) -> None:
        self._consumer.close()
