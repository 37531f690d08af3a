"""Stale policy "skip-stale" for stages behind detect: work older than the latency budget is skipped.

A face captured longer ago than the budget can no longer produce a timely alert, and
processing it only delays the fresh faces queued behind it: under overload the pipeline sheds
the oldest work instead of queueing seconds of faces. Age is measured from the frame's
``captured_at_ms`` (the camera's clock) to the stage's clock. Each skip is counted in
``lfr_stale_skipped_total{service, reason}``; the skipped message's data goes nowhere (its
offset is committed with the batch, like any finished work).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import Counter

from .stage import Message

POLICY = "skip-stale"
STALE_SKIPPED = Counter("lfr_stale_skipped_total", "Messages skipped because they were older than the latency budget", ["service", "reason"])


def within_budget(batch: Sequence[Message], captured_at: Callable[[Mapping[str, Any]], int], budget_ms: int, now_ms: int, service: str) -> list[Message]:
    """The messages of ``batch`` captured at most ``budget_ms`` before ``now_ms``; counts the rest."""
    fresh = [m for m in batch if now_ms - int(captured_at(m.data)) <= budget_ms]
    if len(fresh) < len(batch):
        STALE_SKIPPED.labels(service, "over_budget").inc(len(batch) - len(fresh))
    return fresh
