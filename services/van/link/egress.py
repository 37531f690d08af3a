"""What may leave a van: the outcome topics (an allow-list by name) and, per record, outcomes only.

Topics are named by their logical name (``lfr.<name>.v<N>``, or ``lfr.<force>.<name>.v<N>``)
and resolved from services/common/topics.toml, so a new version of an outcome topic (alerts
v3, counts v2) is forwarded without a change here. Frames, faces, embeddings, matches,
evidence and the watchlist can never be configured: ``check_topic`` refuses them at start.

Each record is checked again before it is queued (``withhold_reason``): its schema, read from
the OpenLFR envelope or the CloudEvents ``ce_dataschema`` header, must be an outcome schema,
and an envelope must carry no binary attachment (images and embeddings are the only binary
values the pipeline has). Dead letters leave as metadata only: their value is dropped, the
reason headers and coordinates go. A withheld record is counted and skipped, never blocking.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable

from services.common.topics import TopicSpec, load_topic_specs

#: logical names of the outcome topics a van forwards to its force's core
OUTCOMES = ("alerts", "adjudications", "outcomes", "counts", "audit", "dlq", "heartbeats")
#: logical names that hold or lead to biometric data: never forwarded, whatever the settings say
NEVER = ("frames", "faces", "embeddings", "matches", "evidence", "evidence_keys", "watchlist", "probes")
#: outcome topics whose records go as metadata only (headers, key; no value)
METADATA_ONLY = ("dlq",)
WITHHELD_REASONS = ("not_an_outcome", "binary_payload", "unknown_schema")

_TOPIC = re.compile(r"^lfr\.(?:(?P<force>[a-z0-9-]+)\.)?(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)$")
_SCHEMA_IN_URL = re.compile(r"(?:^|/)(lfr\.[a-z_]+\.v[0-9]+)(?:\.json)?$")
_ENVELOPE = struct.Struct(">4sI")


class EgressRefused(ValueError):
    """A topic that may not be forwarded (a settings error: the link does not start)."""


def logical_name(topic: str) -> str | None:
    """``alerts`` for ``lfr.alerts.v3`` or ``lfr.gmp.alerts.v3``; None outside the scheme."""
    match = _TOPIC.match(topic)
    return match["name"] if match else None


def check_topic(topic: str) -> str:
    name = logical_name(topic)
    if name is None or name in NEVER or name not in OUTCOMES:
        raise EgressRefused(f"topic {topic!r} may not leave the van: only outcome topics ({', '.join(OUTCOMES)}) are forwarded")
    return topic


def outcome_topics(specs: Iterable[TopicSpec] | None = None, only: Iterable[str] = ()) -> list[str]:
    """The outcome topics of topics.toml (every version listed), or the subset ``only`` names
    (each still checked: a biometric topic cannot be added by a setting)."""
    chosen = [check_topic(topic) for topic in only]
    if chosen:
        return chosen
    return [spec.name for spec in (load_topic_specs() if specs is None else specs) if logical_name(spec.name) in OUTCOMES]


def record_schema(value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    """The schema a record claims: the CloudEvents ``ce_dataschema`` header, else the envelope's."""
    for name, raw in headers or ():
        if name == "ce_dataschema" and raw:
            match = _SCHEMA_IN_URL.search(raw.decode("utf-8", "replace"))
            return match.group(1) if match else None
    from services.governance.privacy.payload import sniff_schema  # noqa: PLC0415 - one envelope sniffer

    return sniff_schema(value)


def _has_attachments(value: bytes) -> bool:
    if len(value) < _ENVELOPE.size or value[:3] != b"LFR":
        return False
    _magic, header_length = _ENVELOPE.unpack_from(value)
    return len(value) > _ENVELOPE.size + header_length or b'"$bytes"' in value[_ENVELOPE.size: _ENVELOPE.size + header_length]


def withhold_reason(topic: str, value: bytes | None, headers) -> str | None:
    """Why this record must stay in the van, or None when it may go (as ``egress_value`` says)."""
    if logical_name(topic) in METADATA_ONLY:
        return None
    schema = record_schema(value, headers)
    if schema is None:
        return "unknown_schema"
    if logical_name(schema) not in OUTCOMES:
        return "not_an_outcome"
    if value and _has_attachments(value):
        return "binary_payload"
    return None


def egress_value(topic: str, value: bytes | None) -> bytes | None:
    """The value that leaves the van: none for metadata-only topics."""
    return None if logical_name(topic) in METADATA_ONLY else value
