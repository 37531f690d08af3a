"""The audit hash chain, pure: build a signed, chained record and verify a partition's chain.

Each record carries ``seq`` (its position in the partition's chain, from 0), ``prev_hash`` (the
hash of the record before it; zeros for the first), the writer's ``key_id`` and an Ed25519
``signature`` over the canonical JSON of everything else. A record's hash covers the whole
record, signature included. So an edit breaks the record's signature; a removal leaves a gap in
``seq`` and a ``prev_hash`` that matches nothing; a reordering puts a ``seq`` before its
predecessor; an inserted record is unsigned, signed by a key the keyring does not trust, or a
copy of a record already in the chain. Truncating the tail leaves a valid shorter chain: it is
caught only against an anchor (a head hash noted earlier, ``lfr audit verify --anchor``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.signing import Keyring, Signer

GENESIS = "0" * 64
CONTEXT = b"lfr.audit.v1\x00"
CHAIN_FIELDS = ("seq", "prev_hash", "key_id", "signature")


def canonical(record: Mapping[str, Any]) -> bytes:
    """The signed bytes: every field but the signature, sorted keys, no whitespace."""
    body = {k: v for k, v in record.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record) + b"\x00" + str(record.get("signature", "")).encode()).hexdigest()


def seal(record: Mapping[str, Any], signer: Signer, seq: int, prev_hash: str) -> dict[str, Any]:
    """``record`` chained after (seq - 1, prev_hash) and signed by ``signer``; the actor is the signer's owner."""
    sealed = {**record, "actor": signer.owner, "seq": seq, "prev_hash": prev_hash, "key_id": signer.key_id}
    sealed["signature"] = base64.b64encode(signer.sign(CONTEXT + canonical(sealed))).decode()
    return sealed


@dataclass(frozen=True)
class Position:
    """Where a record sits in the partition (the offset) and what it holds (None: not decodable)."""

    offset: int
    record: Mapping[str, Any] | None


@dataclass(frozen=True)
class Problem:
    offset: int
    seq: int | None
    kind: str  # edited | removed | reordered | inserted | truncated
    detail: str

    def describe(self) -> str:
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"offset {self.offset}{seq}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class ChainReport:
    records: int
    head_hash: str
    head_seq: int
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _signature_problem(position: Position, keyring: Keyring) -> Problem | None:
    record = position.record
    assert record is not None
    seq = record.get("seq") if isinstance(record.get("seq"), int) else None
    if not all(name in record for name in CHAIN_FIELDS):
        return Problem(position.offset, seq, "inserted", "not a chained, signed audit record")
    key = keyring.get(str(record["key_id"]))
    if key is None:
        return Problem(position.offset, seq, "inserted", f"signed by key {record['key_id']}, which the keyring does not trust")
    if key.revoked_at_ms is not None and int(record.get("at_ms", 0)) >= key.revoked_at_ms:
        return Problem(position.offset, seq, "inserted", f"signed by key {key.key_id} after it was revoked")
    try:
        key.verifier().verify(base64.b64decode(str(record["signature"])), CONTEXT + canonical(record))
    except Exception:  # noqa: BLE001 - bad base64, bad key, bad signature: all mean "not what was signed"
        return Problem(position.offset, seq, "edited", "its signature does not match its content")
    return None


def verify_chain(positions: Iterable[Position], keyring: Keyring, anchor: str | None = None) -> ChainReport:
    """Walk one partition's records in offset order; the first problem found, named."""
    items = list(positions)
    expected_prev, expected_seq, count = GENESIS, 0, 0
    seen: dict[str, int] = {}
    later_seqs = [p.record.get("seq") if p.record else None for p in items]
    for index, position in enumerate(items):
        record = position.record
        if record is None:
            return ChainReport(count, expected_prev, expected_seq - 1,
                               Problem(position.offset, None, "edited", "not a valid audit record (does not decode or match lfr.audit.v1)"))
        problem = _signature_problem(position, keyring)
        if problem is not None:
            return ChainReport(count, expected_prev, expected_seq - 1, problem)
        digest, seq, prev = record_hash(record), int(record["seq"]), str(record["prev_hash"])
        if digest in seen:
            return ChainReport(count, expected_prev, expected_seq - 1,
                               Problem(position.offset, seq, "inserted", f"a copy of the record at offset {seen[digest]}"))
        if seq != expected_seq or prev != expected_prev:
            if seq < expected_seq:
                detail = f"seq {seq} comes after seq {expected_seq - 1}: moved from earlier in the chain"
                kind = "reordered"
            elif expected_seq in later_seqs[index + 1:]:
                detail = f"seq {seq} stands where seq {expected_seq} belongs, which comes later: moved"
                kind = "reordered"
            elif seq > expected_seq:
                missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}..{seq - 1}"
                detail = f"{missing} before it is missing"
                kind = "removed"
            else:
                detail = "its prev_hash does not match the record before it"
                kind = "inserted"
            return ChainReport(count, expected_prev, expected_seq - 1, Problem(position.offset, seq, kind, detail))
        seen[digest] = position.offset
        expected_prev, expected_seq, count = digest, seq + 1, count + 1
    if anchor and anchor not in seen and anchor != GENESIS:
        last = items[-1].offset if items else -1
        return ChainReport(count, expected_prev, expected_seq - 1,
                           Problem(last + 1, None, "truncated", f"the anchor {anchor[:16]}... is no longer in the chain"))
    return ChainReport(count, expected_prev, expected_seq - 1, None)
