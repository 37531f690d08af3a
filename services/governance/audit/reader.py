"""Reads every partition of an audit topic to its end, in offset order (for verify and show)."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from services.common.errors import MessageError
from services.common.jsonevents import decode_record
from services.common.kafka_config import client_config
from services.common.settings import KafkaSettings
from services.common.topic_reader import read_to_end

from .chain import Position


def read_audit(settings: KafkaSettings, topic: str, timeout_s: float = 60.0) -> dict[int, list[Position]]:
    config = client_config(settings)
    metadata = AdminClient(config).list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise RuntimeError(f"audit topic {topic} does not exist")
    found: dict[int, list[Position]] = {p: [] for p in sorted(metadata.partitions)}
    for message in read_to_end(config, topic, group_id="lfr-audit-cli", timeout_s=timeout_s, partitions=found):
        try:
            record = decode_record(message.value(), message.headers()).data if message.value() is not None else None
        except MessageError:
            record = None
        found[message.partition()].append(Position(message.offset(), record))
    return found


def matches(record, subject: str | None, deployment: str | None, actor: str | None, action: str | None) -> bool:
    """``lfr audit show`` filters. A deployment matches its own records (deployment_id, or a
    deployment.* action about it) and any record whose details name it."""
    if record is None:
        return False
    details = record.get("details") or {}
    if subject and record.get("subject_id") != subject:
        return False
    if actor and actor not in (record.get("actor"), details.get("requested_by")):
        return False
    if action and not str(record.get("action", "")).startswith(action):
        return False
    if deployment:
        named = {record.get("deployment_id"), details.get("deployment_id")}
        named.update(str(details.get("deployments") or "").split(","))
        if str(record.get("action", "")).startswith("deployment."):
            named.add(record.get("subject_id"))
        if deployment not in named:
            return False
    return True
