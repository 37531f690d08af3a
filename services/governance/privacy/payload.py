"""The dead-letter payload rule: a record from a biometric topic is dead-lettered without its value.

Frames, chips and embeddings of passers-by must never outlive the biometric topics' short
retention, and the dead-letter topic keeps records for an hour. So a dead letter from a
biometric topic carries the reason headers and the record's coordinates (topic, partition,
offset, key) and the header ``lfr_dlq_payload=withheld``; other topics keep the original
bytes (``original``) so they can be replayed. ``truncated`` is set by the runner's size guard.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from functools import lru_cache

from services.common.topics import load_topic_specs

PAYLOAD_HEADER = "lfr_dlq_payload"
ORIGINAL = "original"
WITHHELD = "withheld"
TRUNCATED = "truncated"

_ENVELOPE = struct.Struct(">4sI")


@lru_cache(maxsize=1)
def declared_topics() -> dict[str, bool]:
    """Topic name -> biometric flag, from the packaged topics.toml."""
    return {spec.name: spec.biometric for spec in load_topic_specs()}


def sniff_schema(value: bytes | None) -> str | None:
    """The schema name an envelope claims, without validating anything (None if not an envelope)."""
    if not value or len(value) < _ENVELOPE.size or value[:3] != b"LFR":
        return None
    _magic, length = _ENVELOPE.unpack_from(value)
    try:
        header = json.loads(value[_ENVELOPE.size : _ENVELOPE.size + length])
    except (UnicodeDecodeError, ValueError, RecursionError):  # hostile headers (#14): deep nesting
        return None
    schema = header.get("schema") if isinstance(header, dict) else None
    return schema if isinstance(schema, str) else None


def sniff_dataschema(headers) -> str | None:
    """The schema a plain JSON CloudEvent's ``ce_dataschema`` header names (None if none)."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, raw in items:
        if name == "ce_dataschema" and raw is not None:
            return bytes(raw).decode("utf-8", "replace").rsplit("/", 1)[-1].removesuffix(".json")
    return None


def is_biometric(topic: str, value: bytes | None, headers=None) -> bool:
    """The topic's flag in topics.toml; on an undeclared topic, what the record says it carries
    (its envelope's schema, or a JSON CloudEvent's ``ce_dataschema``: lfr.alerts.v3 is personal)."""
    declared = declared_topics()
    if topic in declared:
        return declared[topic]
    return declared.get(sniff_schema(value) or sniff_dataschema(headers) or "", False)


def dead_letter_value(topic: str, value: bytes | None, headers=None) -> tuple[bytes | None, str]:
    """The value a dead letter may keep, and the ``lfr_dlq_payload`` header that says so."""
    if value is not None and is_biometric(topic, value, headers):
        return None, WITHHELD
    return value, ORIGINAL
