"""A deployment and its lfr.deployments.v1 form: typed, and checked for what authorisation needs.

The record is rewritten whole on every transition (the topic is compacted on the deployment
id). A draft may lack fields; ``missing_for_authorisation`` names each one that authorisation
requires, so a refusal always says which field is wrong.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

STATES = ("draft", "authorised", "active", "ended", "cancelled")
SCHEMA = "lfr.deployments.v1"

# UK police ranks, lowest first (Metropolitan and City of London titles share a level with
# their county equivalents). The minimum authorising rank is a setting.
RANKS = (
    ("constable",),
    ("sergeant",),
    ("inspector",),
    ("chief_inspector",),
    ("superintendent",),
    ("chief_superintendent",),
    ("assistant_chief_constable", "commander"),
    ("deputy_chief_constable", "deputy_assistant_commissioner"),
    ("chief_constable", "assistant_commissioner"),
    ("deputy_commissioner",),
    ("commissioner",),
)
RANK_LEVEL = {name: level for level, names in enumerate(RANKS) for name in names}


def rank_level(rank: str) -> int | None:
    return RANK_LEVEL.get(rank.strip().lower().replace(" ", "_").replace("-", "_"))


@dataclass(frozen=True)
class Window:
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Criteria:
    categories: tuple[str, ...]
    priorities: tuple[str, ...]
    max_size: int


@dataclass(frozen=True)
class SnapshotSubject:
    subject_id: str
    entry_version: str


@dataclass(frozen=True)
class Snapshot:
    version: int
    hash: str
    created_at_ms: int
    subjects: tuple[SnapshotSubject, ...]
    erased_at_ms: int | None = None

    @functools.cached_property
    def entry_versions(self) -> frozenset[str]:
        # Cached: the matcher asks for it with every probe, and the watchlist index recognises a
        # snapshot by this object (services/governance/watchlist/snapshot_tags.py) instead of rehashing it.
        return frozenset(s.entry_version for s in self.subjects)


@dataclass(frozen=True)
class Authorisation:
    officer: str
    rank: str
    at_ms: int
    threshold_floor: float
    expected_false_alerts_per_hour: float
    calibration: str
    threshold_override_reason: str | None = None
    false_alerts_justification: str | None = None
    key_id: str | None = None  # the authoriser's key; its owner is the officer (services/governance/deployments/signing.py)
    signature: str | None = None  # Ed25519 over what was authorised, by a key other than the creator's


@dataclass(frozen=True)
class Transition:
    state: str
    actor: str
    at_ms: int
    reason: str | None = None


@dataclass(frozen=True)
class Deployment:
    deployment_id: str
    revision: int
    state: str
    created_by: str
    created_at_ms: int
    history: tuple[Transition, ...]
    force: str | None = None
    name: str | None = None
    purpose: Mapping[str, Any] | None = None  # {"offences": [...], "categories": [...]}
    place: Mapping[str, Any] | None = None  # {"name", "point": {"lat", "lon"}, "radius_m"} or {"name", "polygon"}
    window: Window | None = None
    cameras: tuple[str, ...] = ()
    vans: tuple[str, ...] = ()  # vans serving it: one bundle each at authorisation (services/van/fleet/bundler.py)
    criteria: Criteria | None = None
    match_threshold: float | None = None
    footfall_per_hour: float | None = None
    rationale: str | None = None
    dpia_ref: str | None = None
    eia_ref: str | None = None
    public_notice: Mapping[str, Any] | None = None  # {"signage", "notice_ref" | "no_notice_reason"}
    authorisation: Authorisation | None = None
    snapshot: Snapshot | None = None

    def next(self, **changes: Any) -> Deployment:
        """The following revision of this record."""
        return replace(self, revision=self.revision + 1, **changes)

    @property
    def states_seen(self) -> list[str]:
        return [t.state for t in self.history]

    # -- the wire form -----------------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "deployment_id": self.deployment_id,
            "revision": self.revision,
            "state": self.state,
            "created_by": self.created_by,
            "created_at_ms": self.created_at_ms,
            "history": [_drop_none({"state": t.state, "actor": t.actor, "at_ms": t.at_ms, "reason": t.reason}) for t in self.history],
        }
        optional = {
            "force": self.force,
            "name": self.name,
            "purpose": dict(self.purpose) if self.purpose is not None else None,
            "place": dict(self.place) if self.place is not None else None,
            "window": {"start_ms": self.window.start_ms, "end_ms": self.window.end_ms} if self.window else None,
            "cameras": list(self.cameras) if self.cameras else None,
            "vans": list(self.vans) if self.vans else None,
            "criteria": (
                {"categories": list(self.criteria.categories), "priorities": list(self.criteria.priorities), "max_size": self.criteria.max_size}
                if self.criteria
                else None
            ),
            "match_threshold": self.match_threshold,
            "footfall_per_hour": self.footfall_per_hour,
            "rationale": self.rationale,
            "dpia_ref": self.dpia_ref,
            "eia_ref": self.eia_ref,
            "public_notice": dict(self.public_notice) if self.public_notice is not None else None,
            "authorisation": _drop_none(vars(self.authorisation).copy()) if self.authorisation else None,
            "snapshot": (
                _drop_none(
                    {
                        "version": self.snapshot.version,
                        "hash": self.snapshot.hash,
                        "created_at_ms": self.snapshot.created_at_ms,
                        "subjects": [{"subject_id": s.subject_id, "entry_version": s.entry_version} for s in self.snapshot.subjects],
                        "erased_at_ms": self.snapshot.erased_at_ms,
                    }
                )
                if self.snapshot
                else None
            ),
        }
        data.update(_drop_none(optional))
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Deployment:
        """From a schema-valid lfr.deployments.v1 body."""
        window = data.get("window")
        criteria = data.get("criteria")
        authorisation = data.get("authorisation")
        snapshot = data.get("snapshot")
        return cls(
            deployment_id=data["deployment_id"],
            revision=data["revision"],
            state=data["state"],
            created_by=data["created_by"],
            created_at_ms=data["created_at_ms"],
            history=tuple(Transition(t["state"], t["actor"], t["at_ms"], t.get("reason")) for t in data["history"]),
            force=data.get("force"),
            name=data.get("name"),
            purpose=data.get("purpose"),
            place=data.get("place"),
            window=Window(window["start_ms"], window["end_ms"]) if window else None,
            cameras=tuple(data.get("cameras", ())),
            vans=tuple(data.get("vans", ())),
            criteria=Criteria(tuple(criteria["categories"]), tuple(criteria["priorities"]), criteria["max_size"]) if criteria else None,
            match_threshold=data.get("match_threshold"),
            footfall_per_hour=data.get("footfall_per_hour"),
            rationale=data.get("rationale"),
            dpia_ref=data.get("dpia_ref"),
            eia_ref=data.get("eia_ref"),
            public_notice=data.get("public_notice"),
            authorisation=Authorisation(**authorisation) if authorisation else None,
            snapshot=(
                Snapshot(
                    snapshot["version"],
                    snapshot["hash"],
                    snapshot["created_at_ms"],
                    tuple(SnapshotSubject(s["subject_id"], s["entry_version"]) for s in snapshot["subjects"]),
                    snapshot.get("erased_at_ms"),
                )
                if snapshot
                else None
            ),
        )


def _drop_none(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}


@dataclass(frozen=True)
class Problem:
    """Why a deployment cannot be authorised (or a record is refused), naming the field."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Refused(Exception):
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self.problems)


def missing_for_authorisation(d: Deployment) -> list[Problem]:
    """Every field point 1 of the deployment record requires before an officer may authorise it."""
    problems = []
    for name, value in (("force", d.force), ("name", d.name), ("rationale", d.rationale), ("dpia_ref", d.dpia_ref), ("eia_ref", d.eia_ref)):
        if not value or not str(value).strip():
            problems.append(Problem(name, "is required"))
    purpose = d.purpose or {}
    if not purpose.get("offences") and not purpose.get("categories"):
        problems.append(Problem("purpose", "name the offences or watchlist categories sought"))
    place = d.place or {}
    if not place.get("name"):
        problems.append(Problem("place", "a place name is required"))
    elif not (("point" in place and "radius_m" in place) or "polygon" in place):
        problems.append(Problem("place", "a WGS84 point and radius, or a polygon, is required"))
    if d.window is None:
        problems.append(Problem("window", "a start and an end are required"))
    if not d.cameras:
        problems.append(Problem("cameras", "at least one camera is required"))
    if d.criteria is None:
        problems.append(Problem("criteria", "allowed categories, priorities and a maximum size are required"))
    if d.match_threshold is None:
        problems.append(Problem("match_threshold", "is required"))
    notice = d.public_notice
    if notice is None:
        problems.append(Problem("public_notice", "say whether signage is in place and give the published notice or the reason for none"))
    elif not notice.get("notice_ref") and not notice.get("no_notice_reason"):
        problems.append(Problem("public_notice", "a published notice reference, or the recorded reason for none, is required"))
    return problems
