"""Reads the report's inputs from the topics, each to its end (no consumer group)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from services.common.envelope import decode
from services.common.kafka_config import client_config
from services.common.progress import Progress

from .deployments import DeploymentFacts, facts_from_record


@dataclass
class ReportInputs:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    adjudications: list[dict[str, Any]] = field(default_factory=list)
    counts: list[dict[str, Any]] = field(default_factory=list)
    watchlist_scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # subject -> deployments
    deployments: dict[str, DeploymentFacts] = field(default_factory=dict)


def read_topic(settings, topic: str, timeout_s: float, bar: Progress | None = None) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every record of ``topic`` in partition order; [] when the topic does not exist.

    ``bar`` (services/common/progress.py) grows by the topic's record count and advances as they arrive."""
    consumer = Consumer({**client_config(settings), "group.id": "lfr-report", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=timeout_s).topics.get(topic)
        if metadata is None or not metadata.partitions:
            return []
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s) for p in metadata.partitions}
        ends = {p: high for p, (_low, high) in marks.items()}
        if bar is not None:
            bar.set_total((bar.total or 0) + sum(max(0, high - low) for low, high in marks.values()))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        records: list[tuple[bytes | None, bytes | None]] = []
        pending = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
            batch = consumer.consume(500, 0.2)
            if bar is not None and batch:
                bar.update(len(batch))
            for record in batch:
                if record.error() is not None:
                    continue
                if record.offset() + 1 >= ends[record.partition()]:
                    pending.discard(record.partition())
                records.append((record.key(), record.value()))
        if bar is not None and bar.count > (bar.total or 0):
            bar.set_total(bar.count)  # a broker can report a short high watermark (Tansu does after a batch)
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


def read_inputs(settings, bar: Progress | None = None) -> ReportInputs:
    timeout = settings.report_read_timeout_s
    inputs = ReportInputs(
        alerts=_bodies(read_topic(settings, settings.alerts_topic, timeout, bar), "lfr.alerts.v2"),
        adjudications=_bodies(read_topic(settings, settings.adjudications_topic, timeout, bar), "lfr.adjudications.v2"),
        counts=_bodies(read_topic(settings, settings.counts_topic, timeout, bar), "lfr.counts.v1"),
    )
    for key, value in read_topic(settings, settings.watchlist_topic, timeout, bar):
        subject = (key or b"").decode()
        if value is None:
            inputs.watchlist_scopes.pop(subject, None)
            continue
        try:
            inputs.watchlist_scopes[subject] = tuple(decode(value).data["deployments"])
        except Exception:  # noqa: BLE001
            continue
    for key, value in read_topic(settings, settings.deployments_topic, timeout, bar):
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
