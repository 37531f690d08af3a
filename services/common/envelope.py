"""The OpenLFR envelope: a JSON header plus raw binary attachments in one Kafka record value.

Layout (all integers big-endian)::

    4 bytes   magic b"LFR" + envelope format version (b"\\x01")
    4 bytes   uint32 length H of the JSON header
    H bytes   UTF-8 JSON: {"schema": "lfr.faces.v1", "data": {...}}
    rest      blob section: attachments concatenated

Binary values (JPEG frames, face chips, float32 embeddings) never travel as base64: in the
JSON they are references ``{"$bytes": [offset, length]}`` into the blob section, which the
schemas declare with ``lfr.common.v1.json#/$defs/bytes``. Decoding validates the JSON
against the named schema first, then swaps references for ``bytes``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import DecodeError
from .schemas import SCHEMA_NAME, SchemaRegistry, default_registry

MAGIC = b"LFR\x01"
CONTENT_TYPE = "application/vnd.openlfr.envelope.v1"
_HEADER = struct.Struct(">4sI")
MAX_HEADER_BYTES = 1 << 20


@dataclass(frozen=True)
class Envelope:
    schema: str
    data: dict[str, Any]


def encode(schema: str, data: Mapping[str, Any], registry: SchemaRegistry | None = None) -> bytes:
    """Validate ``data`` against ``schema`` and serialise it; raises SchemaValidationError."""
    blobs: list[bytes] = []
    size = 0

    def swap(value: Any) -> Any:
        nonlocal size
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            ref = {"$bytes": [size, len(raw)]}
            blobs.append(raw)
            size += len(raw)
            return ref
        if isinstance(value, Mapping):
            return {key: swap(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [swap(item) for item in value]
        return value

    body = swap(data)
    (registry or default_registry()).validate(schema, body)
    header = json.dumps({"schema": schema, "data": body}, separators=(",", ":"), allow_nan=False).encode()
    return b"".join([_HEADER.pack(MAGIC, len(header)), header, *blobs])


def decode(value: bytes | None, registry: SchemaRegistry | None = None) -> Envelope:
    """Parse and validate one record value; raises DecodeError, UnknownSchemaError or SchemaValidationError."""
    if not value:
        raise DecodeError("empty record value")
    if len(value) < _HEADER.size:
        raise DecodeError("record value shorter than the envelope header")
    magic, header_len = _HEADER.unpack_from(value)
    if magic[:3] != MAGIC[:3]:
        raise DecodeError("not an OpenLFR envelope (bad magic)")
    if magic != MAGIC:
        raise DecodeError(f"unsupported envelope format version {magic[3]}")
    if header_len > MAX_HEADER_BYTES or _HEADER.size + header_len > len(value):
        raise DecodeError("envelope header length out of range")
    try:
        header = json.loads(value[_HEADER.size : _HEADER.size + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"envelope header is not JSON: {type(exc).__name__}") from None
    if not isinstance(header, dict) or not isinstance(header.get("data"), dict):
        raise DecodeError("envelope header must be an object with a 'data' object")
    schema = header.get("schema")
    if not isinstance(schema, str) or not SCHEMA_NAME.match(schema):
        raise DecodeError("envelope header has no valid 'schema' name")
    (registry or default_registry()).validate(schema, header["data"])
    blob_section = memoryview(value)[_HEADER.size + header_len :]
    return Envelope(schema=schema, data=_resolve(header["data"], blob_section))


def _resolve(value: Any, blobs: memoryview) -> Any:
    if isinstance(value, dict):
        ref = value.get("$bytes")
        if ref is not None and len(value) == 1:
            offset, length = ref
            if offset + length > len(blobs):
                raise DecodeError("blob reference points past the end of the record")
            return bytes(blobs[offset : offset + length])
        return {key: _resolve(item, blobs) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, blobs) for item in value]
    return value
