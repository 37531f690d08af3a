"""Plain JSON CloudEvents in Kafka binary content mode, for the topics where no image travels.

A record of lfr.alerts.v3, lfr.adjudications.v3, lfr.counts.v2, lfr.audit.v2 or lfr.deployment_events.v1 is what any CloudEvents or
Kafka tool reads without OpenLFR code: the value is the message itself as UTF-8 JSON (valid
against its schema in schemas/), the event attributes travel as ``ce_*`` headers
(CloudEvents Kafka protocol binding 1.0, binary content mode) and ``content-type`` is
``application/json``. ``ce_dataschema`` is the schema's ``$id``, so a reader knows the type and
version from the headers alone. Frames, faces, embeddings, matches, evidence and the signed
governed topics keep the binary envelope (services/common/envelope.py): images and embeddings
never travel as base64 text in Kafka.

``KINDS`` says, per schema, how the attributes derive from the message: ``id`` is
deterministic (a redelivered or re-emitted record carries the same ``ce_id``, so a consumer
de-duplicates on it), ``subject`` is what the event is about, ``source`` names the
deployment (and camera) it came from. ``decode_record`` reads either format by the record's
``content-type`` header, so one reader serves both kinds of topic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import envelope
from .errors import DecodeError, UnknownSchemaError
from .schemas import SCHEMA_NAME, SchemaRegistry, default_registry

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
SCHEMA_BASE = "https://openlfr.org/schemas/"
DEFAULT_SOURCE_PREFIX = "/openlfr"
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "dataschema")
MAX_VALUE_BYTES = envelope.MAX_HEADER_BYTES  # the same bound as an envelope's JSON header
Headers = Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None  # as Kafka clients give them


def rfc3339_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def dataschema_for(schema: str) -> str:
    return f"{SCHEMA_BASE}{schema}.json"


def deployment_source(prefix: str, deployment_id: str, camera_id: str | None = None) -> str:
    base = f"{prefix.rstrip('/')}/deployments/{deployment_id}"
    return f"{base}/cameras/{camera_id}" if camera_id else base


@dataclass(frozen=True)
class EventKind:
    """How the CloudEvent attributes of one schema's messages derive from the message."""

    schema: str
    types: tuple[str, ...]  # every ce_type this topic carries (documented in docs/asyncapi.yaml)
    id_rule: str  # how ce_id is made, in words (for the AsyncAPI document)
    subject_rule: str
    source_rule: str
    type_of: Callable[[Mapping[str, Any]], str]
    id_of: Callable[[Mapping[str, Any]], str]
    subject_of: Callable[[Mapping[str, Any]], str]
    source_of: Callable[[str, Mapping[str, Any]], str]
    time_of: Callable[[Mapping[str, Any]], int]


ALERT_RAISED = "org.openlfr.alert.raised"
ALERT_UPDATED = "org.openlfr.alert.updated"
ADJUDICATION_DECISION = "org.openlfr.adjudication.decision"
ADJUDICATION_OUTCOME = "org.openlfr.adjudication.outcome"
FACES_COUNTED = "org.openlfr.faces.counted"
AUDIT_RECORDED = "org.openlfr.audit.recorded"
AUDIT_SCHEMA = "lfr.audit.v2"
DEPLOYMENT_EVENTS_SCHEMA = "lfr.deployment_events.v1"
DEPLOYMENT_EVENT_PREFIX = "org.openlfr.deployment."
DEPLOYMENT_EVENTS = ("drafted", "authorised", "reauthorised", "started", "ended", "cancelled", "erased")  # services/governance/deployments/public.py


def _audit_hash(record: Mapping[str, Any]) -> str:
    # The chain's own record hash (services/governance/audit/chain.py), so a ce_id is what `lfr audit verify`
    # and the lfr_audit_hash header name. Imported here: the chain module needs the signing stack.
    from services.governance.audit.chain import record_hash  # noqa: PLC0415

    return record_hash(record)

KINDS: dict[str, EventKind] = {
    kind.schema: kind
    for kind in (
        EventKind(
            "lfr.alerts.v3", (ALERT_RAISED, ALERT_UPDATED),
            "{alert_id}.{revision}", "alert_id (every revision of one alert shares it)",
            "{prefix}/deployments/{deployment_id}/cameras/{camera_id}",
            type_of=lambda d: ALERT_RAISED if d["revision"] == 0 else ALERT_UPDATED,
            id_of=lambda d: f"{d['alert_id']}.{d['revision']}",
            subject_of=lambda d: d["alert_id"],
            source_of=lambda p, d: deployment_source(p, d["deployment_id"], d["camera_id"]),
            time_of=lambda d: d["last_seen_ms"],
        ),
        EventKind(
            "lfr.adjudications.v3", (ADJUDICATION_DECISION, ADJUDICATION_OUTCOME),
            "{alert_id}.{stage}.{decided_at_ms}", "alert_id",
            "{prefix}/deployments/{deployment_id}/cameras/{camera_id}",
            type_of=lambda d: ADJUDICATION_OUTCOME if d["stage"] == "outcome" else ADJUDICATION_DECISION,
            id_of=lambda d: f"{d['alert_id']}.{d['stage']}.{d['decided_at_ms']}",
            subject_of=lambda d: d["alert_id"],
            source_of=lambda p, d: deployment_source(p, d["deployment_id"], d["camera_id"]),
            time_of=lambda d: d["decided_at_ms"],
        ),
        EventKind(
            "lfr.counts.v2", (FACES_COUNTED,),
            "{count_id} (input topic, partition and offset range: a redelivered batch has the same id)", "deployment_id",
            "{prefix}/deployments/{deployment_id}",
            type_of=lambda d: FACES_COUNTED,
            id_of=lambda d: d["count_id"],
            subject_of=lambda d: d["deployment_id"],
            source_of=lambda p, d: deployment_source(p, d["deployment_id"]),
            time_of=lambda d: d["counted_at_ms"],
        ),
        EventKind(
            AUDIT_SCHEMA, (AUDIT_RECORDED,),
            "the record's chain hash: sha256 of its canonical JSON and signature (services/governance/audit/chain.py)",
            "subject_id, else the actor (the record's key)",
            "{prefix}/services/{service}",
            type_of=lambda d: AUDIT_RECORDED,
            id_of=_audit_hash,
            subject_of=lambda d: d.get("subject_id") or d["actor"],
            source_of=lambda p, d: f"{p.rstrip('/')}/services/{d['service']}",
            time_of=lambda d: d["at_ms"],
        ),
        EventKind(
            DEPLOYMENT_EVENTS_SCHEMA, tuple(DEPLOYMENT_EVENT_PREFIX + e for e in DEPLOYMENT_EVENTS),
            "{deployment_id}.{revision} (one event per verified revision: a replay carries the same id)", "deployment_id",
            "{prefix}/deployments/{deployment_id}",
            type_of=lambda d: DEPLOYMENT_EVENT_PREFIX + d["event"],
            id_of=lambda d: f"{d['deployment_id']}.{d['revision']}",
            subject_of=lambda d: d["deployment_id"],
            source_of=lambda p, d: deployment_source(p, d["deployment_id"]),
            time_of=lambda d: d["changed_at_ms"],
        ),
    )
}


def is_json(schema: str) -> bool:
    """True when ``schema``'s messages travel as plain JSON CloudEvents (no image in them)."""
    return schema in KINDS


def attributes(schema: str, data: Mapping[str, Any], source_prefix: str = DEFAULT_SOURCE_PREFIX,
               time_ms: int | None = None) -> dict[str, str]:
    """The CloudEvent context attributes (names without ``ce_``); ``time_ms`` defaults to the message's own time."""
    kind = KINDS[schema]
    return {
        "specversion": SPEC_VERSION,
        "id": kind.id_of(data),
        "source": kind.source_of(source_prefix, data),
        "type": kind.type_of(data),
        "time": rfc3339_ms(kind.time_of(data) if time_ms is None else time_ms),
        "subject": kind.subject_of(data),
        "dataschema": dataschema_for(schema),
    }


def encode(schema: str, data: Mapping[str, Any], registry: SchemaRegistry | None = None, *,
           source_prefix: str = DEFAULT_SOURCE_PREFIX, time_ms: int | None = None) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Validate ``data`` and return (record value, record headers); raises SchemaValidationError."""
    if schema not in KINDS:
        raise UnknownSchemaError(f"{schema!r} is not a plain JSON CloudEvents type")
    (registry or default_registry()).validate(schema, data)
    value = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    headers = [(f"ce_{name}", text.encode()) for name, text in attributes(schema, data, source_prefix, time_ms).items()]
    headers.append(("content-type", CONTENT_TYPE.encode()))
    return value, headers


def is_event_header(name: str) -> bool:
    """True for the headers ``encode`` writes (``ce_*`` and ``content-type``)."""
    return name.startswith("ce_") or name == "content-type"


def header_map(headers: Headers) -> dict[str, str]:
    """Record headers as text (the last of a repeated name wins), whatever shape the client gives them in."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    return {name: bytes(value).decode("utf-8", errors="replace") for name, value in items if value is not None}


def attributes_from_headers(headers: Headers,
                            required: tuple[str, ...] = REQUIRED_ATTRIBUTES) -> dict[str, str]:
    """The ``ce_*`` attributes of a record; raises DecodeError when a required one is missing."""
    found = {name[3:]: value for name, value in header_map(headers).items() if name.startswith("ce_")}
    missing = [name for name in required if not found.get(name)]
    if missing:
        raise DecodeError(f"record lacks CloudEvents header(s): {', '.join('ce_' + m for m in missing)}")
    return found


def schema_of(dataschema: str) -> str:
    """``lfr.alerts.v3`` from ``https://openlfr.org/schemas/lfr.alerts.v3.json``; raises DecodeError."""
    name = dataschema.removeprefix(SCHEMA_BASE).removesuffix(".json")
    if not dataschema.startswith(SCHEMA_BASE) or not SCHEMA_NAME.match(name):
        raise DecodeError("ce_dataschema is not an OpenLFR schema id")
    return name


def decode_json(value: bytes | None, headers: Headers, registry: SchemaRegistry | None = None) -> envelope.Envelope:
    """One plain JSON CloudEvent record; raises DecodeError, UnknownSchemaError or SchemaValidationError."""
    attrs = attributes_from_headers(headers)
    schema = schema_of(attrs["dataschema"])
    if schema not in KINDS:
        raise UnknownSchemaError(f"{schema} does not travel as plain JSON")
    if not value:
        raise DecodeError("empty record value")
    if len(value) > MAX_VALUE_BYTES:
        raise DecodeError("JSON value larger than the bound")
    data = envelope.parse_json(bytes(value))
    if not isinstance(data, dict):
        raise DecodeError("JSON value must be an object")
    (registry or default_registry()).validate(schema, data)
    return envelope.Envelope(schema=schema, data=data)


def decode_record(value: bytes | None, headers: Headers, registry: SchemaRegistry | None = None) -> envelope.Envelope:
    """A record of any OpenLFR topic: plain JSON when its content-type says so, else the binary envelope."""
    content_type = header_map(headers).get("content-type", "").split(";")[0].strip().lower()
    if content_type == CONTENT_TYPE:
        return decode_json(value, headers, registry)
    return envelope.decode(value, registry)
