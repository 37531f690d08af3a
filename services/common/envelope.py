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

Decoding is the first thing that touches untrusted bytes, so every failure it can meet ends
as ``DecodeError`` (a dead letter with a reason), never as another exception: the header is
bounded in size (``MAX_HEADER_BYTES``) and nesting (``MAX_HEADER_DEPTH``, checked after a
parse that itself cannot recurse past the interpreter's limit unnoticed), numbers must be
finite and fit in 64 bits, strings must be valid Unicode, and attachment references must be
two in-range non-negative integers.
"""

from __future__ import annotations

import json
import math
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
# The deepest real message is about 5 levels (data -> faces -> box); 32 leaves room for
# growth and stays far below Python's recursion limit, which json, jsonschema and _resolve use.
MAX_HEADER_DEPTH = 32
_INT_LIMIT = 1 << 63


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
    header = _parse_header(value[_HEADER.size : _HEADER.size + header_len])
    if not isinstance(header, dict) or not isinstance(header.get("data"), dict):
        raise DecodeError("envelope header must be an object with a 'data' object")
    schema = header.get("schema")
    if not isinstance(schema, str) or not SCHEMA_NAME.match(schema):
        raise DecodeError("envelope header has no valid 'schema' name")
    (registry or default_registry()).validate(schema, header["data"])
    blob_section = memoryview(value)[_HEADER.size + header_len :]
    return Envelope(schema=schema, data=_resolve(header["data"], blob_section))


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"envelope header contains the non-JSON number {name}")


def parse_json(raw: bytes) -> Any:
    """Untrusted UTF-8 JSON under the header's bounds (depth, finite 64-bit numbers, valid Unicode); raises DecodeError.

    Also the parser of plain JSON CloudEvents values (services/common/jsonevents.py)."""
    return _parse_header(raw)


def _parse_header(raw: bytes) -> Any:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError(f"envelope header nested too deep (limit {MAX_HEADER_DEPTH})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"envelope header is not JSON: {type(exc).__name__}") from None
    except ValueError as exc:  # e.g. an integer literal longer than int_max_str_digits
        raise DecodeError(f"envelope header has an unreadable value: {str(exc)[:80]}") from None
    _check_shape(header)
    return header


def _check_shape(header: Any) -> None:
    """Depth, finite 64-bit numbers and encodable strings, without recursion (hostile input)."""
    stack: list[tuple[Any, int]] = [(header, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_HEADER_DEPTH:
                raise DecodeError(f"envelope header nested too deep (limit {MAX_HEADER_DEPTH})")
            if isinstance(node, dict):
                for key, item in node.items():
                    _check_text(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            _check_text(node)
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int):
            if not -_INT_LIMIT <= node < _INT_LIMIT:
                raise DecodeError("envelope header has an integer outside 64 bits")
        elif isinstance(node, float) and not math.isfinite(node):
            raise DecodeError("envelope header has a number that is not finite")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError("envelope header has a string that is not valid Unicode (lone surrogate)") from None


def _resolve(value: Any, blobs: memoryview) -> Any:
    if isinstance(value, dict):
        ref = value.get("$bytes")
        if ref is not None and len(value) == 1:
            if not (
                isinstance(ref, list)
                and len(ref) == 2
                and all(type(part) is int and part >= 0 for part in ref)
            ):
                raise DecodeError("attachment reference must be [offset, length] of non-negative integers")
            offset, length = ref
            if offset + length > len(blobs):
                raise DecodeError("blob reference points past the end of the record")
            return bytes(blobs[offset : offset + length])
        return {key: _resolve(item, blobs) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, blobs) for item in value]
    return value
