"""Reports a watchlist record the loader could not apply: a dead letter without its payload
(the value may hold a biometric template), a metric, and an audit record.

The loader then carries on with later records; a bad record must never stop removals.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Producer
from prometheus_client import Counter

from services.governance.audit.writer import AuditWriter
from services.common.delivery import PAYLOAD_WITHHELD, truncated_key
from services.common.errors import MessageError
from services.common.kafka_config import producer_config
from services.common.schemas import default_registry
from services.common.settings import KafkaSettings

logger = logging.getLogger(__name__)

WATCHLIST_REJECTS = Counter("lfr_watchlist_records_rejected_total", "Watchlist records skipped by the loader", ["reason"])
_FLUSH_TIMEOUT_S = 10.0


class RejectReporter:
    """``audit`` is the service's chained audit writer (services/governance/audit/writer.py): the one writer
    of every audit record, so a rejected record is in the same hash chain as every change."""

    def __init__(self, settings: KafkaSettings, dlq_topic: str, service: str, audit: AuditWriter | None = None) -> None:
        self.dlq_topic = dlq_topic
        self.audit = audit
        self.service = service
        self._producer = Producer(producer_config(settings))

    def report(self, topic: str, partition: int, offset: int, key: bytes | None, exc: BaseException) -> None:
        """Best effort: a broker that is down must not stop the loader from applying later records."""
        reason = exc.reason if isinstance(exc, MessageError) else "stage_error"
        WATCHLIST_REJECTS.labels(reason).inc()
        now = int(time.time() * 1000)
        headers = {
            "lfr_dlq_topic": topic,
            "lfr_dlq_partition": str(partition),
            "lfr_dlq_offset": str(offset),
            "lfr_dlq_service": self.service,
            "lfr_dlq_reason": reason,
            "lfr_dlq_error_class": type(exc).__name__,
            "lfr_dlq_error": (str(exc).replace("\n", " ")[:500] or type(exc).__name__),
            "lfr_dlq_at_ms": str(now),
            "lfr_dlq_payload": PAYLOAD_WITHHELD,
        }
        details = {"topic": topic, "partition": partition, "offset": offset, "reason": reason, "error_class": type(exc).__name__}
        try:
            default_registry().validate("lfr.dlq.v1", headers)
            self._producer.produce(
                self.dlq_topic, key=truncated_key(key), value=None, headers=[(k, v.encode()) for k, v in headers.items()]
            )
            if self._producer.flush(_FLUSH_TIMEOUT_S):
                logger.error("watchlist reject report not acknowledged in time", extra={"offset": offset})
            if self.audit is not None:
                self.audit.write("watchlist.record_rejected", None, details, at_ms=now)
        except Exception as exc2:  # noqa: BLE001 - reporting must never stop the loader
            logger.error("could not report a rejected watchlist record", extra={"offset": offset, "error": str(exc2)[:200]})
