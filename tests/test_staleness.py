"""Stale policy skip-stale/keep-first-shots (services/common/staleness.py): faces over the latency
budget are skipped, except a track's first shot up to its own longer budget; every skip and every
late first shot kept is counted."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.common.stage import Message
from services.common.staleness import is_first_shot, within_budget

NOW = 1_000_000


def face(age_ms: int, reason: str | None) -> Message:
    data: dict = {"frame": {"captured_at_ms": NOW - age_ms}}
    if reason is not None:
        data["track"] = {"id": "00" * 8, "shot": 1 if reason in ("first", "untracked") else 2, "reason": reason, "quality": 0.5}
    return Message("lfr.faces.v1", data)


def count(name: str, reason: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": "test-stage", "reason": reason}) or 0


def test_first_shots_have_their_own_budget_and_everything_is_counted() -> None:
    batch = [face(500, "better"), face(1_200, "better"), face(1_200, "first"), face(3_500, "first"), face(1_200, "untracked"),
             face(1_200, None), face(900, "first")]
    before = {key: count(*key) for key in (("lfr_stale_skipped_total", "over_budget"), ("lfr_stale_skipped_total", "first_shot_over_budget"),
                                           ("lfr_stale_kept_total", "first_shot"))}
    kept = within_budget(batch, lambda d: d["frame"]["captured_at_ms"], 1_000, NOW, "test-stage",
                         first_shot=is_first_shot, first_shot_budget_ms=3_000)
    assert [m.data for m in kept] == [batch[0].data, batch[2].data, batch[6].data]
    assert count("lfr_stale_skipped_total", "over_budget") - before[("lfr_stale_skipped_total", "over_budget")] == 3
    assert count("lfr_stale_skipped_total", "first_shot_over_budget") - before[("lfr_stale_skipped_total", "first_shot_over_budget")] == 1
    assert count("lfr_stale_kept_total", "first_shot") - before[("lfr_stale_kept_total", "first_shot")] == 1


def test_without_a_first_shot_rule_one_budget_applies() -> None:
    batch = [face(1_200, "first"), face(900, "better")]
    kept = within_budget(batch, lambda d: d["frame"]["captured_at_ms"], 1_000, NOW, "test-stage")
    assert [m.data for m in kept] == [batch[1].data]
