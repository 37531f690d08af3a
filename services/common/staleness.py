"""Stale policy "skip-stale/keep-first-shots" for stages behind detect: work older than the
latency budget is skipped, except a track's first shot, which has a longer budget.

A face captured longer ago than the budget can no longer produce a timely alert, and
processing it only delays the fresh faces queued behind it: under overload the pipeline sheds
the oldest work instead of queueing seconds of faces. But with tracking, detect sends a person's
first acceptable face once and later faces of the same track only when they are clearly better:
dropping that first shot for being late usually means the person is never checked at all. On
the overloaded crowd benchmark, one budget for every face shed nearly every first shot and
per-walker recall fell to 0.005 (benchmarks/README.md). So a track's first shot (``track.reason``
"first") is kept up to ``first_shot_budget_ms``: a late alert for a person not yet checked beats
none, while the later shots of a track (and faces without a track) are shed at the budget.

Age is measured from the frame's ``captured_at_ms`` (the camera's clock) to the stage's clock.
Each skip is counted in ``lfr_stale_skipped_total{service, reason}`` (reason ``over_budget``, or
``first_shot_over_budget`` for a first shot past its longer budget); each late first shot kept
is counted in ``lfr_stale_kept_total{service, reason="first_shot"}``. A skipped message's data
goes nowhere (its offset is committed with the batch, like any finished work).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import Counter

from .stage import Message

POLICY = "skip-stale/keep-first-shots"
STALE_SKIPPED = Counter("lfr_stale_skipped_total", "Messages skipped because they were older than the latency budget", ["service", "reason"])
STALE_KEPT = Counter("lfr_stale_kept_total", "Messages older than the latency budget processed anyway (a track's first shot)", ["service", "reason"])


def is_first_shot(face: Mapping[str, Any]) -> bool:
    """A face record (lfr.faces.v1 body) that is its track's first shot."""
    track = face.get("track")
    return isinstance(track, Mapping) and track.get("reason") == "first"


def within_budget(
    batch: Sequence[Message],
    captured_at: Callable[[Mapping[str, Any]], int],
    budget_ms: int,
    now_ms: int,
    service: str,
    first_shot: Callable[[Mapping[str, Any]], bool] | None = None,
    first_shot_budget_ms: int | None = None,
) -> list[Message]:
    """The messages of ``batch`` captured at most ``budget_ms`` before ``now_ms``, plus first shots
    (``first_shot`` says which) up to ``first_shot_budget_ms``; counts the rest, and the late first
    shots kept."""
    fresh, late_first, skipped, skipped_first = [], 0, 0, 0
    longer = max(budget_ms, first_shot_budget_ms or 0)
    for message in batch:
        age = now_ms - int(captured_at(message.data))
        if age <= budget_ms:
            fresh.append(message)
        elif first_shot is not None and first_shot(message.data):
            if age <= longer:
                fresh.append(message)
                late_first += 1
            else:
                skipped_first += 1
        else:
            skipped += 1
    if skipped:
        STALE_SKIPPED.labels(service, "over_budget").inc(skipped)
    if skipped_first:
        STALE_SKIPPED.labels(service, "first_shot_over_budget").inc(skipped_first)
    if late_first:
        STALE_KEPT.labels(service, "first_shot").inc(late_first)
    return fresh
