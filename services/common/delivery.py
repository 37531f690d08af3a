"""What a producer may send and what to do when the broker refuses: record size bounds,
truncated dead letters, and the idempotence errors that need a fresh producer.

Shared by the runner and ingest so that both recover from a broker restart the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError
from prometheus_client import Counter

logger = logging.getLogger(__name__)

# The producers' message.max.bytes (kafka_config.producer_config); one constant so the size
# checks below and the client agree.
MAX_RECORD_BYTES = 8 * 1024 * 1024
# Room for the record batch framing and per-record varints around key, value and headers.
RECORD_OVERHEAD_BYTES = 1024
# A key longer than this is dropped from a truncated dead letter (keys are ids, never this long).
MAX_TRUNCATED_KEY_BYTES = 1024

# DLQ header lfr_dlq_payload (schemas/lfr.dlq.v1.json): what the dead letter's value holds.
PAYLOAD_ORIGINAL = "original"
PAYLOAD_WITHHELD = "withheld"
PAYLOAD_TRUNCATED = "truncated"

# librdkafka reports these when the broker no longer knows the idempotent producer's id or
# sequence (a broker restart with memory storage, a deleted topic): the producer is unusable.
_FATAL_IDEMPOTENCE = frozenset(
    code
    for code in (
        getattr(KafkaError, "UNKNOWN_PRODUCER_ID", None),
        getattr(KafkaError, "OUT_OF_ORDER_SEQUENCE_NUMBER", None),
        getattr(KafkaError, "_FATAL", None),
        getattr(KafkaError, "INVALID_PRODUCER_EPOCH", None),
        getattr(KafkaError, "_FENCED", None),
        # Tansu answers a producer whose epoch librdkafka bumped after timed-out deliveries
        # (KIP-360) with PRODUCER_FENCED on every later batch: without a new producer the
        # runner rewound the same batch forever (tests/test_runner.py, a topic created late).
        getattr(KafkaError, "PRODUCER_FENCED", None),
    )
    if code is not None
)

PRODUCER_RECREATIONS = Counter(
    "lfr_producer_recreations_total",
    "Producers replaced after a fatal idempotence error (UnknownProducerId, OutOfOrderSequence)",
    ["service"],
)
DEAD_LETTERS_TRUNCATED = Counter(
    "lfr_dead_letters_truncated_total",
    "Dead letters sent as headers only because the original did not fit in one record",
    ["service", "topic"],
)


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None) -> int:
    """Bytes a record takes on the wire, near enough to compare with message.max.bytes."""
    size = len(key or b"") + len(value or b"") + RECORD_OVERHEAD_BYTES
    for name, data in headers or ():
        size += len(name) + len(data or b"") + 8
    return size


def fits(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None, limit: int = MAX_RECORD_BYTES) -> bool:
    return record_size(key, value, headers) <= limit


def truncated_key(key: bytes | None) -> bytes | None:
    return key if key is not None and len(key) <= MAX_TRUNCATED_KEY_BYTES else None


def is_fatal_idempotence(error: KafkaError | None) -> bool:
    """True when the producer must be replaced (librdkafka marks it fatal or the code says so)."""
    if error is None:
        return False
    return bool(error.fatal()) or error.code() in _FATAL_IDEMPOTENCE


def is_size_error(error: KafkaError | None) -> bool:
    return error is not None and error.code() in (KafkaError.MSG_SIZE_TOO_LARGE, getattr(KafkaError, "RECORD_LIST_TOO_LARGE", -1))


def unsent_reason(error: KafkaError) -> str:
    """A small, fixed set of labels for why a record was not delivered (lfr_frames_dropped_total)."""
    code = error.code()
    if is_fatal_idempotence(error):
        return "producer_reset"
    if code in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
        return "producer_reset"
    if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION):
        return "topic_missing"
    if is_size_error(error):
        return "too_large"
    if code in (KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT):
        return "timed_out"  # the broker was down or the topic missing for the whole message timeout
    if code in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
        return "broker_unavailable"
    return "delivery_failed"
