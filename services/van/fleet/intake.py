"""The core's check of each record a van's link forwarded: the stage of `lfr run intake` (no Kafka here).

A record lands on the core's landing topic (LFR_INTAKE_TOPIC) with the headers the link put on
it: ``lfr_van`` (who sent it), ``lfr_link_id`` (its idempotent id) and ``lfr_topic`` (the
outcome topic it belongs to). ``check_forwarded`` decides, in this order:

* ``no_van`` / ``unknown_van``: no van header, or a van not in the fleet register;
* ``not_an_outcome``: the named topic is not an outcome topic (services/van/link/egress.py);
* ``wrong_force``: the topic is another force's than the one the register lists for the van,
  or the body names another force (a heartbeat's ``force``);
* ``no_link_id``; ``schema`` (the value fails its schema, or is not the topic's schema);
  ``wrong_van`` (a heartbeat naming another van than the one that sent it);
* ``duplicate``: an id accepted before (the link delivers at least once): dropped, counted;
* ``held``: a valid audit record of the van. The core's audit chain takes records only from its
  own trusted, signing writers (tests/security/test_access.py), and the intake reads untrusted
  input: a van's audit records (its bundle erasures among them) stay on the landing topic
  (retention 7 days) for a re-chaining step that is not built yet; counted, never dropped silently.

Refused records are dead-lettered at the core without their value, and their offsets committed
like any other: one bad record never blocks the van's queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.errors import MessageError
from services.common.jsonevents import decode_record
from services.governance.forces.naming import topic_force
from services.van.link.dedup import LINK_ID_HEADER, TOPIC_HEADER, VAN_HEADER
from services.van.link.egress import METADATA_ONLY, EgressRefused, check_topic, logical_name

#: what a refused record is dead-lettered as (lfr_dlq_reason) and counted by
#: outcome topics the intake checks but does not write on (see ``held`` above)
HELD = ("audit",)
REFUSALS = ("no_van", "unknown_van", "not_an_outcome", "wrong_force", "no_link_id", "schema", "wrong_van")


@dataclass(frozen=True)
class Verdict:
    """``topic`` and ``headers`` to write an accepted record with; ``reason`` when refused or duplicate."""

    reason: str | None
    detail: str = ""
    van_id: str | None = None
    topic: str | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    schema: str | None = None
    data: Mapping[str, Any] | None = None
    record_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


def _headers(raw: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    return {name: value.decode("utf-8", "replace") for name, value in raw or () if value is not None}


def check_forwarded(value: bytes | None, headers: Iterable[tuple[str, bytes | None]] | None,
                    vans: Mapping[str, str], seen: Callable[[str], bool]) -> Verdict:
    """``seen(id)``: whether an id was accepted before; the caller remembers an id only once the
    record is written on (so a batch written again after a failure is not taken for duplicates)."""
    raw = [(n, v) for n, v in headers or () if v is not None]
    found = _headers(raw)
    van = found.get(VAN_HEADER)
    if not van:
        return Verdict("no_van", "no lfr_van header")
    force = vans.get(van)
    if force is None:
        return Verdict("unknown_van", f"van {van!r} is not in the fleet register", van)
    topic = found.get(TOPIC_HEADER, "")
    try:
        check_topic(topic)
    except EgressRefused as exc:
        return Verdict("not_an_outcome", str(exc), van)
    if topic_force(topic) != force:
        return Verdict("wrong_force", f"topic {topic!r} is not force {force!r}'s (the van's in the fleet register)", van)
    record_id = found.get(LINK_ID_HEADER)
    if not record_id:
        return Verdict("no_link_id", "no lfr_link_id header", van)
    onward = tuple((n, v) for n, v in raw if n != TOPIC_HEADER)
    schema = data = None
    if logical_name(topic) not in METADATA_ONLY:  # dead letters travel as headers only
        try:
            decoded = decode_record(value, onward)
        except MessageError as exc:
            return Verdict("schema", f"{type(exc).__name__}: {exc}"[:300], van)
        if logical_name(decoded.schema) != logical_name(topic):
            return Verdict("schema", f"a {decoded.schema} record on {topic}", van)
        schema, data = decoded.schema, decoded.data
        named = data.get("force")
        if named is not None and named != force:
            return Verdict("wrong_force", f"the record names force {named!r}, van {van!r} serves {force!r}", van)
        if logical_name(topic) == "heartbeats" and data.get("van_id") != van:
            return Verdict("wrong_van", f"a heartbeat of {data.get('van_id')!r} sent by van {van!r}", van)
    if seen(record_id):
        return Verdict("duplicate", record_id, van, record_id=record_id)
    if logical_name(topic) in HELD:
        return Verdict("held", "a van's audit record: not written to the core's chain", van, record_id=record_id)
    return Verdict(None, "", van, topic, onward, schema, data, record_id)
