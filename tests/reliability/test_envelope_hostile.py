"""Hostile record values: every one must raise DecodeError (a dead letter with a reason), never anything else.

Regression for issue #14: a JSON header nested 100,000 levels deep raised RecursionError out of
``envelope.decode``, which the runner did not catch, so detect, embed and the matcher crash-looped.
"""

from __future__ import annotations

import struct

import pytest

from services.common.envelope import decode, encode
from services.common.errors import MessageError


def envelope(header: bytes | str, blobs: bytes = b"") -> bytes:
    raw = header.encode() if isinstance(header, str) else header
    return b"LFR\x01" + struct.pack(">I", len(raw)) + raw + blobs


def audit_header(details: str) -> str:
    return '{"schema":"lfr.audit.v2","data":{"actor":"a","action":"b","at_ms":1,"service":"s","details":' + details + "}}"


HOSTILE = {
    "nested_100k": envelope(audit_header("[" * 100_000 + "]" * 100_000)),
    "nested_dict_900": envelope(audit_header('{"a":' * 900 + "1" + "}" * 900)),
    "nested_unclosed": envelope('{"schema":' + "[" * 200_000),
    "huge_integer": envelope(audit_header('{"n":' + "9" * 100_000 + "}")),
    "huge_exponent": envelope(audit_header('{"n":1e999999}')),
    "nan_literal": envelope(audit_header('{"n":NaN}')),
    "bad_utf8": envelope(b'{"schema":"lfr.audit.v2","data":{"actor":"\xff\xfe"}}'),
    "lone_surrogate": envelope(audit_header('{"s":"\\ud800"}')),
    "header_not_object": envelope("[1,2,3]"),
    "bytes_ref_wrong_type": envelope(audit_header('{"x":{"$bytes":"ab"}}')),
    "bytes_ref_three_items": envelope(audit_header('{"x":{"$bytes":[0,1,2]}}')),
    "bytes_ref_negative": envelope(audit_header('{"x":{"$bytes":[-5,2]}}'), b"abc"),
    "bytes_ref_float": envelope(audit_header('{"x":{"$bytes":[0.5,1]}}'), b"abc"),
    "bytes_ref_bool": envelope(audit_header('{"x":{"$bytes":[true,true]}}'), b"abc"),
    "truncated_attachment": encode(
        "lfr.frames.v1",
        {"camera_id": "c", "deployment_id": "d", "seq": 0, "captured_at_ms": 1, "width": 4, "height": 4, "media_type": "image/jpeg", "image": b"x" * 100},
    )[:-10],
    "header_length_past_end": b"LFR\x01" + struct.pack(">I", 50) + b"{}",
    "header_length_huge": b"LFR\x01" + struct.pack(">I", 0xFFFFFFFF) + b"{}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_value_raises_a_message_error_with_a_reason(name):
    with pytest.raises(MessageError) as caught:
        decode(HOSTILE[name])
    assert caught.value.reason in ("decode_error", "schema_invalid")
    assert str(caught.value)


def test_depth_limit_sits_between_real_messages_and_the_interpreter():
    """Below the limit the header parses (and the schema judges it); above it, decode_error "too deep"."""
    from services.common.envelope import MAX_HEADER_DEPTH

    assert 8 <= MAX_HEADER_DEPTH <= 64
    shallow = "[" * (MAX_HEADER_DEPTH - 4) + "]" * (MAX_HEADER_DEPTH - 4)
    with pytest.raises(MessageError) as caught:
        decode(envelope(audit_header(shallow)))
    assert caught.value.reason == "schema_invalid"
    too_deep = "[" * (MAX_HEADER_DEPTH + 1) + "]" * (MAX_HEADER_DEPTH + 1)
    with pytest.raises(MessageError, match="deep") as caught:
        decode(envelope(audit_header(too_deep)))
    assert caught.value.reason == "decode_error"


def test_valid_envelope_still_round_trips():
    frame = {"camera_id": "c", "deployment_id": "d", "seq": 2**40, "captured_at_ms": 1, "width": 4, "height": 4, "media_type": "image/jpeg", "image": b"\x00\x01"}
    assert decode(encode("lfr.frames.v1", frame)).data == frame
    audit = {"actor": "a", "action": "b", "at_ms": 1, "service": "s", "details": {"n": 2.5, "s": "caf\u00e9", "z": None}}
    assert decode(encode("lfr.audit.v2", audit)).data == audit
