"""What a service does with a record refused for its signature: count, audit, dead-letter without payload.

The dead letter keeps the original key and headers and adds the lfr_dlq_* headers with
``lfr_dlq_payload=withheld``: the value (a watchlist entry holds embeddings) never leaves the
topic it was written to. Refusals met while rebuilding state at start are counted and logged
only (every restart and every replica would otherwise report them again); refusals of records
arriving while the service runs are audited and dead-lettered once.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter as Tally

from confluent_kafka import Producer
from prometheus_client import Counter

from services.common.signing import SignatureRefused

from .writer import AuditWriter

logger = logging.getLogger(__name__)
SIGNATURE_REFUSALS = Counter("lfr_signature_refusals_total", "Records refused because their signature did not verify",
                             ["service", "topic", "reason"])
REPORT_FAILURES = Counter("lfr_signature_refusal_report_failures_total", "Refusals that could not be audited or dead-lettered",
                          ["service"])
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class RefusalReporter:
    """``audit`` may be None for a service that holds no signing key: it counts and dead-letters;
    a service with a key (the matcher) audits the same refusal, as every replica sees it."""

    def __init__(self, audit: AuditWriter | None, producer: Producer, dlq_topic: str, service: str) -> None:
        self.audit = audit
        self.producer = producer
        self.dlq_topic = dlq_topic
        self.service = service

    def __call__(self, record, refusal: SignatureRefused, live: bool) -> None:
        topic = record.topic()
        SIGNATURE_REFUSALS.labels(self.service, topic, refusal.reason).inc()
        if not live:
            return
        key = (record.key() or b"").decode("utf-8", "replace")
        details = {"topic": topic, "partition": record.partition(), "offset": record.offset(), "reason": refusal.reason,
                   "key_id": refusal.key_id or None, "tombstone": record.value() is None}
        try:
            if self.audit is not None:
                self.audit.write("signature.refused", key if ID_PATTERN.match(key) else None, details)
            self._dead_letter(record, refusal)
        except Exception:  # noqa: BLE001 - reporting must never stop the watchlist from loading
            REPORT_FAILURES.labels(self.service).inc()
            logger.exception("could not report a refused record", extra={"topic": topic, "offset": record.offset()})

    def _dead_letter(self, record, refusal: SignatureRefused) -> None:
        added = {
            "lfr_dlq_topic": record.topic(),
            "lfr_dlq_partition": str(record.partition()),
            "lfr_dlq_offset": str(record.offset()),
            "lfr_dlq_service": self.service,
            "lfr_dlq_reason": "force_mismatch" if refusal.reason == "force_mismatch" else "signature_refused",
            "lfr_dlq_error_class": type(refusal).__name__,
            "lfr_dlq_error": refusal.reason,
            "lfr_dlq_at_ms": str(int(time.time() * 1000)),
            "lfr_dlq_payload": "withheld",
        }
        headers = [*(record.headers() or []), *((k, v.encode()) for k, v in added.items())]
        errors: list = []
        self.producer.produce(self.dlq_topic, key=record.key(), value=None, headers=headers,
                              on_delivery=lambda err, _msg: err and errors.append(err))
        if self.producer.flush(30) or errors:
            raise RuntimeError(f"could not dead-letter to {self.dlq_topic}")


class RefusalTally:
    """``on_refused`` for one-shot readers (CLI, snapshot, report): counted (lfr_signature_refusals_total)
    and logged, never re-reported: the matcher audits and dead-letters each refusal once, live."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.reasons: Tally = Tally()

    def __call__(self, record, refusal: SignatureRefused, live: bool) -> None:
        SIGNATURE_REFUSALS.labels(self.service, record.topic(), refusal.reason).inc()
        self.reasons[refusal.reason] += 1
        logger.warning("record refused: %s (topic %s, offset %s)", refusal.reason, record.topic(), record.offset(), extra={"topic": record.topic(), "offset": record.offset(),
                                                           "reason": refusal.reason, "key_id": refusal.key_id})

    def summary(self) -> str:
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons.items()))


def signature_checks(settings, service: str):
    """(keyring, refusal reporter) for a service that reads signed records (SigningSettings + a DLQ topic)."""
    from services.common.kafka_config import producer_config  # noqa: PLC0415

    from .identity import load_keyring, load_signer  # noqa: PLC0415

    keyring = load_keyring(settings)
    producer = Producer(producer_config(settings))
    writer = AuditWriter(settings, settings.audit_topic, load_signer(settings), service, partition=settings.audit_partition, producer=producer)
    return keyring, RefusalReporter(writer, producer, settings.dlq_topic, service)


def deployment_signature_checks(settings, service: str):
    """(keyring, refusal reporter) for a service's deployment view: every service trusts the
    keyring; only one that holds a signing key (the matcher) audits what it refuses."""
    from services.common.kafka_config import producer_config  # noqa: PLC0415

    from .identity import load_keyring, load_signer  # noqa: PLC0415

    keyring = load_keyring(settings)
    producer = Producer(producer_config(settings))
    writer = None
    if getattr(settings, "signing_key_file", None) is not None:
        writer = AuditWriter(settings, settings.audit_topic, load_signer(settings), service, partition=settings.audit_partition,
                             producer=producer)
    return keyring, RefusalReporter(writer, producer, getattr(settings, "dlq_topic", "lfr.dlq.v1"), service)
