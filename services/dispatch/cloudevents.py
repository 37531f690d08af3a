"""CloudEvents 1.0 for alerts: Kafka protocol binding (binary mode) and structured JSON (webhook).

Kafka, binary content mode: the record value is our binary envelope of lfr.alerts.v2 (the
chip stays raw bytes) and the event attributes travel as ``ce_*`` headers, with
``content-type: application/vnd.openlfr.envelope.v1``. Record key = subject id.

Webhook, structured content mode: one JSON object with the attributes and ``data``, where
the only binary value (``data.face.chip.data``) is standard base64. This is the one place
an image travels as base64 text; Kafka records never carry base64.

Attributes:
- ``ce_id``: ``{alert_id}.{revision}``, deterministic (see policy.py);
- ``ce_source``: ``{prefix}/deployments/{deployment_id}/cameras/{camera_id}``;
- ``ce_type``: ``org.openlfr.alert.raised`` (revision 0) or ``org.openlfr.alert.updated``;
- ``ce_subject``: the alert id (every revision of one alert shares it);
- ``ce_time``: emit time, RFC 3339 UTC with milliseconds;
- ``ce_dataschema``: the ``$id`` of lfr.alerts.v2.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from services.common.envelope import CONTENT_TYPE

from .policy import ALERT_SCHEMA, Alert

SPEC_VERSION = "1.0"
TYPE_RAISED = "org.openlfr.alert.raised"
TYPE_UPDATED = "org.openlfr.alert.updated"
DATASCHEMA = f"https://openlfr.org/schemas/{ALERT_SCHEMA}.json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")


def rfc3339_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def source_for(prefix: str, deployment_id: str, camera_id: str) -> str:
    return f"{prefix.rstrip('/')}/deployments/{deployment_id}/cameras/{camera_id}"


def attributes(alert: Alert, source_prefix: str) -> dict[str, str]:
    """The CloudEvent context attributes of one alert (names without the ``ce_`` prefix)."""
    return {
        "specversion": SPEC_VERSION,
        "id": alert.ce_id,
        "source": source_for(source_prefix, alert.deployment_id, alert.camera_id),
        "type": TYPE_RAISED if alert.revision == 0 else TYPE_UPDATED,
        "time": rfc3339_ms(alert.emitted_at_ms),
        "subject": alert.alert_id,
        "dataschema": DATASCHEMA,
    }


def kafka_headers(alert: Alert, source_prefix: str) -> list[tuple[str, bytes]]:
    """Binary content mode headers: ``ce_<attribute>`` plus ``content-type``."""
    headers = [(f"ce_{name}", value.encode()) for name, value in attributes(alert, source_prefix).items()]
    headers.append(("content-type", CONTENT_TYPE.encode()))
    return headers


def attributes_from_headers(headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None) -> dict[str, str]:
    """Read the ``ce_*`` attributes back from Kafka record headers; raises ValueError if incomplete."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    found: dict[str, str] = {}
    for name, value in items:
        if name.startswith("ce_") and value is not None:
            found[name[3:]] = bytes(value).decode("utf-8", errors="replace")
    missing = [name for name in REQUIRED_ATTRIBUTES if not found.get(name)]
    if missing:
        raise ValueError(f"record lacks CloudEvents header(s): {', '.join('ce_' + m for m in missing)}")
    return found


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def structured(attrs: Mapping[str, str], data: Mapping[str, Any]) -> bytes:
    """Structured content mode (JSON event format): the webhook body."""
    event: dict[str, Any] = dict(attrs)
    event["datacontenttype"] = "application/json"
    event["data"] = _jsonable(data)
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
