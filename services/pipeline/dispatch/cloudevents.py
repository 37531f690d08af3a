"""CloudEvents 1.0 for alerts: Kafka protocol binding (binary mode) and structured JSON (webhook).

Kafka, binary content mode: the record value is the lfr.alerts.v3 message itself as UTF-8
JSON, the event attributes travel as ``ce_*`` headers, with ``content-type:
application/json`` (services/common/jsonevents.py, shared with adjudications and counts). An
alert carries no image (the probe chip travels sealed in lfr.evidence.v1), so any CloudEvents
SDK, kcat and jq read it as it is. Record key = subject id.

Webhook, structured content mode: one JSON object with the same attributes and the same
``data`` (``datacontenttype: application/json``).

Attributes:
- ``ce_id``: ``{alert_id}.{revision}``, deterministic (see policy.py);
- ``ce_source``: ``{prefix}/deployments/{deployment_id}/cameras/{camera_id}``;
- ``ce_type``: ``org.openlfr.alert.raised`` (revision 0) or ``org.openlfr.alert.updated``;
- ``ce_subject``: the alert id (every revision of one alert shares it);
- ``ce_time``: emit time, RFC 3339 UTC with milliseconds;
- ``ce_dataschema``: the ``$id`` of lfr.alerts.v3.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from services.common import jsonevents
from services.common.errors import DecodeError

from .policy import ALERT_SCHEMA, Alert

SPEC_VERSION = jsonevents.SPEC_VERSION
TYPE_RAISED = jsonevents.ALERT_RAISED
TYPE_UPDATED = jsonevents.ALERT_UPDATED
DATASCHEMA = jsonevents.dataschema_for(ALERT_SCHEMA)
CONTENT_TYPE = jsonevents.CONTENT_TYPE
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
rfc3339_ms = jsonevents.rfc3339_ms


def source_for(prefix: str, deployment_id: str, camera_id: str) -> str:
    return jsonevents.deployment_source(prefix, deployment_id, camera_id)


def attributes(alert: Alert, source_prefix: str) -> dict[str, str]:
    """The CloudEvent context attributes of one alert (names without the ``ce_`` prefix)."""
    return jsonevents.attributes(ALERT_SCHEMA, alert.data, source_prefix, time_ms=alert.emitted_at_ms)


def encode_alert(alert: Alert, source_prefix: str, registry=None) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The Kafka record of one alert: (JSON value, ``ce_*`` and ``content-type`` headers); validates it."""
    return jsonevents.encode(ALERT_SCHEMA, alert.data, registry, source_prefix=source_prefix, time_ms=alert.emitted_at_ms)


def kafka_headers(alert: Alert, source_prefix: str) -> list[tuple[str, bytes]]:
    """Binary content mode headers: ``ce_<attribute>`` plus ``content-type``."""
    headers = [(f"ce_{name}", value.encode()) for name, value in attributes(alert, source_prefix).items()]
    headers.append(("content-type", CONTENT_TYPE.encode()))
    return headers


def attributes_from_headers(headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None) -> dict[str, str]:
    """Read the ``ce_*`` attributes back from Kafka record headers; raises ValueError if incomplete."""
    try:
        return jsonevents.attributes_from_headers(headers, REQUIRED_ATTRIBUTES)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None


def structured(attrs: Mapping[str, str], data: Mapping[str, Any]) -> bytes:
    """Structured content mode (JSON event format): the webhook body."""
    event: dict[str, Any] = dict(attrs)
    event["datacontenttype"] = "application/json"
    event["data"] = dict(data)  # plain JSON already: the very data of the Kafka record
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
