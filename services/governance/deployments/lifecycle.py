"""The deployment state machine, pure: draft -> authorised -> active -> ended, or cancelled.

Each function takes a record and returns the next revision, or raises ``Refused`` with every
problem named by field; nothing here writes anything. ``check_successor`` is the same machine
seen from a reader: the services refuse a record that skips or reverses a transition, so
writing "active" straight onto the topic does not start a deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

from .calibration import Calibration
from .record import Authorisation, Deployment, Problem, Refused, Snapshot, Transition, missing_for_authorisation, rank_level

ALLOWED = {
    "draft": {"draft", "authorised", "cancelled"},
    "authorised": {"authorised", "active", "cancelled"},  # authorised -> authorised: a new snapshot
    "active": {"active", "ended", "cancelled"},  # active -> active: a new snapshot, or erasure bookkeeping
    "ended": {"ended"},  # only the erasure of its snapshot
    "cancelled": {"cancelled"},
}


@dataclass(frozen=True)
class AuthorisationRules:
    """The settings authorisation is checked against (services/common/settings.py DeploymentSettings)."""

    min_rank: str = "superintendent"
    max_window_ms: int = 12 * 3_600_000
    threshold_floor_setting: float | None = None  # raises the calibrated floor; lowering it needs the reason below
    threshold_floor_override_reason: str | None = None
    false_alerts_limit_per_hour: float = 1.0


def create(deployment: Deployment, now_ms: int) -> Deployment:
    if deployment.state != "draft" or deployment.revision != 0:
        raise Refused((Problem("state", "a new deployment starts as a draft at revision 0"),))
    if deployment.window is not None and deployment.window.end_ms <= deployment.window.start_ms:
        raise Refused((Problem("window", "the end must be after the start"),))
    return deployment


def floor_for(calibration: Calibration, rules: AuthorisationRules) -> float:
    """The calibrated floor, or the setting: raising it is free, lowering it needs a recorded reason."""
    floor = calibration.floor()
    setting = rules.threshold_floor_setting
    if setting is None:
        return floor
    if setting < floor and not (rules.threshold_floor_override_reason or "").strip():
        raise Refused((Problem("threshold_floor", f"the setting {setting:g} is below the calibrated floor {floor:g}; "
                               "an override reason is required (LFR_DEPLOYMENT_THRESHOLD_FLOOR_OVERRIDE_REASON)"),))
    return setting


def authorise(
    d: Deployment,
    *,
    officer: str,
    rank: str,
    snapshot: Snapshot,
    calibration: Calibration,
    rules: AuthorisationRules,
    now_ms: int,
    false_alerts_justification: str | None = None,
    claimed_rank: str | None = None,
) -> Deployment:
    """Freeze ``snapshot`` as the deployment's watchlist under the officer's authority. ``rank`` is
    the rank registered for the officer's key; ``claimed_rank`` (the command line's) must agree."""
    problems: list[Problem] = []
    if d.state not in ("draft", "authorised", "active"):
        raise Refused((Problem("state", f"a deployment that is {d.state} cannot be authorised"),))
    problems += missing_for_authorisation(d)
    if officer.strip().lower() == d.created_by.strip().lower():
        problems.append(Problem("authorising_officer", f"{officer} created this deployment and cannot authorise it"))
    level, minimum = rank_level(rank), rank_level(rules.min_rank)
    if claimed_rank and rank_level(claimed_rank) != level:
        problems.append(Problem("rank", f"{claimed_rank} is not the rank registered for {officer}'s key ({rank or 'none'})"))
    elif not rank:
        problems.append(Problem("rank", f"{officer}'s key has no registered rank (`lfr keys register`)"))
    elif level is None:
        problems.append(Problem("rank", f"unknown rank {rank!r}"))
    elif minimum is not None and level < minimum:
        problems.append(Problem("rank", f"{rank} is below the minimum authorising rank ({rules.min_rank})"))
    if d.window is not None:
        if d.window.end_ms <= now_ms:
            problems.append(Problem("window", "the window is in the past"))
        if d.window.end_ms - d.window.start_ms > rules.max_window_ms:
            problems.append(Problem("window", f"the window is longer than the maximum of {rules.max_window_ms / 3_600_000:g} h"))
    floor = floor_for(calibration, rules)
    if d.match_threshold is not None and d.match_threshold < floor:
        problems.append(Problem("match_threshold", f"{d.match_threshold:g} is below the floor {floor:g} (FPIR 1e-3 at 1,000 subjects)"))
    if d.criteria is not None and len(snapshot.subjects) > d.criteria.max_size:
        problems.append(Problem("criteria", f"{len(snapshot.subjects)} entries qualify, more than the maximum size {d.criteria.max_size}"))
    expected = 0.0
    if d.match_threshold is not None:
        expected = calibration.expected_false_alerts_per_hour(d.match_threshold, len(snapshot.subjects), d.footfall_per_hour or 0.0)
        if d.footfall_per_hour is None:
            problems.append(Problem("footfall_per_hour", "the expected faces per hour is required for the expected false alerts"))
        elif expected > rules.false_alerts_limit_per_hour and not false_alerts_justification:
            problems.append(Problem("expected_false_alerts_per_hour", f"{expected:.3g} per hour is above the limit of "
                                    f"{rules.false_alerts_limit_per_hour:g}; a recorded justification is required"))
    if problems:
        raise Refused(tuple(problems))
    authorisation = Authorisation(
        officer=officer,
        rank=rank,
        at_ms=now_ms,
        threshold_floor=floor,
        expected_false_alerts_per_hour=round(expected, 6),
        calibration=calibration.label,
        threshold_override_reason=rules.threshold_floor_override_reason if floor < calibration.floor() else None,
        false_alerts_justification=false_alerts_justification if expected > rules.false_alerts_limit_per_hour else None,
    )
    state = "authorised" if d.state == "draft" else d.state
    return d.next(state=state, authorisation=authorisation, snapshot=snapshot, history=(*d.history, Transition(state, officer, now_ms)))


def start(d: Deployment, actor: str, now_ms: int) -> Deployment:
    if d.state != "authorised":
        raise Refused((Problem("state", f"only an authorised deployment can start (it is {d.state})"),))
    if d.window is None or d.window.end_ms <= now_ms:
        raise Refused((Problem("window", "the window has passed"),))
    return d.next(state="active", history=(*d.history, Transition("active", actor, now_ms)))


def end(d: Deployment, actor: str, now_ms: int) -> Deployment:
    if d.state != "active":
        raise Refused((Problem("state", f"only an active deployment can end (it is {d.state})"),))
    return d.next(state="ended", history=(*d.history, Transition("ended", actor, now_ms)))


def cancel(d: Deployment, actor: str, now_ms: int, reason: str) -> Deployment:
    if d.state not in ("draft", "authorised", "active"):
        raise Refused((Problem("state", f"a deployment that is {d.state} cannot be cancelled"),))
    if not reason.strip():
        raise Refused((Problem("reason", "a cancellation reason is required"),))
    return d.next(state="cancelled", history=(*d.history, Transition("cancelled", actor, now_ms, reason)))


def ended_at_ms(d: Deployment) -> int | None:
    """When it stopped: the end or cancel transition, or the window's end if it ran out."""
    for transition in reversed(d.history):
        if transition.state in ("ended", "cancelled"):
            return transition.at_ms
    return None


def check_successor(previous: Deployment | None, new: Deployment) -> str | None:
    """Why a reader must refuse ``new`` after ``previous`` (None: accept)."""
    if not new.history or new.history[-1].state != new.state:
        return f"history does not end in the record's state {new.state}"
    if new.state in ("authorised", "active", "ended") and (new.authorisation is None or new.snapshot is None):
        return f"a {new.state} deployment without authorisation or snapshot"
    if new.state in ("authorised", "active") and (new.window is None or not new.cameras):
        return f"a {new.state} deployment without window or cameras"
    if new.authorisation is not None and new.authorisation.officer.strip().lower() == new.created_by.strip().lower():
        return "authorised by its creator"
    if previous is None:
        return None if new.state in ("draft", "cancelled") or len(new.history) > 1 else f"first record in state {new.state}"
    if new.revision <= previous.revision:
        return f"revision {new.revision} does not follow {previous.revision}"
    if new.state not in ALLOWED[previous.state]:
        return f"illegal transition {previous.state} -> {new.state}"
    return None
