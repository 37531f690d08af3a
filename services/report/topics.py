"""Reads the report's inputs from the topics, each to its end (no consumer group)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from services.common.envelope import decode
from services.common.kafka_config import client_config

from .deployments import DeploymentFacts, facts_from_record


@dataclass
class ReportInputs:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    adjudications: list[dict[str, Any]] = field(default_factory=list)
    counts: list[dict[str, Any]] = field(default_factory=list)
    watchlist_scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # subject -> deployments
    deployments: dict[str, DeploymentFacts] = field(default_factory=dict)


def read_topic(settings, topic: str, timeout_s: float) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every record of ``topic`` in partition order; [] when the topic does not exist."""
    consumer = Consumer({**client_config(settings), "group.id": "lfr-report", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=timeout_s).topics.get(topic)
        if metadata is None or not metadata.partitions:
            return []
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in metadata.partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        records: list[tuple[bytes | None, bytes | None]] = []
        pending = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
            for record in consumer.consume(500, 0.2):
                if record.error() is not None:
                    continue
                if record.offset() + 1 >= ends[record.partition()]:
                    pending.discard(record.partition())
                records.append((record.key(), record.value()))
        return records
    finally:
        consumer.close()


def _bodies(records, schema: str) -> list[dict[str, Any]]:
    out = []
    for _key, value in records:
        if value is None:
            continue
        try:
            envelope = decode(value)
        except Exception:  # noqa: BLE001 - the report counts only what validates
            continue
        if envelope.schema == schema:
            out.append(envelope.data)
    return out


def read_inputs(settings) -> ReportInputs:
    timeout = settings.report_read_timeout_s
    inputs = ReportInputs(
        alerts=_bodies(read_topic(settings, settings.alerts_topic, timeout), "lfr.alerts.v1"),
        adjudications=_bodies(read_topic(settings, settings.adjudications_topic, timeout), "lfr.adjudications.v1"),
        counts=_bodies(read_topic(settings, settings.counts_topic, timeout), "lfr.counts.v1"),
    )
    for key, value in read_topic(settings, settings.watchlist_topic, timeout):
        subject = (key or b"").decode()
        if value is None:
            inputs.watchlist_scopes.pop(subject, None)
            continue
        try:
            inputs.watchlist_scopes[subject] = tuple(decode(value).data["deployments"])
        except Exception:  # noqa: BLE001
            continue
    for key, value in read_topic(settings, settings.deployments_topic, timeout):
        deployment = (key or b"").decode()
        if value is None:
            inputs.deployments.pop(deployment, None)
            continue
        try:
            facts = facts_from_record(decode(value).data)
        except Exception:  # noqa: BLE001
            continue
        if facts.deployment_id:
            inputs.deployments[facts.deployment_id] = facts
    return inputs
