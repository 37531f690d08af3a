"""The audit hash chain, pure: build a signed, chained record and verify a partition's chain.

Each record carries ``seq`` (one more than the record it follows, from 0), ``prev_hash`` (the
hash of the record it follows; zeros for the first), the writer's ``key_id`` and an Ed25519
``signature`` over the canonical JSON of everything else. A record's hash covers the whole
record, signature included. So an edit breaks the record's signature; a removal leaves a
``prev_hash`` that matches nothing; a reordering puts a record before the one it follows; an
inserted record is unsigned, signed by a key the keyring does not trust, or a copy of a record
already in the chain. Truncating the tail leaves a valid shorter chain: it is caught only
against an anchor (a head hash noted earlier, ``lfr audit verify --anchor``).

Concurrent writers on one partition fork the chain: two records follow the same tail. The
writer that lands second sees it (its record did not land right after the tail it read) and
appends a join record whose ``joins`` lists the hashes of the records that got in between, so
every record but the head is still referenced by a later one and removing any of them is
caught. A fork is therefore normal, not tampering: each record must follow a record *earlier in
the partition*, not necessarily the one just before it. A record nobody references (its
writer stopped between a raced append and its join) is reported as unjoined, a warning rather
than a failure: only a trusted key can have written it, and what a removal could hide there is
the join itself, whose absence leaves the same picture as a crash.

Revocation is decided by position, not by the signer's clock: once a verified ``keys.revoke``
record sits in the partition, every later record signed by the key it names fails as inserted,
whatever ``at_ms`` it claims (a signing time is the signer's word). The keyring's revocation time
still refuses records claiming a later time (a revocation audited in another partition).
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
# The signing domain, not the topic: kept from v1 so records signed before and after the move
# to plain JSON (lfr.audit.v2) verify alike; the signature and hash cover the record, never the wire bytes.
CONTEXT = b"lfr.audit.v1\x00"
CHAIN_FIELDS = ("seq", "prev_hash", "key_id", "signature")
JOIN_ACTION = "audit.joined"
REVOKE_ACTION = "keys.revoke"  # written by `lfr keys revoke` (services/governance/audit/cli.py), details.key_id


def canonical(record: Mapping[str, Any]) -> bytes:
    """The signed bytes: every field but the signature, sorted keys, no whitespace."""
    body = {k: v for k, v in record.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record) + b"\x00" + str(record.get("signature", "")).encode()).hexdigest()


def seal(record: Mapping[str, Any], signer: Signer, seq: int, prev_hash: str, joins: Iterable[str] = ()) -> dict[str, Any]:
    """``record`` chained after (seq - 1, prev_hash) and signed by ``signer``; the actor is the signer's owner.
    ``joins``: hashes of records that raced in on a fork, referenced so their removal is caught."""
    sealed = {**record, "actor": signer.owner, "seq": seq, "prev_hash": prev_hash, "key_id": signer.key_id}
    if joins:
        sealed["joins"] = list(joins)
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
    kind: str  # edited | removed | reordered | inserted | truncated | foreign (another force's record or key)
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
    forks: int = 0  # records that follow a record other than the one just before them (concurrent writers)
    unjoined: tuple[int, ...] = ()  # offsets of non-head records no later record references

    @property
    def ok(self) -> bool:
        return self.problem is None


def _signature_problem(position: Position, keyring: Keyring, revoked_at: Mapping[str, int]) -> Problem | None:
    record = position.record
    assert record is not None
    seq = record.get("seq") if isinstance(record.get("seq"), int) else None
    if not all(name in record for name in CHAIN_FIELDS):
        return Problem(position.offset, seq, "inserted", "not a chained, signed audit record")
    key = keyring.get(str(record["key_id"]))
    if key is None:
        return Problem(position.offset, seq, "inserted", f"signed by key {record['key_id']}, which the keyring does not trust")
    if key.key_id in revoked_at:  # its place in the chain decides, whatever at_ms it claims
        return Problem(position.offset, seq, "inserted",
                       f"signed by key {key.key_id} after its revocation at offset {revoked_at[key.key_id]}")
    if key.revoked_at_ms is not None and int(record.get("at_ms", 0)) >= key.revoked_at_ms:
        return Problem(position.offset, seq, "inserted", f"signed by key {key.key_id} after it was revoked")
    try:
        key.verifier().verify(base64.b64decode(str(record["signature"])), CONTEXT + canonical(record))
    except Exception:  # noqa: BLE001 - bad base64, bad key, bad signature: all mean "not what was signed"
        return Problem(position.offset, seq, "edited", "its signature does not match its content")
    return None


def _force_problem(position: Position, keyring: Keyring, force: str, migrated: bool = False) -> Problem | None:
    """A record of another force, or signed by a key registered for another force (a platform key,
    registered for force default, may sign in any force's chain: the registrar's records).
    ``migrated``: no record of the chain has named a force yet, so one naming none is force
    default's history that `lfr forces migrate` copied in (after the first, each must name it)."""
    from services.governance.forces.keys import key_force  # noqa: PLC0415
    from services.governance.forces.naming import DEFAULT_FORCE  # noqa: PLC0415
    from services.governance.forces.place import record_force  # noqa: PLC0415

    record = position.record
    assert record is not None
    named = record_force(record)
    if "force" not in record and migrated:  # history copied in by `lfr forces migrate`, before the force's own records
        return None
    if named != force:
        return Problem(position.offset, record.get("seq"), "foreign", f"a record of force {named} in force {force}'s chain")
    owner = key_force(keyring, str(record["key_id"]))
    if owner not in (None, DEFAULT_FORCE, force):
        return Problem(position.offset, record.get("seq"), "foreign", f"signed by key {record['key_id']} of force {owner}")
    return None


def verify_chain(positions: Iterable[Position], keyring: Keyring, anchor: str | None = None, force: str | None = None) -> ChainReport:
    """Walk one partition's records in offset order; the first problem found, named. ``force``:
    the chain is that force's (services/governance/forces): each record names it and no other force's key signed it."""
    items = list(positions)
    known: dict[str, tuple[int, int]] = {GENESIS: (-1, -1)}  # hash -> (offset, seq) of records verified so far
    referenced: set[str] = set()
    revoked_at: dict[str, int] = {}  # key id -> offset of its revocation record in this partition
    head, head_seq, forks = GENESIS, -1, 0
    named_yet = False  # a record naming its force seen (services/governance/forces)
    all_hashes: dict[str, int] = {}
    for position in items:
        if position.record is not None and all(name in position.record for name in CHAIN_FIELDS):
            all_hashes.setdefault(record_hash(position.record), position.offset)

    def failed(problem: Problem) -> ChainReport:
        return ChainReport(len(known) - 1, head, head_seq, problem, forks)

    for position in items:
        record = position.record
        if record is None:
            return failed(Problem(position.offset, None, "edited", "not a valid audit record (does not decode or match its schema)"))
        problem = _signature_problem(position, keyring, revoked_at)
        if problem is None and force is not None:
            problem = _force_problem(position, keyring, force, migrated=not named_yet)
            named_yet = named_yet or "force" in record
        if problem is not None:
            return failed(problem)
        if record.get("action") == REVOKE_ACTION:  # a verified revocation: every later record its key signs is refused
            revoked_at.setdefault(str((record.get("details") or {}).get("key_id", "")), position.offset)
        digest, seq, prev = record_hash(record), int(record["seq"]), str(record["prev_hash"])
        if digest in known:
            return failed(Problem(position.offset, seq, "inserted", f"a copy of the record at offset {known[digest][0]}"))
        if prev == GENESIS and head != GENESIS:
            return failed(Problem(position.offset, seq, "inserted", "it starts a second chain in a partition that has one"))
        if prev not in known:
            if all_hashes.get(prev, -1) > position.offset:
                kind, detail = "reordered", f"seq {seq} comes before the record it follows (offset {all_hashes[prev]}): moved"
            else:
                missing = f"seq {seq - 1}" if seq > 0 else "the record"
                kind, detail = "removed", f"{missing} before it is missing"
            return failed(Problem(position.offset, seq, kind, detail))
        if seq != known[prev][1] + 1:
            return failed(Problem(position.offset, seq, "inserted", f"seq {seq} does not follow seq {known[prev][1]} that it names"))
        for joined in record.get("joins") or ():
            if str(joined) not in known:
                return failed(Problem(position.offset, seq, "removed", f"a record it joins ({str(joined)[:16]}...) is missing"))
            referenced.add(str(joined))
        if prev != head:
            forks += 1
        referenced.add(prev)
        known[digest] = (position.offset, seq)
        head, head_seq = digest, seq
    unjoined = tuple(sorted(offset for digest, (offset, _) in known.items() if digest not in referenced and digest not in (head, GENESIS)))
    if anchor and anchor not in known and anchor != GENESIS:
        last = items[-1].offset if items else -1
        return ChainReport(len(known) - 1, head, head_seq,
                           Problem(last + 1, None, "truncated", f"the anchor {anchor[:16]}... is no longer in the chain"), forks, unjoined)
    return ChainReport(len(known) - 1, head, head_seq, None, forks, unjoined)
