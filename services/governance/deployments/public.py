"""A verified deployment revision as downstream may read it: lfr.deployment_events.v1, pure.

lfr.deployments.v1 is a signed, governed record: it names the subjects on the deployment's
watchlist, the officers by name and free-text reasons, and travels in OpenLFR's envelope. What
a force's command-and-control, records or transparency system may read is the projection here:
an allow-list of public fields (where, when, why, under whose rank, how big a watchlist, which
state), never a subject id, the snapshot manifest or its hash, a person's name or a free-text
field. Built from the record alone, so a replay of the same revision gives the same event
(ce_id ``{deployment_id}.{revision}``, services/common/jsonevents.py).
"""

from __future__ import annotations

from typing import Any

from services.common import jsonevents
from services.common.jsonevents import DEPLOYMENT_EVENTS_SCHEMA as SCHEMA

from .record import Deployment

# The state a revision lands in names what it did.
_BY_STATE = {"draft": "drafted", "authorised": "authorised", "active": "started", "ended": "ended", "cancelled": "cancelled"}


def event_of(d: Deployment) -> tuple[str, int]:
    """(what this revision did, when), from the record alone."""
    if d.snapshot is not None and d.snapshot.erased_at_ms is not None:
        return "erased", d.snapshot.erased_at_ms
    last = d.history[-1]
    # authorise() on an authorised or active deployment appends the same state again: a new snapshot.
    if d.state in ("authorised", "active") and sum(1 for t in d.history if t.state == d.state) > 1:
        return "reauthorised", last.at_ms
    return _BY_STATE[d.state], last.at_ms


def public_event(d: Deployment) -> dict[str, Any]:
    """The lfr.deployment_events.v1 message of one verified revision (validated by the encoder)."""
    event, changed_at_ms = event_of(d)
    data: dict[str, Any] = {
        "deployment_id": d.deployment_id,
        "revision": d.revision,
        "state": d.state,
        "event": event,
        "changed_at_ms": changed_at_ms,
        "created_at_ms": d.created_at_ms,
        "transitions": [{"state": t.state, "at_ms": t.at_ms} for t in d.history],
    }
    if d.force:
        data["force"] = d.force
    if d.purpose:
        data["purpose"] = {k: list(d.purpose[k]) for k in ("offences", "categories") if d.purpose.get(k)}
    legal = {k: v for k, v in (("dpia_ref", d.dpia_ref), ("eia_ref", d.eia_ref)) if v}
    if legal:
        data["legal_basis"] = legal
    if d.place:
        data["place"] = {k: d.place[k] for k in ("name", "point", "radius_m", "polygon") if k in d.place}
    if d.window is not None:
        data["window"] = {"start_ms": d.window.start_ms, "end_ms": d.window.end_ms}
    if d.cameras:
        data["cameras"] = list(d.cameras)
    if d.criteria is not None:
        data["criteria"] = {"categories": list(d.criteria.categories), "priorities": list(d.criteria.priorities),
                            "max_size": d.criteria.max_size}
    if d.match_threshold is not None:
        data["match_threshold"] = d.match_threshold
    if d.public_notice is not None:
        # no_notice_reason is free text: it stays in the signed record.
        notice = {"signage": bool(d.public_notice.get("signage", False))}
        if d.public_notice.get("notice_ref"):
            notice["notice_ref"] = d.public_notice["notice_ref"]
        data["public_notice"] = notice
    if d.authorisation is not None:
        a = d.authorisation
        data["authorisation"] = {"rank": a.rank, "at_ms": a.at_ms, "threshold_floor": a.threshold_floor,
                                 "expected_false_alerts_per_hour": a.expected_false_alerts_per_hour, "calibration": a.calibration}
    if d.snapshot is not None:
        s = d.snapshot
        watchlist = {"size": len(s.subjects), "version": s.version, "frozen_at_ms": s.created_at_ms}
        if s.erased_at_ms is not None:
            watchlist["erased_at_ms"] = s.erased_at_ms
        data["watchlist"] = watchlist
    return data


def projected(d: Deployment, topic: str, source_prefix: str = jsonevents.DEFAULT_SOURCE_PREFIX) -> tuple[str, bytes, bytes, list]:
    """(topic, key, value, headers) of the public event; raises SchemaValidationError."""
    value, headers = jsonevents.encode(SCHEMA, public_event(d), source_prefix=source_prefix)
    return topic, d.deployment_id.encode(), value, headers
